import { assertNever } from "../../errors.js";
import type { Clock } from "../../platform/clock.js";
import type { Db, Queryable } from "../../platform/db/index.js";
import { isUuid } from "../../platform/ids.js";
import { auditStore, type NewAuditRow } from "./audit.store.js";
import {
  AUDIT_ACTIONS,
  AUDIT_RESULTS,
  type AuditActorType,
  type AuditContext,
  type AuditEntry,
  type AuditLog,
  type AuditSystemRecorder,
} from "./audit.types.js";
import {
  chainIdOf,
  changesSummary,
  cleanString,
  GENESIS_HASH,
  type Json,
  rowHash,
  toJson,
} from "./canonical.js";
import { uuidv7 } from "./ids.js";

/** Longest stored texts; longer ones are cut (an audit row is never refused for its length). */
const MAX = {
  eventType: 100,
  entityType: 50,
  entityId: 255,
  actorId: 255,
  summary: 1000,
  errorMessage: 4000,
  ip: 100,
  userAgent: 512,
  requestId: 255,
};

/** Old or new values larger than this (as JSON) are stored as a note of their size and keys. */
export const MAX_VALUES_BYTES = 32 * 1024;

const EVENT_TYPE = /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$/;

const cut = (s: string | null | undefined, max: number): string | null =>
  s === null || s === undefined ? null : cleanString(s).slice(0, max);

/** Who acted, as stored: the actor's kind and id, and a job's cause. */
export function auditActorOf(ctx: AuditContext): {
  type: AuditActorType;
  id: string | null;
  causedBy: Json;
} {
  const a = ctx.actor;
  switch (a.kind) {
    case "user":
      return { type: "user", id: a.userId, causedBy: null };
    case "api_key":
      return { type: "api_key", id: a.keyId, causedBy: null };
    case "widget_visitor":
      return { type: "widget_visitor", id: a.visitorId, causedBy: null };
    case "platform_admin":
      return { type: "platform_admin", id: a.userId, causedBy: null };
    case "system":
      return {
        type: "system",
        id: `${a.job.name}:${a.job.id}`,
        causedBy: a.causedBy ? toJson(a.causedBy, { redact: true }) : null,
      };
    case "anonymous":
      return { type: "anonymous", id: null, causedBy: null };
    default:
      return assertNever(a);
  }
}

/** Whose chain the row goes to: the context's tenant, or the entry's for the platform/anonymous. */
function tenantOf(ctx: AuditContext, entry: AuditEntry): string | null {
  if ("tenantId" in ctx) {
    if (entry.tenantId !== undefined && entry.tenantId !== ctx.tenantId) {
      throw new TypeError(
        `audit entry ${entry.eventType} names tenant ${entry.tenantId} in a context of tenant ${ctx.tenantId}`,
      );
    }
    return ctx.tenantId;
  }
  const t = entry.tenantId ?? null;
  if (t !== null && !isUuid(t)) throw new TypeError(`audit entry tenantId ${t} is not a uuid`);
  return t;
}

function values(v: Record<string, unknown> | null | undefined, redact: boolean): Json {
  if (v === null || v === undefined) return null;
  const json = toJson(v, { redact });
  const text = JSON.stringify(json);
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes <= MAX_VALUES_BYTES) return json;
  const keys = json && typeof json === "object" && !Array.isArray(json) ? Object.keys(json) : [];
  return { "[truncated]": true, bytes, keys: keys.slice(0, 100) };
}

/**
 * The audit log's writer: `record` appends one row to a chain inside the caller's transaction.
 * Two statements: the head upsert (lock and read), then the row's insert with the head's
 * advance. The hash is computed between them, in the process, over exactly what is inserted.
 */
