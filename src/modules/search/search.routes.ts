import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { tenantContext } from "../../http/auth-hook.js";
import { searchBody, searchResponse } from "./search.schemas.js";
import type { SearchService } from "./search.service.js";

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
