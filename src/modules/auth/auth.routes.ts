import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { platformContext, routedRequest, tenantContext } from "../../http/auth-hook.js";
import { idParams, noContent } from "../../http/schemas.js";
import { type TenantsService, tenantSchemas } from "../tenants/index.js";
import { apiKeyRoutes } from "./api-keys.routes.js";
import {
  apiKeyInfoSchema,
  email,
  newPassword,
  tokenPairSchema,
  userSchema,
} from "./auth.schemas.js";
import type { AuthService } from "./auth.service.js";

const meSchema = z.object({
  tenant: tenantSchemas.tenantSchema.nullable(),
  user: userSchema.nullable(),
  apiKey: apiKeyInfoSchema.nullable(),
});

/**
 * /api/auth/*, and under /api/customers the tenant's profile (the tenant and the calling user),
 * users and (api-keys.routes.ts) API keys. The profile is here, not in the tenants module,
 * because it answers with the user: tenants knows nothing of auth, auth uses tenants.
 */
export const authRoutes: FastifyPluginAsyncZod<{
  auth: AuthService;
  tenants: TenantsService;
}> = async (app, { auth, tenants }) => {
  app.post(
    "/api/auth/signup",
    {
      config: { auth: "public" },
      schema: {
        tags: ["auth"],
        summary: "Create a tenant with its owner; returns tokens and the API key (shown only here)",
        body: z.strictObject({
          email,
          password: newPassword,
          companyName: tenantSchemas.companyName,
        }),
        response: {
          201: tokenPairSchema.extend({
            apiKey: z.string(),
            tenant: tenantSchemas.tenantSchema,
            user: userSchema,
          }),
        },
      },
    },
    async (req, reply) => reply.status(201).send(await auth.signup(req.body, routedRequest(req))),
  );

  app.post(
    "/api/auth/login",
    {
      config: { auth: "public" },
      schema: {
        tags: ["auth"],
        summary: "Exchange email and password for tokens",
        body: z.strictObject({
          email: z.string().min(1).max(254),
          password: z.string().min(1).max(256),
        }),
        response: { 200: tokenPairSchema },
      },
    },
    async (req) => auth.login(req.body, routedRequest(req)),
  );

  app.post(
    "/api/auth/refresh",
    {
      config: { auth: "public" },
      schema: {
        tags: ["auth"],
        summary: "Rotate a refresh token: the old one dies, reusing it revokes the session",
        body: z.strictObject({ refreshToken: z.string().min(1).max(512) }),
        response: { 200: tokenPairSchema },
      },
    },
    async (req) => auth.refresh(req.body.refreshToken, routedRequest(req)),
  );

  app.post(
    "/api/auth/logout",
    {
      config: { auth: "any", scope: "none" },
      schema: {
        tags: ["auth"],
        summary: "End the current session (access and refresh tokens)",
        response: { 204: noContent },
      },
    },
    async (req, reply) => {
      await auth.logout(req.principal as NonNullable<typeof req.principal>, routedRequest(req));
      return reply.status(204).send();
    },
  );

  app.get(
    "/api/auth/me",
    {
      config: { auth: "any", scope: "none" },
      schema: {
        tags: ["auth"],
        summary: "Who the credentials belong to",
        response: { 200: meSchema },
      },
    },
    async (req) => {
      if (req.principal?.kind === "platform_admin") {
        const { actor } = platformContext(req);
        return { tenant: null, user: await auth.platformAdmin(actor.userId), apiKey: null };
      }
      return auth.me(tenantContext(req));
    },
  );

  await app.register(apiKeyRoutes, { auth });

  const profileSchema = z.object({
    tenant: tenantSchemas.tenantSchema,
    user: userSchema.nullable(),
  });

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
        body: tenantSchemas.profileUpdateSchema,
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
    "/api/customers/users",
    {
      config: { scope: "admin" },
      schema: {
        tags: ["customers"],
        summary: "The tenant's users",
        response: { 200: z.object({ items: z.array(userSchema) }) },
      },
    },
    async (req) => ({ items: await auth.listUsers(tenantContext(req)) }),
  );

  app.post(
    "/api/customers/users",
    {
      config: { minRole: "admin", scope: "admin" },
      schema: {
        tags: ["customers"],
        summary: "Add a user to the tenant",
        body: z.strictObject({
          email,
          password: newPassword,
          role: z.enum(["owner", "admin", "member"]),
        }),
        response: { 201: userSchema },
      },
    },
    async (req, reply) =>
      reply.status(201).send(await auth.createUser(tenantContext(req), req.body)),
  );

  app.delete(
    "/api/customers/users/:id",
    {
      config: { minRole: "admin", scope: "admin" },
      schema: {
        tags: ["customers"],
        summary: "Remove a user from the tenant",
        params: idParams,
        response: { 204: noContent },
      },
    },
    async (req, reply) => {
      await auth.deleteUser(tenantContext(req), req.params.id);
      return reply.status(204).send();
    },
  );
};
