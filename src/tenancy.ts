/** Who is calling, resolved once per request by the auth hook. */
export type Principal =
  | { kind: "user"; userId: string; tenantId: string; role: TenantRole; sessionId: string }
  | {
      kind: "api_key";
      keyId: string;
      tenantId: string;
      /** What the key may do inside its scopes: a key acts as a tenant admin would. */
      role: TenantRole;
      scopes: readonly ApiKeyScope[];
    }
  | { kind: "platform_admin"; userId: string; sessionId: string };

export type TenantRole = "owner" | "admin" | "member";

/**
 * The tenant a service call acts for. Every service method that touches tenant data takes it
 * first, and every store query filters by `tenantId`.
 */
export interface TenantContext {
  tenantId: string;
  principal: Exclude<Principal, { kind: "platform_admin" }>;
  requestId: string;
}

/** Roles ordered by power: a role may do whatever the roles after it may. */
export const ROLE_RANK: Record<TenantRole, number> = { owner: 3, admin: 2, member: 1 };

/**
 * What an API key may do, chosen when it is created:
 * - `ingest`: write the knowledge base (ingest, update and delete documents, knowledge items);
 * - `read`: read it (documents, knowledge items, search) and the tenant's profile and config;
 * - `chat`: ask the assistant (chat routes, and search, which answers are built from);
 * - `admin`: everything a tenant admin may do (users, keys, profile and config changes),
 *   every other scope included.
 */
export const API_KEY_SCOPES = ["ingest", "read", "chat", "admin"] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

/** A new key's scopes when none are asked for: what an ingestion workflow (n8n) needs. */
export const DEFAULT_API_KEY_SCOPES: readonly ApiKeyScope[] = ["ingest", "read"];

/** Whether a key with `scopes` may act where any one of `needed` is required. */
export function hasScope(scopes: readonly ApiKeyScope[], needed: readonly ApiKeyScope[]): boolean {
  return scopes.includes("admin") || needed.some((n) => scopes.includes(n));
}

/** Scopes without repeats, in the canonical order. */
export function normalizeScopes(scopes: readonly ApiKeyScope[]): ApiKeyScope[] {
  return API_KEY_SCOPES.filter((s) => scopes.includes(s));
}
