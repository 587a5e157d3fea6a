import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { platformContext } from "../../http/auth-hook.js";
import { idParams } from "../../http/schemas.js";
import { type TenantsService, tenantSchemas } from "../tenants/index.js";

const { tenantSchema } = tenantSchemas;

/** Platform administration: tenants across the platform. Platform admins only. */
export const adminRoutes: FastifyPluginAsyncZod<{ tenants: TenantsService }> = async (
  app,
  { tenants },
) => {
  const config = { auth: "platform_admin" as const };

  app.get(
    "/api/admin/customers",
    {
      config,
      schema: {
        tags: ["admin"],
        summary: "All tenants, newest first",
        querystring: z.strictObject({
          limit: z.coerce.number().int().min(1).max(200).default(50),
          cursor: z.string().max(200).optional(),
          status: z.enum(["active", "suspended", "deleted"]).optional(),
        }),
        response: {
          200: z.object({ items: z.array(tenantSchema), nextCursor: z.string().nullable() }),
        },
      },
    },
    async (req) => tenants.adminList(platformContext(req), req.query),
  );

  app.get(
    "/api/admin/customers/:id",
    {
      config,
      schema: {
        tags: ["admin"],
        summary: "One tenant",
        params: idParams,
        response: { 200: tenantSchema },
      },
    },
    async (req) => tenants.adminGet(platformContext(req), req.params.id),
  );

  app.post(
    "/api/admin/customers/:id/suspend",
    {
      config,
      schema: {
        tags: ["admin"],
        summary: "Suspend a tenant: its tokens and keys get 403 tenant.suspended",
        params: idParams,
        response: { 200: tenantSchema },
      },
    },
    async (req) => tenants.adminSetStatus(platformContext(req), req.params.id, "suspended"),
  );

  app.post(
    "/api/admin/customers/:id/reactivate",
    {
      config,
      schema: {
        tags: ["admin"],
        summary: "Lift a suspension",
        params: idParams,
        response: { 200: tenantSchema },
      },
    },
    async (req) => tenants.adminSetStatus(platformContext(req), req.params.id, "active"),
  );
};
