/** Who is calling, resolved once per request by the auth hook. */
export type Principal =
  | { kind: "user"; userId: string; tenantId: string; role: TenantRole; sessionId: string }
  | { kind: "api_key"; keyId: string; tenantId: string; role: TenantRole }
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
