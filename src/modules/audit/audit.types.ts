import type { Queryable } from "../../platform/db/index.js";
import type { PlatformContext, RequestMeta, SystemActor, TenantContext } from "../../tenancy.js";

/** What an audited action did (seed 000 §3). */
export const AUDIT_ACTIONS = ["create", "update", "delete", "access", "failure"] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export const AUDIT_RESULTS = ["success", "failure", "partial"] as const;
export type AuditResult = (typeof AUDIT_RESULTS)[number];

/** Who acted, as the row stores it (`actor_type`). */
export const AUDIT_ACTOR_TYPES = [
  "user",
  "api_key",
  "widget_visitor",
  "platform_admin",
  "system",
  "anonymous",
] as const;
export type AuditActorType = (typeof AUDIT_ACTOR_TYPES)[number];

/**
 * The kinds of things audited rows are about (`entity_type`). Add yours here when you audit a
 * new kind of thing; the column itself is plain text.
 */
export type AuditEntityType =
  | "tenant"
  | "tenant_config"
  | "tenant_profile"
  | "user"
  | "session"
  | "api_key"
  | "document"
  | "knowledge_item"
  | "ingestion"
  | "upload"
  | "plan"
  | "plan_quota"
  | "quota_override"
  | "price"
  | "rerate"
  | "alert"
  | "alert_settings"
  | "usage_export"
  | "platform_admin"
  | "audit_log"
  | "audit_chain"
  | "chat_session"
  | "chat_settings";

export interface AuditEntry {
  /** Dotted, `<entity>.<verb>`: "api_key.create", "auth.login", "document.delete", "plan.update" … */
  eventType: string;
  entityType: AuditEntityType;
  entityId: string | null;
  action: AuditAction;
  /** Secrets are redacted by record() at any depth (canonical.ts, REDACTED_KEYS). */
  oldValues?: Record<string, unknown> | null;
  newValues?: Record<string, unknown> | null;
  /** Computed from old/new when omitted ("title, tags changed"). */
  changesSummary?: string;
  /** Default "success". */
  result?: AuditResult;
  errorMessage?: string | null;
  /** Only for a platform admin's or an anonymous actor's action on one tenant: whose chain. */
  tenantId?: string | null;
}

/** An unauthenticated caller (a failed login, a signup). */
export interface AnonymousAuditContext {
  actor: { kind: "anonymous" };
  request: RequestMeta | null;
}

/**
 * A command of the CLI (`tenantrag admin …`), run by an operator at the machine whom no
 * credential names: the system, with the command as its job, on no tenant's behalf (the
 * platform's chain unless the entry names a tenant). Stored as actor type `system`, actor id
 * `cli:<command>`.
 */
export interface CliAuditContext {
  actor: SystemActor;
  request: null;
}

/** Who acted: the context of the service call. */
export type AuditContext =
  | TenantContext
  | PlatformContext
  | AnonymousAuditContext
  | CliAuditContext;

export interface AuditLog {
  /**
   * Appends one row to the tenant's chain (the platform chain when no tenant) IN `tx`. Call it
   * as the last statement of the transaction that makes the change: it holds the chain head's
   * row lock until commit.
   */
  record(
    ctx: AuditContext,
    entry: AuditEntry,
    opts: { tx: Queryable },
  ): Promise<{ id: string; seq: number }>;
  /**
   * Appends several rows of one context to its chain IN `tx`, in order, as that many `record`
   * calls would (consecutive seqs, each row's hash over the previous one's), in two statements
   * whatever their number: the head's lock, then one multi-row insert that advances the head
   * to the last row. Nothing for an empty list.
   */
  recordMany(
    ctx: AuditContext,
    entries: readonly AuditEntry[],
    opts: { tx: Queryable },
  ): Promise<Array<{ id: string; seq: number }>>;
}

/** Appends a row as a job of the system (retention), to a tenant's chain or the platform's (null). */
export type AuditSystemRecorder = (
  job: { id: string; name: string },
  tenantId: string | null,
  entry: AuditEntry,
  opts: { tx: Queryable },
) => Promise<{ id: string; seq: number }>;
