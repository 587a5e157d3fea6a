import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { tenantContext } from "../../http/auth-hook.js";
import { userSchema } from "../../http/schemas.js";
import type { AuthService } from "../auth/index.js";
import {
  configSchema,
  configUpdateSchema,
  profileUpdateSchema,
  tenantSchema,
} from "./tenants.schemas.js";
import type { TenantsService } from "./tenants.service.js";

const profileSchema = z.object({ tenant: tenantSchema, user: userSchema.nullable() });

/** /api/customers/profile and /api/customers/config. */
export const tenantsRoutes: FastifyPluginAsyncZod<{
  auth: AuthService;
  tenants: TenantsService;
}> = async (app, { auth, tenants }) => {
  app.get(
    "/api/customers/profile",
    {
      config: { scope: "read" },
      schema: {
        tags: ["customers"],
        summary: "The tenant and the calling user",
        response: { 200: profileSchema },
      },
    },
    async (req) => {
      const me = await auth.me(tenantContext(req));
      return { tenant: me.tenant, user: me.user };
    },
  );

  app.put(
    "/api/customers/profile",
    {
      config: { minRole: "admin", scope: "admin" },
      schema: {
        tags: ["customers"],
        summary: "Update the tenant's profile",
        body: profileUpdateSchema,
        response: { 200: profileSchema },
      },
    },
    async (req) => {
      const ctx = tenantContext(req);
      await tenants.rename(ctx, req.body.companyName);
      const me = await auth.me(ctx);
      return { tenant: me.tenant, user: me.user };
    },
  );

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
