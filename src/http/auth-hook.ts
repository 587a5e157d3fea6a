import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyRequest } from "fastify";
import { AppError } from "../errors.js";
import type { AuthService, IdentifiedCaller } from "../modules/auth/index.js";
import {
  type ApiKeyScope,
  hasScope,
  type PlatformContext,
  type Principal,
  type RequestMeta,
  ROLE_RANK,
  type TenantContext,
  type TenantRole,
  USER_AGENT_MAX_CHARS,
} from "../tenancy.js";

/**
 * Who may call a route, declared in its `config.auth`:
 * - `public`: anybody;
 * - `tenant` (the default when a route says nothing): a tenant's user or API key;
 * - `any`: any authenticated principal, platform admins included;
 * - `platform_admin`: platform admins only.
 * `config.minRole` further requires a tenant role (owner > admin > member), and `config.scope`
 * the API-key scope a key needs (see RouteScope).
 */
export type AuthMode = "public" | "tenant" | "any" | "platform_admin";

/**
 * What an API key needs to call a route: a scope, any one of several, or `none` (any valid key,
 * e.g. to ask who it is). A route that says nothing needs `admin`, so a route added without
 * thought is closed to every narrower key. Users are not concerned: their role applies.
 */
export type RouteScope = ApiKeyScope | readonly ApiKeyScope[] | "none";

declare module "fastify" {
  interface FastifyContextConfig {
    auth?: AuthMode;
    minRole?: TenantRole;
    scope?: RouteScope;
    /**
     * The route also takes the deployment's service bearer token (METRICS_TOKEN for
     * `GET /metrics`), compared in constant time; the request then has no principal.
     */
    serviceToken?: boolean;
  }
  interface FastifyRequest {
    /** Who the credentials resolve to; undefined on public routes. */
    principal: Principal | undefined;
    /** Where the request comes from; set for every routed request, public ones included. */
    requestMeta: RequestMeta | undefined;
    /**
     * The tenant and holder the credential names, set as soon as they are known — also when
     * the credential is then refused (revoked key, expired token, missing scope): API-call
     * telemetry attributes the call by it.
     */
    caller: IdentifiedCaller | undefined;
  }
}

function ambiguous(why: string): AppError {
  return new AppError("auth.ambiguous_credentials", `credentials are ambiguous: ${why}`);
}

/** How often each credential header was sent; Node keeps the first or joins repeats. */
function headerCounts(req: FastifyRequest): { authorization: number; apiKey: number } {
  const counts = { authorization: 0, apiKey: 0 };
  const raw = req.raw.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (name === "authorization") counts.authorization += 1;
    else if (name === "x-api-key") counts.apiKey += 1;
  }
  return counts;
}

/**
 * The request's credential. Exactly one is accepted: an Authorization header and an X-API-Key
 * header naming different credentials, or either header sent twice, are refused rather than
 * resolved by a precedence rule, so that a stale or forged credential beside a good one is
 * never silently ignored.
 */
function credentials(req: FastifyRequest): { bearer?: string; apiKey?: string } {
  const counts = headerCounts(req);
  if (counts.authorization > 1) throw ambiguous("the Authorization header is repeated");
  if (counts.apiKey > 1) throw ambiguous("the X-API-Key header is repeated");
  const header = req.headers.authorization;
  const apiKey = req.headers["x-api-key"];
  // No token or key has a comma: one in the value is two headers folded into one (by Node for
  // X-API-Key, by proxies and HTTP libraries for either), so it is as ambiguous as a repeat.
  if (header?.includes(",")) throw ambiguous("the Authorization header is repeated");
  if (typeof apiKey === "string" && apiKey.includes(","))
    throw ambiguous("the X-API-Key header is repeated");
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
  const key = typeof apiKey === "string" && apiKey !== "" ? apiKey : undefined;
  if (bearer !== undefined && key !== undefined) {
    if (bearer !== key) throw ambiguous("Authorization and X-API-Key name different credentials");
    return { apiKey: key };
  }
  return { ...(bearer ? { bearer } : {}), ...(key ? { apiKey: key } : {}) };
}

