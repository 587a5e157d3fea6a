import type { FastifyRequest } from "fastify";
import type { AuthService } from "../modules/auth/index.js";
import { type Principal, ROLE_RANK, type TenantContext, type TenantRole } from "../tenancy.js";
import { AppError } from "./errors.js";

/**
 * Who may call a route, declared in its `config.auth`:
 * - `public`: anybody;
 * - `tenant` (the default when a route says nothing): a tenant's user or API key;
 * - `any`: any authenticated principal, platform admins included;
 * - `platform_admin`: platform admins only.
 * `config.minRole` further requires a tenant role (owner > admin > member).
 */
export type AuthMode = "public" | "tenant" | "any" | "platform_admin";

declare module "fastify" {
  interface FastifyContextConfig {
    auth?: AuthMode;
    minRole?: TenantRole;
  }
  interface FastifyRequest {
    principal: Principal | undefined;
  }
}

function credentials(req: FastifyRequest): { bearer?: string; apiKey?: string } {
  const header = req.headers.authorization;
  const apiKey = req.headers["x-api-key"];
  // Node joins repeated X-API-Key headers into one "a, b" string, which matches no key.
  let bearer: string | undefined;
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match)
      throw new AppError(
        "auth.unauthenticated",
        "Authorization must be 'Bearer <token or API key>'",
      );
    bearer = match[1];
  }
  const key = Array.isArray(apiKey) ? apiKey.join(", ") : apiKey;
  return { ...(bearer ? { bearer } : {}), ...(key ? { apiKey: key } : {}) };
}

/** The onRequest hook: runs before the body is read, so an anonymous caller learns nothing else. */
export function createAuthHook(auth: AuthService) {
  return async function authenticate(req: FastifyRequest): Promise<void> {
    req.principal = undefined;
    // Unmatched URLs have no route config; the not-found handler answers them.
    if (!req.routeOptions.url) return;
    const mode = req.routeOptions.config.auth ?? "tenant";
    if (mode === "public") return;
    const principal = await auth.authenticate(credentials(req));
    if (mode === "platform_admin" && principal.kind !== "platform_admin") {
      throw new AppError(
        "auth.platform_admin_required",
        "this route is for platform administrators",
      );
    }
    if (mode === "tenant" && principal.kind === "platform_admin") {
      throw new AppError(
        "auth.tenant_required",
        "this route acts for a tenant; use a tenant's credentials",
      );
    }
    const minRole = req.routeOptions.config.minRole;
    if (
      minRole &&
      principal.kind !== "platform_admin" &&
      ROLE_RANK[principal.role] < ROLE_RANK[minRole]
    ) {
      throw new AppError("auth.forbidden", `this action needs role ${minRole} or higher`);
    }
    req.principal = principal;
  };
}

/** The tenant the request acts for; only on routes whose auth mode guarantees one. */
export function tenantContext(req: FastifyRequest): TenantContext {
  const p = req.principal;
  if (!p || p.kind === "platform_admin") {
    throw new AppError(
      "auth.tenant_required",
      "this route acts for a tenant; use a tenant's credentials",
    );
  }
  return { tenantId: p.tenantId, principal: p, requestId: req.id };
}
