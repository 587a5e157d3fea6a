import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { platformContext, tenantContext } from "../../http/auth-hook.js";
import { idParams } from "../../http/schemas.js";
import {
  adminTenantQuotasResponse,
  overridesBody,
  planParams,
  planSchema,
  plansResponse,
  planUpdateBody,
  tenantQuotasResponse,
} from "./quotas.schemas.js";
import type { QuotasService } from "./quotas.service.js";

/**
 * Quotas over HTTP: the tenant's own view, and the platform admins' plans and per-tenant
 * overrides. (The X-Quota-* headers are the onSend hook's, `quota-headers.ts`.)
 */
export const quotasRoutes: FastifyPluginAsyncZod<{ quotas: QuotasService }> = async (
  app,
  { quotas },
) => {
  app.get(
    "/api/customers/quotas",
    {
      // Any key may see where its tenant stands (as any key may ask who it is).
      config: { scope: "none" as const },
      schema: {
        tags: ["quotas"],
        summary: "The tenant's plan, trial end and where each quota stands this period",
        response: { 200: tenantQuotasResponse },
      },
    },
    async (req) => quotas.view(tenantContext(req)),
  );

  const admin = { auth: "platform_admin" as const };

  app.get(
    "/api/admin/plans",
    {
      config: admin,
      schema: {
        tags: ["admin", "quotas"],
        summary: "Every plan with its limit per quota type (null: unlimited)",
        response: { 200: plansResponse },
      },
    },
    async (req) => ({ plans: await quotas.listPlans(platformContext(req)) }),
  );

  app.put(
    "/api/admin/plans/:id",
    {
      config: admin,
      schema: {
        tags: ["admin", "quotas"],
        summary: "Change some of a plan's limits (null: unlimited); absent types stay",
        params: planParams,
        body: planUpdateBody,
        response: { 200: planSchema },
      },
    },
    async (req) => quotas.setPlanQuotas(platformContext(req), req.params.id, req.body.quotas),
  );

  app.get(
    "/api/admin/customers/:id/quotas",
    {
      config: admin,
      schema: {
        tags: ["admin", "quotas"],
        summary: "A tenant's quotas, with where each limit comes from (plan or override)",
        params: idParams,
        response: { 200: adminTenantQuotasResponse },
      },
    },
    async (req) => quotas.tenantQuotas(platformContext(req), req.params.id),
  );

  app.put(
    "/api/admin/customers/:id/quotas",
    {
      config: admin,
      schema: {
        tags: ["admin", "quotas"],
        summary:
          "Replace a tenant's overrides: the types given get that limit (null: unlimited), the others their plan's",
        params: idParams,
        body: overridesBody,
        response: { 200: adminTenantQuotasResponse },
      },
    },
    async (req) => quotas.setOverrides(platformContext(req), req.params.id, req.body.overrides),
  );
};
