import type { Logger } from "pino";
import type { Clock } from "../../platform/clock.js";
import {
  type Db,
  type InTransaction,
  inTransaction,
  type Queryable,
} from "../../platform/db/index.js";
import type { TenantContext } from "../../tenancy.js";
import { type Period, type RollupRow, rollupsStore as store } from "./rollups.store.js";
import { mergeSketches, percentiles, serializeSketch, sketchFromBuckets } from "./sketch.js";

/**
 * Usage roll-ups: per tenant, per UTC hour, day and month (see migration 0015).
 *
 * An hour row is computed whole from the raw rows of the hour; a day row from its hour rows,
 * a month row from its day rows (sums exact, numeric costs included; percentiles from merged
 * sketches; the peak QPS the highest child's; gauges the last level). Recomputing a window
 * writes the same rows, so the job may recompute as often as it likes and re-rating may call
 * `recompute` for any past window.
 *
 * Raw telemetry is removed by retention (30 days) and billable events later (400 days): an
 * hour older than a source's horizon keeps the figures it has from that source rather than
 * being recomputed to zero from rows that are gone.
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const WATERMARK = "usage.rollup";
/**
 * How far back each run looks again, in `recorded_at`: a row's `recorded_at` is its
 * transaction's start, so a transaction open when a run read up to T may commit rows recorded
 * before T. Recomputing is idempotent, so looking again costs only time.
 */
const OVERLAP_MS = 5 * 60_000;

/** What the roll-ups need of the ingestion module (its DocumentsService). */
export interface VersionCountSource {
  versionCountsByHour(
    ctx: Pick<TenantContext, "tenantId">,
    from: Date,
    to: Date,
    opts?: InTransaction,
  ): Promise<Array<{ hour: Date; ingested: number; failed: number }>>;
}

export interface RollupsDeps {
  db: Db;
  clock: Clock;
  documents: VersionCountSource;
  logger: Pick<Logger, "info" | "warn">;
  /** Raw API calls are kept this long (retention); older hours keep their call figures. */
  apiCallsRetentionDays?: number;
  /** Billable events are kept this long; older hours keep their usage figures. */
  usageEventsRetentionDays?: number;
  /** Windows a job pass recomputes at once on PostgreSQL (default 2). */
  concurrency?: number;
}

export function floorTo(period: Period, t: Date): Date {
  const d = new Date(t.getTime());
  if (period === "hour") return new Date(Math.floor(d.getTime() / HOUR) * HOUR);
  if (period === "day") return new Date(Math.floor(d.getTime() / DAY) * DAY);
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
}

export function nextStart(period: Period, start: Date): Date {
  if (period === "hour") return new Date(start.getTime() + HOUR);
  if (period === "day") return new Date(start.getTime() + DAY);
  return new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1));
}

/** `to` rounded up to the period's next boundary (itself when on one). */
export function ceilTo(period: Period, t: Date): Date {
  const f = floorTo(period, t);
  return f.getTime() === t.getTime() ? f : nextStart(period, f);
}

const API_COLUMNS = [
  "api_calls_total",
  "api_calls_successful",
  "api_calls_failed",
  "api_calls_rate_limited",
  "quota_exceeded_count",
  "error_count",
  "error_rate",
  "latency_count",
  "latency_sum_ms",
  "latency_avg_ms",
  "latency_p95_ms",
  "latency_p99_ms",
  "latency_sketch",
  "peak_qps",
  "bytes_in",
  "bytes_out",
] as const;
const USAGE_COLUMNS = [
  "embeddings_generated",
  "embedding_tokens",
  "searches",
  "chat_messages",
  "chat_input_tokens",
  "chat_output_tokens",
  "total_tokens",
  "documents_stored",
  "storage_bytes",
  "cost_usd",
  "cost_platform_usd",
  "cost_tenant_usd",
] as const;

