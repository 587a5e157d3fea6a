import multipart from "@fastify/multipart";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { AppError } from "../../errors.js";
import { tenantContext } from "../../http/auth-hook.js";
import type { TenantContext } from "../../tenancy.js";
import type { WithIdempotency } from "./idempotency.js";
import {
  batchResultSchema,
  batchSchema,
  type DocumentItem,
  documentItemSchema,
  fileUploadForm,
  type IngestResult,
  ingestResultSchema,
  type UrlItem,
  urlItemSchema,
  webhookSchema,
} from "./ingestion.schemas.js";
import type { IngestionService } from "./ingestion.service.js";
import { readMultipart } from "./multipart.js";

export interface IngestionRouteDeps {
  ingestion: IngestionService;
  withIdempotency: WithIdempotency;
  /** Largest JSON body of an ingestion route (a document's text travels in it). */
  bodyLimitBytes: number;
}

const idempotencyHeaders = z.object({ "idempotency-key": z.string().optional() }).loose();

/** POST /api/ingest/*: every route answers 202 once the work is queued, or with a duplicate. */
export const ingestionRoutes: FastifyPluginAsyncZod<IngestionRouteDeps> = async (app, deps) => {
  const { ingestion, withIdempotency } = deps;
  // Limits are set per request (readMultipart): the file limit is the tenant's.
  await app.register(multipart, { throwFileSizeLimit: true });

  /** Runs `fn` under the request's Idempotency-Key and sends what it (or the first run) answered. */
  function idempotent(
    route: string,
    fn: (ctx: TenantContext, req: FastifyRequest) => Promise<{ status: number; body: unknown }>,
  ) {
    return async (req: FastifyRequest, reply: FastifyReply) => {
      const ctx = tenantContext(req);
      const key = req.headers["idempotency-key"];
      const stored = await withIdempotency(
        ctx,
        typeof key === "string" ? key : undefined,
        route,
        req.body,
        () => fn(ctx, req),
      );
      return reply.status(stored.status).send(stored.body);
    };
  }

  const accepted = (r: IngestResult) => ({ status: 202, body: r });
  const common = { bodyLimit: deps.bodyLimitBytes };

  app.post(
    "/api/ingest/document",
    {
      config: { scope: "ingest" },
      ...common,
      schema: {
        tags: ["ingestion"],
        summary: "Ingest one document given as text (txt, md or html)",
        headers: idempotencyHeaders,
        body: documentItemSchema,
        response: { 202: ingestResultSchema },
      },
    },
    idempotent("document", async (ctx, req) =>
      accepted(await ingestion.submitText(ctx, req.body as DocumentItem)),
    ),
  );

  app.post(
    "/api/ingest/batch",
    {
      config: { scope: "ingest" },
      ...common,
      schema: {
        tags: ["ingestion"],
        summary: "Ingest many documents; each item succeeds or fails on its own",
        headers: idempotencyHeaders,
        body: batchSchema,
        response: { 202: batchResultSchema },
      },
    },
    idempotent("batch", async (ctx, req) => ({
      status: 202,
      body: await ingestion.submitBatch(ctx, (req.body as z.infer<typeof batchSchema>).documents),
    })),
  );

  app.post(
    "/api/ingest/url",
    {
      config: { scope: "ingest" },
      schema: {
        tags: ["ingestion"],
        summary: "Fetch a web page or PDF by URL and ingest it",
        headers: idempotencyHeaders,
        body: urlItemSchema,
        response: { 202: ingestResultSchema },
      },
    },
    idempotent("url", async (ctx, req) =>
      accepted(await ingestion.submitUrl(ctx, req.body as UrlItem)),
    ),
  );

  app.post(
    "/api/ingest/webhook",
    {
      config: { scope: "ingest" },
      ...common,
      schema: {
        tags: ["ingestion"],
        summary: "Generic automation (n8n) payload: a document, a URL, or {documents: […]}",
        headers: idempotencyHeaders,
        body: webhookSchema,
        response: { 202: z.union([ingestResultSchema, batchResultSchema]) },
      },
    },
    idempotent("webhook", async (ctx, req) => {
      const body = req.body as z.infer<typeof webhookSchema>;
      if ("documents" in body)
        return { status: 202, body: await ingestion.submitBatch(ctx, body.documents) };
      if ("url" in body) return accepted(await ingestion.submitUrl(ctx, body));
      return accepted(await ingestion.submitText(ctx, body));
    }),
  );

  app.post(
    "/api/ingest/file",
    {
      config: { scope: "ingest" },
      schema: {
        tags: ["ingestion"],
        summary:
          "Upload a file (multipart/form-data: fields title, docType, externalId, metadata (JSON); then the file)",
        multipartForm: fileUploadForm,
        response: { 202: ingestResultSchema },
      },
    },
    async (req, reply) => {
      if (!req.isMultipart()) {
        throw new AppError(
          "request.unsupported_media_type",
          "send the file as multipart/form-data",
        );
      }
      const result = await ingestion.submitFile(tenantContext(req), {
        announcedBytes: Number(req.headers["content-length"] ?? 0),
        read: (limits) => readMultipart(req, limits),
      });
      return reply.status(202).send(result);
    },
  );
};
