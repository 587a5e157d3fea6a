import type { RequestMeta, TenantRole } from "../../tenancy.js";
import type { AuditContext, CliAuditContext } from "../audit/index.js";

// Who an audit row of the auth module names, where the caller has no TenantContext of its own.

/**
 * Who runs a command of the CLI (`tenantrag admin create-platform-admin`): an operator at the
 * machine, whom no credential names. The system, with the command as its job: the rows say
 * actor type `system`, actor id `cli:<command>`, no request (no address, no request id), and
 * go to the platform's chain unless they name a tenant.
 */
export function cliAuditContext(command: string): CliAuditContext {
  return {
    actor: { kind: "system", job: { id: command, name: "cli" }, causedBy: null },
    request: null,
  };
}

/** An unauthenticated caller (a login that failed, a refresh token presented twice). */
export const anonymous = (request: RequestMeta): AuditContext => ({
  actor: { kind: "anonymous" },
  request,
});

/** The context of a user's new or continued session: a tenant's user, or a platform admin. */
export function sessionContext(
  user: { id: string; tenant_id: string | null; role: string },
  sessionId: string,
  request: RequestMeta,
): AuditContext {
  if (user.tenant_id === null || user.role === "platform_admin") {
    return { actor: { kind: "platform_admin", userId: user.id, sessionId }, request };
  }
  return {
    tenantId: user.tenant_id,
    actor: {
      kind: "user",
      userId: user.id,
      tenantId: user.tenant_id,
      role: user.role as TenantRole,
      sessionId,
    },
    request,
  };
}