function emptyRow(tenantId: string, period: Period, start: Date): RollupRow {
  return {
    tenant_id: tenantId,
    period,
    period_start: start,
    period_end: nextStart(period, start),
    api_calls_total: 0,
    api_calls_successful: 0,
    api_calls_failed: 0,
    api_calls_rate_limited: 0,
    quota_exceeded_count: 0,
    error_count: 0,
    error_rate: 0,
    latency_count: 0,
    latency_sum_ms: 0,
    latency_avg_ms: 0,
    latency_p95_ms: null,
    latency_p99_ms: null,
    latency_sketch: null,
    peak_qps: 0,
    bytes_in: 0,
    bytes_out: 0,
    embeddings_generated: 0,
    embedding_tokens: 0,
    searches: 0,
    chat_messages: 0,
    chat_input_tokens: 0,
    chat_output_tokens: 0,
    total_tokens: 0,
    documents_ingested: 0,
    documents_failed: 0,
    documents_stored: null,
    storage_bytes: null,
    cost_usd: "0",
    cost_platform_usd: "0",
    cost_tenant_usd: "0",
    // Quota figures are filled by the quotas integration when it exists; null = unknown.
    quota_limit: null,
    quota_remaining: null,
  };
}

/** Numeric text as the database returns it from `sum(numeric(20,10))`, scale normalised. */
function money(v: string | null | undefined): string {
  if (v === null || v === undefined) return "0.0000000000";
  const neg = v.startsWith("-");
  const [i, f = ""] = (neg ? v.slice(1) : v).split(".");
  return `${neg ? "-" : ""}${i || "0"}.${f.padEnd(10, "0").slice(0, 10)}`;
}

const ratio = (n: number, d: number) => (d > 0 ? n / d : 0);

function finish(row: RollupRow): RollupRow {
  // Rounded to a microsecond: a float sum's last bits depend on the order the database adds
  // in, and a recomputation must give the same row.
  row.latency_sum_ms = Math.round(row.latency_sum_ms * 1000) / 1000;
  row.error_rate = ratio(row.error_count, row.api_calls_total);
  row.latency_avg_ms =
    row.latency_count > 0 ? Math.round((row.latency_sum_ms / row.latency_count) * 1000) / 1000 : 0;
  row.total_tokens = row.embedding_tokens + row.chat_input_tokens + row.chat_output_tokens;
  row.cost_usd = money(row.cost_usd);
  row.cost_platform_usd = money(row.cost_platform_usd);
  row.cost_tenant_usd = money(row.cost_tenant_usd);
  return row;
}

const key = (d: Date) => d.getTime();

