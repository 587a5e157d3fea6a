import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { platformContext, tenantContext } from "../../http/auth-hook.js";
import type { Reconciliation } from "./reconciliation.js";
import {
  adminWindowQuerySchema,
  platformReportSchema,
  tenantReportSchema,
  windowQuerySchema,
} from "./reconciliation.schemas.js";

/** GET /api/metrics/reconciliation (the tenant's) and /api/admin/usage/reconciliation (all). */
export const reconciliationRoutes: FastifyPluginAsyncZod<{
  reconciliation: Reconciliation;
}> = async (app, { reconciliation }) => {
  app.get(
    "/api/metrics/reconciliation",
    {
      config: { scope: "read" },
      schema: {
        tags: ["metrics"],
        summary:
          "Billable events vs roll-ups vs documents, versions and search calls over a window (whole hours; default the previous UTC day), with every difference",
        querystring: windowQuerySchema,
        response: { 200: tenantReportSchema },
      },
    },
    async (req) => reconciliation.forTenant(tenantContext(req), req.query),
  );

  app.get(
    "/api/admin/usage/reconciliation",
    {
      config: { auth: "platform_admin" },
      schema: {
        tags: ["admin"],
        summary: "Every tenant's reconciliation differences over a window (or one tenant's)",
        querystring: adminWindowQuerySchema,
        response: { 200: platformReportSchema },
      },
    },
    async (req) => reconciliation.forPlatform(platformContext(req), req.query),
  );
};
