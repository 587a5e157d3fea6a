/**
 * What the OpenAPI document says about every route, decided once here rather than in each
 * route file: who may call it (public routes need no credentials), the one error shape on every
 * operation, empty 204 answers, and the form of routes that parse their own body (multipart).
 * test/fixtures/openapi.ts checks every response of the integration suite against the result.
 */
import type {
  FastifyDynamicSwaggerOptions,
  SwaggerTransform,
  SwaggerTransformObject,
} from "@fastify/swagger";
import type { FastifySchema } from "fastify";
import { jsonSchemaTransform } from "fastify-type-provider-zod";
import type { ZodType } from "zod";
import { ERROR_STATUS } from "./errors.js";

declare module "fastify" {
  interface FastifySchema {
    /**
     * The multipart/form-data form of a route that reads its parts itself (a file upload). It is
     * documented as the request body but never validated as one: the handler streams the parts.
     */
    multipartForm?: ZodType;
  }
}

const ERROR_REF = { $ref: "#/components/responses/Error" };
const METHODS = ["get", "put", "post", "delete", "patch", "options", "head", "trace"];

/**
 * The per-route transform: zod schemas to JSON schemas (fastify-type-provider-zod), then the
 * rules of this API that the route options already say.
 */
export const openapiTransform: SwaggerTransform = (input) => {
  const { multipartForm, ...rest } = (input.schema ?? {}) as FastifySchema;
  const schema: FastifySchema | undefined = input.schema
    ? multipartForm
      ? { ...rest, body: multipartForm, consumes: ["multipart/form-data"] }
      : rest
    : undefined;
  const out = jsonSchemaTransform({ ...input, schema: schema as FastifySchema });
  const doc = out.schema as FastifySchema | undefined;
  if (!doc || doc.hide) return out;
  // A public route takes no credentials: an empty requirement overrides the global one.
  if (input.route.config?.auth === "public") doc.security = [];
  return out;
};

/** The whole-document transform: every operation answers errors in the one error shape. */
export const openapiTransformObject: SwaggerTransformObject = (input) => {
  const doc = ("openapiObject" in input ? input.openapiObject : input.swaggerObject) as {
    paths?: Record<string, Record<string, unknown>>;
  };
  for (const item of Object.values(doc.paths ?? {})) {
    for (const method of METHODS) {
      const op = item[method] as { responses?: Record<string, unknown> } | undefined;
      if (!op) continue;
      op.responses = { ...op.responses, "4XX": ERROR_REF, "5XX": ERROR_REF };
    }
  }
  return doc as ReturnType<SwaggerTransformObject>;
};

/** The options of @fastify/swagger: the document's metadata, shared parts and transforms. */
export const openapiOptions: FastifyDynamicSwaggerOptions = {
  openapi: {
    info: {
      title: "tenantrag",
      version: "0.1.0",
      description: "Multi-tenant RAG backend with usage metering",
    },
    components: {
      schemas: {
        // The body of every error response (DESIGN.md §4).
        Error: {
          type: "object",
          required: ["error", "requestId"],
          additionalProperties: false,
          properties: {
            error: {
              type: "object",
              required: ["code", "message"],
              additionalProperties: false,
              properties: {
                code: {
                  type: "string",
                  description: "names the problem; clients branch on it, not on the message",
                  enum: Object.keys(ERROR_STATUS),
                },
                message: { type: "string", description: "for people" },
                details: { type: "object", additionalProperties: true },
              },
            },
            requestId: { type: "string", description: "also in the x-request-id response header" },
          },
        },
      },
      responses: {
        Error: {
          description:
            "An error in the one error shape: 4xx for what the client can fix (the code says what), 5xx for the server",
          content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
        },
      },
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          description: "access token (JWT) or API key (trk_…)",
        },
        apiKey: { type: "apiKey", in: "header", name: "X-API-Key" },
      },
    },
    // Routes declared public override this with `security: []` (openapiTransform).
    security: [{ bearer: [] }, { apiKey: [] }],
  },
  transform: openapiTransform,
  transformObject: openapiTransformObject,
};
