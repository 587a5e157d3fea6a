// The audit log's contract as agreed; the module itself replaces this file.
import type { Queryable } from "../../platform/db/index.js";
import type { PlatformContext, RequestMeta, TenantContext } from "../../tenancy.js";

export type AuditAction = "create" | "update" | "delete" | "access" | "failure";
export type AuditResult = "success" | "failure" | "partial";
export interface AuditEntry {
  eventType: string;
  entityType: string;
  entityId: string | null;
  action: AuditAction;
  oldValues?: Record<string, unknown> | null;
  newValues?: Record<string, unknown> | null;
  changesSummary?: string;
  result?: AuditResult;
  errorMessage?: string | null;
  tenantId?: string | null;
}
export type AuditContext =
  | TenantContext
  | PlatformContext
  | { actor: { kind: "anonymous" }; request: RequestMeta | null };
export interface AuditLog {
  record(
    ctx: AuditContext,
    entry: AuditEntry,
    opts: { tx: Queryable },
  ): Promise<{ id: string; seq: number }>;
}

/** Stands in for the module until it lands: records nothing. */
export function createAuditLog(_deps: unknown): AuditLog {
  return {
    async record() {
      return { id: "", seq: 0 };
    },
  };
}
