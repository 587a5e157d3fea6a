import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { Counter } from "prom-client";
import type { Clock } from "../../platform/clock.js";
import type { Db, Queryable } from "../../platform/db/index.js";
import { deterministicUuid } from "../../platform/ids.js";
import type { Metrics } from "../../platform/metrics/index.js";
import type { TenantContext } from "../../tenancy.js";
import { eventsStore, type NewEventRow } from "./events.store.js";
import { fitSize, type OversizePolicy, sampled, validateEvent } from "./payload.js";
import type { EventData, EventName } from "./taxonomy.js";

/** One event to write: its name, data and, for a job's event, its deterministic id. */
export interface EventInput<N extends EventName = EventName> {
  name: N;
  data: EventData<N>;
  /** A job's event: `jobEventId(job.id, name)`, so that a retried job inserts nothing new. */
  id?: string | undefined;
}

/** What a write did: `id` null when the event was sampled out; `written` false for a repeat. */
export interface LogResult {
  id: string | null;
  written: boolean;
}

export interface EventsLog {
  /**
   * Writes one event IN `tx`, the transaction of the fact it describes: a rollback takes the
   * event with it. Checks the name and data (events.invalid_payload), drops undefined values,
   * redacts personal keys at any depth, keeps the data within 2 KB (refused or truncated, by
   * EVENTS_OVERSIZE), samples `message_sent`. An `id` that exists already inserts nothing
   * (`on conflict do nothing`): give jobs' events `jobEventId`. One statement.
   */
  log<N extends EventName>(
    ctx: TenantContext,
    name: N,
    data: EventData<N>,
    opts: { tx: Queryable; id?: string | undefined },
  ): Promise<LogResult>;
  /** Several events of one fact, in one statement in `tx` (e.g. ingest_completed and document_activated). */
  logMany(ctx: TenantContext, events: EventInput[], opts: { tx: Queryable }): Promise<LogResult[]>;
  /**
   * Writes an event outside any transaction, for a fact whose own transaction rolls back: a
   * refusal (quota_exceeded), which is a fact although nothing commits. Checked as `log` is, at
   * once (a bad event still throws here); the write itself starts now and is tracked, so that
   * `drain` (at shutdown) waits for it. Never call it with a transaction of the caller open on
   * PGlite expecting the row inside that transaction: on one connection the write waits for
   * that transaction to end, which is the point (it lands after the rollback). The promise
   * resolves once written; a failed write is logged and counted
   * (tenantrag_events_write_failures_total), never thrown into the refusal it describes.
   */
  logOutside<N extends EventName>(
    ctx: TenantContext,
    name: N,
    data: EventData<N>,
    opts?: { id?: string | undefined },
  ): Promise<void>;
  /** Resolves once every write `logOutside` started has ended. */
  drain(): Promise<void>;
}

/** The id of a job's event: a function of the job's id and the event's name alone. */
export function jobEventId(jobId: string, name: EventName): string {
  return deterministicUuid("tenantrag.events", `${jobId}:${name}`);
}

/** The user who acted, directly or as the cause of the job that acts. */
function userOf(ctx: TenantContext): string | null {
  const a = ctx.actor;
  if (a.kind === "user") return a.userId;
  if (a.kind === "system" && a.causedBy?.actor.kind === "user") return a.causedBy.actor.userId;
  return null;
}

export interface EventsDeps {
  db: Db;
  clock: Clock;
  logger: Pick<Logger, "error">;
  metrics?: Metrics | undefined;
  oversize: OversizePolicy;
  /** 0…1: the share of `message_sent` kept. */
  messageSentSampleRate: number;
}

/** The events feed's writer (seed 003): see EventsLog. */
export function createEventsLog(deps: EventsDeps): EventsLog {
  const registers = deps.metrics ? [deps.metrics.registry] : [];
  const truncated = new Counter({
    name: "tenantrag_events_truncated_total",
    help: "Events whose data was over 2 KB and was truncated (EVENTS_OVERSIZE=truncate)",
    labelNames: ["name"],
    registers,
  });
  const sampledOut = new Counter({
    name: "tenantrag_events_sampled_out_total",
    help: "Events not written because sampling left them out (message_sent)",
    labelNames: ["name"],
    registers,
  });
  const failures = new Counter({
    name: "tenantrag_events_write_failures_total",
    help: "Events written outside a transaction (quota_exceeded) whose write failed",
    labelNames: ["name"],
    registers,
  });
  const pending = new Set<Promise<void>>();

  /** The row of an event, or null when sampling leaves it out. */
  function build(ctx: TenantContext, e: EventInput, at: Date): NewEventRow | null {
    const clean = validateEvent(e.name, e.data);
    if (
      e.name === "message_sent" &&
      !sampled(String(clean.messageId), deps.messageSentSampleRate)
    ) {
      sampledOut.inc({ name: e.name });
      return null;
    }
    const fitted = fitSize(e.name, clean, deps.oversize);
    if (fitted.truncated) truncated.inc({ name: e.name });
    const session = clean.sessionId;
    return {
      id: e.id ?? randomUUID(),
      tenant_id: ctx.tenantId,
      name: e.name,
      data: fitted.data,
      session_id: typeof session === "string" ? session : null,
      user_id: userOf(ctx),
      created_at: at,
    };
  }

  async function write(ctx: TenantContext, events: EventInput[], tx: Queryable) {
    // One instant for the events of one fact.
    const at = new Date(deps.clock.now());
    const rows = events.map((e) => build(ctx, e, at));
    const kept = rows.filter((r): r is NewEventRow => r !== null);
    const inserted = new Set(await eventsStore.insert(tx, kept));
    return rows.map((r) =>
      r ? { id: r.id, written: inserted.has(r.id) } : { id: null, written: false },
    );
  }

  return {
    async log(ctx, name, data, opts) {
      const [r] = await write(ctx, [{ name, data, id: opts.id }], opts.tx);
      return r as LogResult;
    },
    logMany(ctx, events, opts) {
      return write(ctx, events, opts.tx);
    },
    logOutside(ctx, name, data, opts = {}) {
      const row = build(ctx, { name, data, id: opts.id }, new Date(deps.clock.now()));
      if (!row) return Promise.resolve();
      const p = eventsStore.insert(deps.db, [row]).then(
        () => undefined,
        (err: unknown) => {
          failures.inc({ name });
          deps.logger.error(
            { err, tenantId: ctx.tenantId, event: name },
            "an event written outside a transaction could not be written",
          );
        },
      );
      pending.add(p);
      void p.finally(() => pending.delete(p));
      return p;
    },
    async drain() {
      while (pending.size > 0) await Promise.all([...pending]);
    },
  };
}