/**
 * The request's id, client address and user agent. `req.ip` is Fastify's: the peer's address,
 * or with `trustProxy` (TRUST_PROXY) the client address X-Forwarded-For reports.
 */
export function requestMetaOf(req: FastifyRequest): RequestMeta {
  const ua = req.headers["user-agent"];
  return {
    id: req.id,
    ip: req.ip,
    userAgent: ua ? ua.slice(0, USER_AGENT_MAX_CHARS) : null,
  };
}

/**
 * The onRequest hook: runs before the body is read, so an anonymous caller learns nothing else.
 * It resolves who acts and where the request comes from once; `tenantContext(req)` and
 * `platformContext(req)` hand them to the services.
 */
export function createAuthHook(
  auth: Pick<AuthService, "authenticate">,
  opts: { serviceToken?: string | undefined } = {},
) {
  const serviceDigest = opts.serviceToken ? digest(opts.serviceToken) : undefined;
  return async function authenticate(req: FastifyRequest): Promise<void> {
    req.principal = undefined;
    req.requestMeta = undefined;
    req.caller = undefined;
    // Unmatched URLs have no route config; the not-found handler answers them.
    if (!req.routeOptions.url) return;
    req.requestMeta = requestMetaOf(req);
    const mode = req.routeOptions.config.auth ?? "tenant";
    if (mode === "public") return;
    const creds = credentials(req);
    if (
      serviceDigest &&
      req.routeOptions.config.serviceToken &&
      creds.bearer !== undefined &&
      timingSafeEqual(digest(creds.bearer), serviceDigest)
    ) {
      return;
    }
    const principal = await auth.authenticate(creds, {
      identified: (caller) => {
        req.caller = caller;
      },
      request: req.requestMeta,
    });
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
    if (principal.kind === "api_key") assertScope(principal.scopes, req.routeOptions.config.scope);
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

/** Equal-length digests, so that comparing them takes the same time whatever the token. */
function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

/** The scopes a route needs of an API key; the default when it declares none. */
export function requiredScopes(scope: RouteScope | undefined): readonly ApiKeyScope[] {
  if (scope === "none") return [];
  if (scope === undefined) return ["admin"];
  return typeof scope === "string" ? [scope] : scope;
}

function assertScope(scopes: readonly ApiKeyScope[], scope: RouteScope | undefined): void {
  const needed = requiredScopes(scope);
  if (needed.length === 0 || hasScope(scopes, needed)) return;
  throw new AppError(
    "auth.scope_required",
    needed.length === 1
      ? `this API key lacks the scope ${needed[0]}, which this route needs`
      : `this API key lacks a scope this route needs: one of ${needed.join(", ")}`,
    { requiredScopes: needed, keyScopes: scopes },
  );
}

/** Who acts, for whom, from where; only on routes whose auth mode guarantees a tenant. */
export function tenantContext(req: FastifyRequest): TenantContext {
  const p = req.principal;
  if (!p || p.kind === "platform_admin") {
    throw new AppError(
      "auth.tenant_required",
      "this route acts for a tenant; use a tenant's credentials",
    );
  }
  return { tenantId: p.tenantId, actor: p, request: routedRequest(req) };
}

/** The platform admin acting, and from where; only on `platform_admin` (or `any`) routes. */
export function platformContext(req: FastifyRequest): PlatformContext {
  const p = req.principal;
  if (p?.kind !== "platform_admin") {
    throw new AppError("auth.platform_admin_required", "this route is for platform administrators");
  }
  return { actor: p, request: routedRequest(req) };
}

/** The request's metadata, which the auth hook sets on every request that has a route. */
export function routedRequest(req: FastifyRequest): RequestMeta {
  if (!req.requestMeta) throw new Error("the auth hook has not run for this request");
  return req.requestMeta;
}