export function createRollups(deps: RollupsDeps) {
  const { db } = deps;
  const apiHorizonDays = deps.apiCallsRetentionDays ?? 30;
  const usageHorizonDays = deps.usageEventsRetentionDays ?? 400;

  /** Hour rows of `[from, to)` (hour-aligned) from raw data. */
  async function hourRows(q: Queryable, tenantId: string, from: Date, to: Date) {
    // One after another: a transaction is one connection, which runs one statement at a time.
    const api = await store.apiHours(q, tenantId, from, to);
    const peaks = await store.peakQps(q, tenantId, from, to);
    const usage = await store.usageHours(q, tenantId, from, to);
    const gauges = await store.gaugeHours(q, tenantId, from, to);
    const versions = await deps.documents.versionCountsByHour({ tenantId }, from, to, { tx: q });
    const existing = await store.rows(q, tenantId, "hour", from, to);
    const rows = new Map<number, RollupRow>();
    const row = (hour: Date) => {
      let r = rows.get(key(hour));
      if (!r) {
        r = emptyRow(tenantId, "hour", hour);
        rows.set(key(hour), r);
      }
      return r;
    };
    for (const a of api) {
      Object.assign(row(a.hour), {
        api_calls_total: a.total,
        api_calls_successful: a.successful,
        api_calls_failed: a.failed,
        api_calls_rate_limited: a.rate_limited,
        quota_exceeded_count: a.quota_exceeded,
        error_count: a.errors,
        latency_count: a.total,
        latency_sum_ms: a.latency_sum,
        bytes_in: a.bytes_in,
        bytes_out: a.bytes_out,
      });
    }
    for (const p of peaks) row(p.hour).peak_qps = p.peak;
    for (const b of api) {
      // Buckets in key order (the query's): a window's sketch is the same bytes every time.
      const sketch = sketchFromBuckets(
        b.buckets.map((bucket, i) => ({ bucket, n: b.counts[i] ?? 0 })),
      );
      const r = row(b.hour);
      r.latency_sketch = serializeSketch(sketch);
      const p = percentiles(sketch);
      r.latency_p95_ms = p.p95;
      r.latency_p99_ms = p.p99;
    }
    for (const u of usage) {
      Object.assign(row(u.hour), {
        embeddings_generated: u.embeddings_generated,
        embedding_tokens: u.embedding_tokens,
        searches: u.searches,
        chat_messages: u.chat_messages,
        chat_input_tokens: u.chat_input_tokens,
        chat_output_tokens: u.chat_output_tokens,
        cost_usd: u.cost,
        cost_platform_usd: u.cost_platform,
        cost_tenant_usd: u.cost_tenant,
      });
    }
    for (const g of gauges) row(g.hour)[g.metric] = g.quantity;
    for (const v of versions) {
      Object.assign(row(v.hour), { documents_ingested: v.ingested, documents_failed: v.failed });
    }
    // A stored hour that has no raw rows any more is recomputed too (to zero, or kept below).
    for (const e of existing) row(e.period_start);

    const now = deps.clock.now();
    const apiHorizon = now - apiHorizonDays * DAY + DAY;
    const usageHorizon = now - usageHorizonDays * DAY + DAY;
    const stored = new Map(existing.map((e) => [key(e.period_start), e]));
    for (const [hour, r] of rows) {
      const old = stored.get(hour);
      if (old && hour < apiHorizon)
        for (const c of API_COLUMNS) (r as Record<string, unknown>)[c] = old[c];
      if (old && hour < usageHorizon)
        for (const c of USAGE_COLUMNS) (r as Record<string, unknown>)[c] = old[c];
      finish(r);
    }
    return [...rows.values()];
  }

  /** Day or month rows of `[from, to)` (aligned to `parent`) from the `child` rows. */
  async function parentRows(
    q: Queryable,
    tenantId: string,
    child: Period,
    parent: Period,
    from: Date,
    to: Date,
  ) {
    const sums = await store.childSums(q, tenantId, child, parent, from, to);
    const details = await store.childDetails(q, tenantId, child, from, to);
    const existing = await store.rows(q, tenantId, parent, from, to);
    const rows = new Map<number, RollupRow>();
    for (const e of existing)
      rows.set(key(e.period_start), emptyRow(tenantId, parent, e.period_start));
    for (const s of sums) {
      const { start, ...figures } = s;
      rows.set(key(start), Object.assign(emptyRow(tenantId, parent, start), figures));
    }
    const children = new Map<number, typeof details>();
    for (const d of details) {
      const k = key(floorTo(parent, d.period_start));
      const list = children.get(k) ?? [];
      list.push(d);
      children.set(k, list);
    }
    for (const [k, r] of rows) {
      const list = children.get(k) ?? [];
      const merged = mergeSketches(list.map((d) => d.latency_sketch));
      if (merged) {
        r.latency_sketch = serializeSketch(merged);
        const p = percentiles(merged);
        r.latency_p95_ms = p.p95;
        r.latency_p99_ms = p.p99;
      }
      // Gauges are levels: the window's is the last one its children saw.
      for (const d of list) {
        if (d.documents_stored !== null) r.documents_stored = d.documents_stored;
        if (d.storage_bytes !== null) r.storage_bytes = d.storage_bytes;
      }
      finish(r);
    }
    return [...rows.values()];
  }

  async function recomputeOn(q: Queryable, tenantId: string, from: Date, to: Date) {
    await store.lockTenant(q, tenantId);
    const h0 = floorTo("hour", from);
    const h1 = ceilTo("hour", to);
    let written = await store.upsert(q, await hourRows(q, tenantId, h0, h1));
    const d0 = floorTo("day", h0);
    const d1 = ceilTo("day", h1);
    written += await store.upsert(q, await parentRows(q, tenantId, "hour", "day", d0, d1));
    const m0 = floorTo("month", d0);
    const m1 = ceilTo("month", d1);
    written += await store.upsert(q, await parentRows(q, tenantId, "day", "month", m0, m1));
    return written;
  }

  return {
    /**
     * Recomputes the tenant's hours overlapping `[from, to)` from raw data, then the days and
     * months containing them. Idempotent. In `opts.tx` when given (re-rating recomputes in
     * the transaction that changed the costs). Returns the number of rows written (unchanged
     * rows are not written).
     */
    async recompute(tenantId: string, from: Date, to: Date, opts: InTransaction = {}) {
      if (!(from < to)) return 0;
      return inTransaction(db, opts.tx, (q) => recomputeOn(q, tenantId, from, to));
    },

    /**
     * One pass of the roll-up job: every (tenant, hour) that received raw rows recorded since
     * the watermark (minus an overlap) is recomputed, and the watermark moves to the time the
     * pass read up to. A late-flushed call (old `occurred_at`, new `recorded_at`) is found
     * like any other. A failure leaves the watermark where it was: the next run redoes it.
     */
    async run(): Promise<{ windows: number; tenants: number; rowsWritten: number }> {
      const upTo = await store.now(db);
      const mark = await store.watermark(db, WATERMARK);
      const after = mark ? new Date(mark.getTime() - OVERLAP_MS) : null;
      const touched = await store.touchedHours(db, after, upTo);
      // Consecutive hours of a tenant become one window.
      const windows: Array<{ tenantId: string; from: Date; to: Date }> = [];
      for (const t of touched) {
        const last = windows[windows.length - 1];
        if (last && last.tenantId === t.tenant_id && last.to.getTime() === t.hour.getTime()) {
          last.to = nextStart("hour", t.hour);
        } else {
          windows.push({ tenantId: t.tenant_id, from: t.hour, to: nextStart("hour", t.hour) });
        }
      }
      // Tenants in parallel on PostgreSQL (a window per connection; one tenant's windows may
      // also overlap in days, which the tenant lock serialises); one at a time on PGlite.
      let rowsWritten = 0;
      let next = 0;
      const lanes = db.kind === "postgres" ? (deps.concurrency ?? 2) : 1;
      await Promise.all(
        Array.from({ length: Math.min(lanes, windows.length) }, async () => {
          while (next < windows.length) {
            const w = windows[next++] as (typeof windows)[number];
            rowsWritten += await db.transaction((tx) => recomputeOn(tx, w.tenantId, w.from, w.to));
          }
        }),
      );
      await store.setWatermark(db, WATERMARK, upTo);
      const tenants = new Set(windows.map((w) => w.tenantId)).size;
      if (windows.length > 0) {
        deps.logger.info({ windows: windows.length, tenants, rowsWritten }, "usage rolled up");
      }
      return { windows: windows.length, tenants, rowsWritten };
    },

    /** Raw rows recorded up to this time are folded in (null before the first run). */
    async watermark(): Promise<Date | null> {
      return store.watermark(db, WATERMARK);
    },

    /** The summed metrics and cost of the hourly rows in `[from, to)` (reconciliation). */
    async totals(tenantId: string, from: Date, to: Date) {
      return store.hourTotals(db, tenantId, from, to);
    },

    /** The tenant's stored rows of `period` whose window starts in `[from, to)`, oldest first. */
    async read(tenantId: string, period: Period, from: Date, to: Date): Promise<RollupRow[]> {
      return store.rows(db, tenantId, period, from, to);
    },
  };
}

export type Rollups = ReturnType<typeof createRollups>;