export function createAuditLog(deps: { db: Db; clock: Clock }): AuditLog & {
  /** A row of a job acting as the system, on a tenant's chain or the platform's (null). */
  recordSystem: AuditSystemRecorder;
} {
  const { db, clock } = deps;

  async function append(tx: Queryable, row: Omit<NewAuditRow, "seq" | "prev_hash" | "hash">) {
    const head = await auditStore.lockHead(tx, row.chain_id, GENESIS_HASH);
    const seq = head.seq + 1;
    const content = { ...row, seq, prev_hash: head.hash };
    const hash = rowHash({ ...content, created_at: row.created_at.toISOString() });
    await auditStore.append(tx, { ...content, hash });
    return { id: row.id, seq };
  }

  function build(
    actor: ReturnType<typeof auditActorOf>,
    tenantId: string | null,
    request: AuditContext["request"],
    entry: AuditEntry,
  ) {
    if (!EVENT_TYPE.test(entry.eventType) || entry.eventType.length > MAX.eventType) {
      throw new TypeError(`audit event type "${entry.eventType}" is not <entity>.<verb>`);
    }
    if (!AUDIT_ACTIONS.includes(entry.action)) {
      throw new TypeError(`audit action "${entry.action}" is not one of ${AUDIT_ACTIONS}`);
    }
    const result = entry.result ?? "success";
    if (!AUDIT_RESULTS.includes(result)) {
      throw new TypeError(`audit result "${result}" is not one of ${AUDIT_RESULTS}`);
    }
    const now = Math.floor(clock.now());
    const summary =
      entry.changesSummary !== undefined
        ? entry.changesSummary
        : changesSummary(values(entry.oldValues, false), values(entry.newValues, false));
    return {
      id: uuidv7(now),
      tenant_id: tenantId,
      chain_id: chainIdOf(tenantId),
      event_type: entry.eventType,
      entity_type: cut(entry.entityType, MAX.entityType) as string,
      entity_id: cut(entry.entityId, MAX.entityId),
      action: entry.action,
      actor_type: actor.type,
      actor_id: cut(actor.id, MAX.actorId),
      caused_by: actor.causedBy,
      old_values: values(entry.oldValues, true),
      new_values: values(entry.newValues, true),
      changes_summary: cut(summary, MAX.summary),
      result,
      error_message: cut(entry.errorMessage, MAX.errorMessage),
      ip_address: cut(request?.ip, MAX.ip),
      user_agent: cut(request?.userAgent, MAX.userAgent),
      request_id: cut(request?.id, MAX.requestId),
      created_at: new Date(now),
    };
  }

  // A caller without a transaction (the Db itself) gets one: the head lock must span both
  // statements (the unique (chain_id, seq) would refuse a fork, but as an error).
  const appendIn = (tx: Queryable, row: Parameters<typeof append>[1]) =>
    tx.afterCommit || tx !== db ? append(tx, row) : db.transaction((t) => append(t, row));

  return {
    async record(ctx, entry, opts) {
      const row = build(auditActorOf(ctx), tenantOf(ctx, entry), ctx.request, entry);
      return appendIn(opts.tx, row);
    },
    async recordMany(ctx, entries, opts) {
      if (entries.length === 0) return [];
      const actor = auditActorOf(ctx);
      const rows = entries.map((e) => build(actor, tenantOf(ctx, e), ctx.request, e));
      const chains = new Set(rows.map((r) => r.chain_id));
      if (chains.size !== 1) throw new TypeError("recordMany appends to one chain");
      const appendAll = async (tx: Queryable) => {
        const first = rows[0] as (typeof rows)[number];
        const head = await auditStore.lockHead(tx, first.chain_id, GENESIS_HASH);
        let { seq, hash: prev } = head;
        const chained = rows.map((row) => {
          seq += 1;
          const content = { ...row, seq, prev_hash: prev };
          prev = rowHash({ ...content, created_at: row.created_at.toISOString() });
          return { ...content, hash: prev };
        });
        await auditStore.appendMany(tx, chained);
        return chained.map((r) => ({ id: r.id, seq: r.seq }));
      };
      return opts.tx.afterCommit || opts.tx !== db ? appendAll(opts.tx) : db.transaction(appendAll);
    },
    async recordSystem(job, tenantId, entry, opts) {
      const actor = { type: "system" as const, id: `${job.name}:${job.id}`, causedBy: null };
      return appendIn(opts.tx, build(actor, tenantId, null, entry));
    },
  };
}
