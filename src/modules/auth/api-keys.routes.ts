import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { tenantContext } from "../../http/auth-hook.js";
import { idParams, noContent, plainText } from "../../http/schemas.js";
import { API_KEY_SCOPES, DEFAULT_API_KEY_SCOPES } from "../../tenancy.js";
import { MAX_ACTIVE_API_KEYS } from "./api-keys.js";
import { apiKeyInfoSchema } from "./auth.schemas.js";
import type { AuthService } from "./auth.service.js";

const keyName = plainText().trim().min(1).max(100);
const scopes = z
  .array(z.enum(API_KEY_SCOPES))
  .min(1)
  .max(API_KEY_SCOPES.length * 2);
const issuedKeySchema = z.object({
  apiKey: z.string().describe("the secret, shown only in this answer"),
  key: apiKeyInfoSchema,
});

/** The tenant's API keys under /api/customers: several at once, each with its own scopes. */
export const apiKeyRoutes: FastifyPluginAsyncZod<{ auth: AuthService }> = async (app, { auth }) => {
  app.post(
    "/api/customers/api-key",
    {
      config: { minRole: "admin", scope: "admin" },
      schema: {
        tags: ["customers"],
        summary:
          "Regenerate the API key with the scopes asked for: every older key stops working at once",
        body: z
          .strictObject({
            name: keyName.optional(),
            scopes: scopes
              .optional()
              .describe(
                `what the key may do; default ${DEFAULT_API_KEY_SCOPES.join(", ")}; admin includes every scope`,
              ),
          })
          .nullish(),
        response: { 201: issuedKeySchema },
      },
    },
    async (req, reply) =>
      reply.status(201).send(
        await auth.regenerateApiKey(tenantContext(req), {
          name: req.body?.name,
          scopes: req.body?.scopes,
        }),
      ),
  );

  app.post(
    "/api/customers/api-keys",
    {
      config: { minRole: "admin", scope: "admin" },
      schema: {
        tags: ["customers"],
        summary: `Create one more API key, the others untouched (at most ${MAX_ACTIVE_API_KEYS} active)`,
        body: z.strictObject({
          name: keyName,
          scopes: scopes.describe("what the key may do; admin includes every scope"),
        }),
        response: { 201: issuedKeySchema },
      },
    },
    async (req, reply) =>
      reply.status(201).send(await auth.createApiKey(tenantContext(req), req.body)),
  );

  app.get(
    "/api/customers/api-keys",
    {
      config: { scope: "admin" },
      schema: {
        tags: ["customers"],
        summary: "API keys, revoked ones included: prefixes, scopes and dates, never the secret",
        response: { 200: z.object({ items: z.array(apiKeyInfoSchema) }) },
      },
    },
    async (req) => ({ items: await auth.listApiKeys(tenantContext(req)) }),
  );

  app.delete(
    "/api/customers/api-keys/:id",
    {
      config: { minRole: "admin", scope: "admin" },
      schema: {
        tags: ["customers"],
        summary: "Revoke one API key: it stops working at once; revoking it again changes nothing",
        params: idParams,
        response: { 204: noContent },
      },
    },
    async (req, reply) => {
      await auth.revokeApiKey(tenantContext(req), req.params.id);
      return reply.status(204).send();
    },
  );
};
