import type { Clock } from "../../platform/clock.js";
import { decodeCursor, encodeCursor } from "../../platform/db/cursor.js";
import type { Db } from "../../platform/db/index.js";
import { analyticsStore, type EventFilter, eventsStore, type Period } from "./events.store.js";
import type { EventName } from "./taxonomy.js";

const DAY_MS = 86_400_000;

/** One event as the feed shows it. */
export interface EventView {
  id: string;
  tenantId: string;
  name: string;
  data: Record<string, unknown>;
  sessionId: string | null;
  userId: string | null;
  createdAt: string;
}

/** A failure rate: failed / (completed + failed), null when nothing finished. */
const rate = (part: number, whole: number) => (whole === 0 ? null : part / whole);

/**
 * The reads of the events feed: its pages and the analytics over it. `tenantId` null reads
 * across every tenant (the platform admin's routes); every other caller passes its own.
 */
export function createEventsFeed(deps: { db: Db; clock: Clock }) {
  const { db } = deps;
  const since = (days: number) => new Date(deps.clock.now() - days * DAY_MS);

  return {
    /** One page of events, newest first (name and [from, to) filters, keyset cursor). */
    async list(
      tenantId: string | null,
      q: EventFilter & { limit: number; cursor?: string | undefined },
    ): Promise<{ items: EventView[]; nextCursor: string | null }> {
      const after = q.cursor ? decodeCursor(q.cursor) : undefined;
      const rows = await eventsStore.page(db, tenantId, q, { after, limit: q.limit + 1 });
      const page = rows.slice(0, q.limit);
      const last = page[page.length - 1];
      return {
        items: page.map((r) => ({
          id: r.id,
          tenantId: r.tenant_id,
          name: r.name,
          data: (r.data ?? {}) as Record<string, unknown>,
          sessionId: r.session_id,
          userId: r.user_id,
          createdAt: r.created_at.toISOString(),
        })),
        nextCursor: rows.length > q.limit && last ? encodeCursor(last.created_at, last.id) : null,
      };
    },

    /** Conversations started per period (seed 003's first query), oldest bucket first. */
    async conversations(tenantId: string | null, q: { period: Period; buckets: number }) {
      const series = await analyticsStore.conversations(db, tenantId, q.period, q.buckets);
      return {
        period: q.period,
        series: series.map((s) => ({ start: s.start.toISOString(), count: s.count })),
      };
    },

    /** Escalations per conversation started over the last `days` (seed 003's second). */
    async escalationRate(tenantId: string | null, q: { days: number }) {
      const c = await analyticsStore.counts(
        db,
        tenantId,
        ["conversation_started", "escalation_triggered"],
        since(q.days),
      );
      const conversations = c.conversation_started?.events ?? 0;
      const escalations = c.escalation_triggered?.events ?? 0;
      return { days: q.days, conversations, escalations, rate: rate(escalations, conversations) };
    },

    /** Ingestion throughput per day, failure rate, and failures by error code. */
    async ingestion(tenantId: string | null, q: { days: number }) {
      const names: EventName[] = ["ingest_started", "ingest_completed", "ingest_failed"];
      const from = since(q.days);
      const [rows, errors] = await Promise.all([
        analyticsStore.daily(db, tenantId, names, from),
        analyticsStore.byKey(db, tenantId, "ingest_failed", "errorCode", from),
      ]);
      const days = new Map<
        string,
        { started: number; completed: number; failed: number; chunks: number }
      >();
      const totals = { started: 0, completed: 0, failed: 0, chunks: 0 };
      for (const r of rows) {
        const key = r.day.toISOString();
        const d = days.get(key) ?? { started: 0, completed: 0, failed: 0, chunks: 0 };
        const field =
          r.name === "ingest_started"
            ? "started"
            : r.name === "ingest_completed"
              ? "completed"
              : "failed";
        d[field] += r.count;
        totals[field] += r.count;
        if (field === "completed") {
          d.chunks += Number(r.chunks);
          totals.chunks += Number(r.chunks);
        }
        days.set(key, d);
      }
      return {
        days: q.days,
        ...totals,
        failureRate: rate(totals.failed, totals.completed + totals.failed),
        series: [...days].map(([day, d]) => ({ day, ...d })),
        failuresByCode: errors.map((e) => ({ errorCode: e.value ?? "unknown", count: e.count })),
      };
    },

    /** Quota refusals over the last `days`, by quota. */
    async quotaFriction(tenantId: string | null, q: { days: number }) {
      const rows = await analyticsStore.byKey(
        db,
        tenantId,
        "quota_exceeded",
        "quotaType",
        since(q.days),
      );
      return {
        days: q.days,
        total: rows.reduce((n, r) => n + r.count, 0),
        byQuota: rows.map((r) => ({
          quotaType: r.value ?? "unknown",
          count: r.count,
          tenants: r.tenants,
        })),
      };
    },

    /**
     * The plan funnel over the last `days`: trials started, checkouts completed, plan changes,
     * cancellations (events and distinct tenants each), and the plan changes by transition.
     */
    async planFunnel(tenantId: string | null, q: { days: number }) {
      const steps: EventName[] = [
        "trial_started",
        "checkout_completed",
        "plan_updated",
        "subscription_canceled",
      ];
      const from = since(q.days);
      const [counts, transitions] = await Promise.all([
        analyticsStore.counts(db, tenantId, steps, from),
        analyticsStore.planTransitions(db, tenantId, from),
      ]);
      return {
        days: q.days,
        steps: steps.map((name) => ({ name, ...(counts[name] ?? { events: 0, tenants: 0 }) })),
        transitions: transitions.map((t) => ({
          from: t.from ?? "unknown",
          to: t.to ?? "unknown",
          count: t.count,
        })),
      };
    },
  };
}

export type EventsFeed = ReturnType<typeof createEventsFeed>;
