import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { tenantContext } from "../../http/auth-hook.js";
import { metadataSchema } from "../ingestion/ingestion.schemas.js";
import type { SearchService } from "./search.service.js";

const searchBody = z.strictObject({
  query: z.string().trim().min(1).max(2000),
  mode: z.enum(["vector", "text", "hybrid"]).default("hybrid"),
  limit: z.number().int().min(1).max(50).default(10),
  filters: z
    .strictObject({
      documentIds: z.array(z.uuid()).max(100).optional(),
      docTypes: z.array(z.string().min(1).max(50)).max(20).optional(),
      metadata: metadataSchema.optional(),
    })
    .optional(),
});

const searchResponse = z.object({
  results: z.array(
    z.object({
      text: z.string(),
      score: z.number(),
      documentId: z.uuid(),
      title: z.string(),
      version: z.number().int(),
      chunkIndex: z.number().int(),
      docType: z.string(),
      metadata: z.record(z.string(), z.string()),
    }),
  ),
});

/** POST /api/search, and POST /search as seed 004 names it. */
export const searchRoutes: FastifyPluginAsyncZod<{ search: SearchService }> = async (
  app,
  { search },
) => {
  for (const url of ["/api/search", "/search"]) {
    app.post(
      url,
      {
        config: { scope: ["read", "chat"] as const },
        schema: {
          tags: ["search"],
          summary:
            "Search the tenant's knowledge: vector, full-text, or hybrid (reciprocal rank fusion)",
          body: searchBody,
          response: { 200: searchResponse },
        },
      },
      async (req) => ({ results: await search.search(tenantContext(req), req.body) }),
    );
  }
};
