import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { tenantContext } from "../../http/auth-hook.js";
import { configSchema, configUpdateSchema } from "./tenants.schemas.js";
import type { TenantsService } from "./tenants.service.js";

/** /api/customers/config. (The profile, which shows the calling user too, is auth's.) */
export const tenantsRoutes: FastifyPluginAsyncZod<{ tenants: TenantsService }> = async (
  app,
  { tenants },
) => {
  app.get(
    "/api/customers/config",
    {
      config: { scope: "read" },
      schema: {
        tags: ["customers"],
        summary: "The tenant's limits, ingestion and embedding settings",
        response: { 200: configSchema },
      },
    },
    async (req) => tenants.getConfig(tenantContext(req)),
  );

  app.put(
    "/api/customers/config",
    {
      config: { minRole: "admin", scope: "admin" },
      schema: {
        tags: ["customers"],
        summary:
          "Change settings; limits stay within the plan; the provider key is stored encrypted",
        body: configUpdateSchema,
        response: { 200: configSchema },
      },
    },
    async (req) => tenants.updateConfig(tenantContext(req), req.body),
  );
};
