import { AppError } from "../../errors.js";
import type { Clock } from "../../platform/clock.js";
import type { Db } from "../../platform/db/index.js";
import type { PlatformContext, TenantContext } from "../../tenancy.js";
import type { TokenRow, Totals, UsagePoint, UsageSeries } from "./metrics.schemas.js";
import { type RangeTotals, reportsStore as store } from "./reports.store.js";
import { ceilTo, floorTo, nextStart, type Rollups } from "./rollups.js";
import type { Period, RollupRow } from "./rollups.store.js";
import { mergeSketches, percentiles } from "./sketch.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** What reports need of the ingestion module (its DocumentsService). */
export interface DocumentFacts {
  summaries(
    ctx: Pick<TenantContext, "tenantId">,
    ids: string[],
  ): Promise<
    Array<{
      id: string;
      title: string;
      docType: string;
      status: string;
      chunkCount: number;
      characterCount: number;
      processingTimeMs: number | null;
      createdAt: Date;
    }>
  >;
  stats(ctx: Pick<TenantContext, "tenantId">): Promise<{
    total: number;
    processing: number;
    completed: number;
    failed: number;
    totalSizeBytes: number;
    embeddingTokens: number;
    embeddingCostUsd: string;
    byType: Array<{ docType: string; documents: number }>;
  }>;
  platformStats(): Promise<{
    tenants: number;
    documents: number;
    completed: number;
    avgTokensPerDocument: number;
    avgProcessingTimeMs: number;
  }>;
}

/** What platform reports need of the tenants module: a tenant's name (404 if unknown). */
export interface TenantNames {
  adminGet(ctx: PlatformContext, id: string): Promise<{ id: string; name: string }>;
}

export interface ReportsDeps {
  db: Db;
  clock: Clock;
  rollups: Pick<Rollups, "read" | "watermark">;
  documents: DocumentFacts;
  tenants: TenantNames;
  /** The quotas service's figures, by shape (no import of the quotas module). */
  quotas?: { status(tenantId: string): Promise<Record<string, QuotaFigure>> };
}

/** One quota as `GET /api/customers/usage` shows it. */
export interface QuotaFigure {
  limit: number | null;
  used: number;
  reserved: number;
  remaining: number | null;
  periodStart: string | null;
  resetAt: string | null;
}

function quotaFigures(all: Record<string, QuotaFigure>): Record<string, QuotaFigure> {
  return Object.fromEntries(
    Object.entries(all).map(([type, q]) => [
      type,
      {
        limit: q.limit,
        used: q.used,
        reserved: q.reserved,
        remaining: q.remaining,
        periodStart: q.periodStart,
        resetAt: q.resetAt,
      },
    ]),
  );
}

export function toUsagePoint(r: RollupRow): UsagePoint {
  return {
    period: r.period,
    periodStart: r.period_start.toISOString(),
    periodEnd: r.period_end.toISOString(),
    apiCallsTotal: r.api_calls_total,
    apiCallsSuccessful: r.api_calls_successful,
    apiCallsFailed: r.api_calls_failed,
    apiCallsRateLimited: r.api_calls_rate_limited,
    quotaExceededCount: r.quota_exceeded_count,
    errorCount: r.error_count,
    errorRate: r.error_rate,
    latencyAvgMs: r.latency_avg_ms,
    latencyP95Ms: r.latency_p95_ms,
    latencyP99Ms: r.latency_p99_ms,
    peakQps: r.peak_qps,
    bytesIn: r.bytes_in,
    bytesOut: r.bytes_out,
    embeddingsGenerated: r.embeddings_generated,
    embeddingTokens: r.embedding_tokens,
    searches: r.searches,
    chatMessages: r.chat_messages,
    chatInputTokens: r.chat_input_tokens,
    chatOutputTokens: r.chat_output_tokens,
    totalTokens: r.total_tokens,
    documentsIngested: r.documents_ingested,
    documentsFailed: r.documents_failed,
    documentsStored: r.documents_stored,
    storageBytes: r.storage_bytes,
    costUsd: r.cost_usd,
    costPlatformUsd: r.cost_platform_usd,
    costTenantUsd: r.cost_tenant_usd,
    quotaLimit: r.quota_limit,
    quotaRemaining: r.quota_remaining,
  };
}

function toTotals(t: RangeTotals): Totals {
  return {
    apiCalls: t.api_calls,
    successfulCalls: t.successful,
    totalTokens: t.total_tokens,
    embeddingTokens: t.embedding_tokens,
    searches: t.searches,
    costUsd: t.cost,
    costPlatformUsd: t.cost_platform,
    costTenantUsd: t.cost_tenant,
    successRate: t.api_calls > 0 ? t.successful / t.api_calls : null,
  };
}

/** A decimal string's value in 1e-10 units (the ledger's scale), for exact comparisons. */
function units(usd: string): bigint {
  const neg = usd.startsWith("-");
  const [i = "0", f = ""] = (neg ? usd.slice(1) : usd).split(".");
  const v = BigInt(i) * 10_000_000_000n + BigInt(f.padEnd(10, "0").slice(0, 10) || "0");
  return neg ? -v : v;
}

function change(current: number, previous: number): number | null {
  return previous === 0 ? null : (current - previous) / previous;
}

/** The default window of a period's series: the last 24 hours, 30 days or 12 months. */
function defaultWindow(period: Period, now: Date): { from: Date; to: Date } {
  const to = nextStart(period, floorTo(period, now));
  if (period === "hour") return { from: new Date(to.getTime() - 24 * HOUR), to };
  if (period === "day") return { from: new Date(to.getTime() - 30 * DAY), to };
  return { from: new Date(Date.UTC(to.getUTCFullYear(), to.getUTCMonth() - 12, 1)), to };
}

export function createReports(deps: ReportsDeps) {
  const { db } = deps;
  const now = () => new Date(deps.clock.now());

  /** A period's window: whole periods `[floor(from), ceil(to))`, the default one when absent. */
  function windowOf(q: { period: Period; from?: Date | undefined; to?: Date | undefined }) {
    const w = defaultWindow(q.period, now());
    const span = w.to.getTime() - w.from.getTime();
    const from = floorTo(q.period, q.from ?? (q.to ? new Date(q.to.getTime() - span) : w.from));
    const to = ceilTo(q.period, q.to ?? (q.from ? new Date(q.from.getTime() + span) : w.to));
    return { from, to };
  }

  async function series(
    tenantId: string,
    q: { period: Period; from?: Date | undefined; to?: Date | undefined },
  ): Promise<UsageSeries> {
    const { from, to } = windowOf(q);
    const rows = await deps.rollups.read(tenantId, q.period, from, to);
    return {
      period: q.period,
      from: from.toISOString(),
      to: to.toISOString(),
      items: rows.map(toUsagePoint),
    };
  }

  async function tokenRows(
    tenantId: string,
    from: Date,
    to: Date,
    limit: number,
  ): Promise<TokenRow[]> {
    const rows = await store.tokensByDocument(db, tenantId, from, to, limit);
    const docs = new Map(
      (
        await deps.documents.summaries(
          { tenantId },
          rows.map((r) => r.document_id),
        )
      ).map((d) => [d.id, d]),
    );
    return rows.map((r) => {
      const d = docs.get(r.document_id);
      return {
        documentId: r.document_id,
        title: d?.title ?? null,
        docType: d?.docType ?? null,
        status: d?.status ?? null,
        chunkCount: d?.chunkCount ?? null,
        characterCount: d?.characterCount ?? null,
        embeddingTokens: r.tokens,
        embeddingCostUsd: r.cost,
        embeddings: r.items,
        processingTimeMs: d?.processingTimeMs ?? null,
        createdAt: d ? d.createdAt.toISOString() : null,
      };
    });
  }

  /** Hour-aligned rolling windows: this one ends at the next full hour. */
  function rolling(days: number): { from: Date; to: Date } {
    const to = ceilTo("hour", now());
    return { from: new Date(to.getTime() - days * DAY), to };
  }

  return {
    series,
    windowOf,

    async overview(ctx: TenantContext) {
      const last = rolling(1);
      const monthStart = floorTo("month", now());
      const [day, sketches, month, documents, mark] = [
        await store.totals(db, ctx.tenantId, "hour", last.from, last.to),
        await store.sketches(db, ctx.tenantId, "hour", last.from, last.to),
        await store.totals(db, ctx.tenantId, "month", monthStart, nextStart("month", monthStart)),
        await deps.documents.stats(ctx),
        await deps.rollups.watermark(),
      ];
      return {
        last24h: {
          ...toTotals(day),
          latencyP95Ms: percentiles(mergeSketches(sketches)).p95,
          errorRate: day.api_calls > 0 ? day.errors / day.api_calls : 0,
        },
        monthToDate: toTotals(month),
        documents,
        rolledUpThrough: mark ? mark.toISOString() : null,
      };
    },

    async documents(ctx: TenantContext) {
      const w = rolling(30);
      const stats = await deps.documents.stats(ctx);
      const t = await store.totals(db, ctx.tenantId, "hour", w.from, w.to);
      return {
        ...stats,
        last30Days: { ingested: t.documents_ingested, failed: t.documents_failed },
      };
    },

    async tokens(
      ctx: TenantContext,
      q: { from?: Date | undefined; to?: Date | undefined; limit: number },
    ) {
      // An open end is 30 days from the other one: never an unbounded scan.
      const to = q.to ?? (q.from ? new Date(q.from.getTime() + 30 * DAY) : ceilTo("hour", now()));
      const from = q.from ?? new Date(to.getTime() - 30 * DAY);
      return {
        from: from.toISOString(),
        to: to.toISOString(),
        items: await tokenRows(ctx.tenantId, from, to, q.limit),
      };
    },

    async costs(
      ctx: TenantContext,
      q: { period: Period; from?: Date | undefined; to?: Date | undefined },
    ) {
      const { from, to } = windowOf(q);
      const rows = await store.costs(db, ctx.tenantId, q.period, from, to);
      let total = 0n;
      let platform = 0n;
      let tenant = 0n;
      for (const r of rows) {
        const u = units(r.cost);
        total += u;
        if (r.payer === "platform") platform += u;
        else tenant += u;
      }
      const usd = (v: bigint) => {
        const s = v.toString().padStart(11, "0");
        return `${s.slice(0, -10)}.${s.slice(-10)}`;
      };
      return {
        period: q.period,
        from: from.toISOString(),
        to: to.toISOString(),
        items: rows.map((r) => ({
          periodStart: r.start.toISOString(),
          metric: r.metric,
          payer: r.payer,
          quantity: r.quantity,
          events: r.events,
          costUsd: r.cost,
        })),
        totals: { costUsd: usd(total), costPlatformUsd: usd(platform), costTenantUsd: usd(tenant) },
      };
    },

    /** Seed 001's usage report: this rolling period against the one before, top documents. */
    async report(ctx: TenantContext, period: "day" | "week" | "month") {
      const days = period === "day" ? 1 : period === "week" ? 7 : 30;
      const cur = rolling(days);
      const prev = { from: new Date(cur.from.getTime() - days * DAY), to: cur.from };
      const a = await store.totals(db, ctx.tenantId, "hour", cur.from, cur.to);
      const b = await store.totals(db, ctx.tenantId, "hour", prev.from, prev.to);
      const rate = (t: RangeTotals) => (t.api_calls > 0 ? t.successful / t.api_calls : null);
      const costChange =
        units(b.cost) === 0n ? null : Number(units(a.cost) - units(b.cost)) / Number(units(b.cost));
      return {
        period,
        from: cur.from.toISOString(),
        to: cur.to.toISOString(),
        summary: {
          totalTokens: a.total_tokens,
          totalApiCalls: a.api_calls,
          totalCost: a.cost,
          successRate: rate(a),
        },
        previous: {
          from: prev.from.toISOString(),
          to: prev.to.toISOString(),
          totalTokens: b.total_tokens,
          totalApiCalls: b.api_calls,
          totalCost: b.cost,
          successRate: rate(b),
        },
        trend: {
          tokens: change(a.total_tokens, b.total_tokens),
          apiCalls: change(a.api_calls, b.api_calls),
          cost: costChange,
        },
        topDocuments: await tokenRows(ctx.tenantId, cur.from, cur.to, 5),
      };
    },

    /** The tenant's current month and day (seed 004's GET /api/customers/usage). */
    async customerUsage(ctx: TenantContext) {
      const n = now();
      const [month] = await deps.rollups.read(
        ctx.tenantId,
        "month",
        floorTo("month", n),
        ceilTo("month", n),
      );
      const [today] = await deps.rollups.read(
        ctx.tenantId,
        "day",
        floorTo("day", n),
        nextStart("day", floorTo("day", n)),
      );
      return {
        tenantId: ctx.tenantId,
        month: month ? toUsagePoint(month) : null,
        today: today ? toUsagePoint(today) : null,
        quotas: deps.quotas ? quotaFigures(await deps.quotas.status(ctx.tenantId)) : null,
      };
    },

    /** One tenant's series and totals, for platform admins (404 for an unknown tenant). */
    async adminCustomerUsage(
      ctx: PlatformContext,
      tenantId: string,
      q: { period: Period; from?: Date | undefined; to?: Date | undefined },
    ) {
      await deps.tenants.adminGet(ctx, tenantId);
      const s = await series(tenantId, q);
      const totals = await store.totals(db, tenantId, q.period, new Date(s.from), new Date(s.to));
      return { ...s, tenantId, totals: toTotals(totals) };
    },

    /** Seed 004's global metrics: per customer this month, top token users, system stats. */
    async global(ctx: PlatformContext, q: { limit: number }) {
      const monthStart = floorTo("month", now());
      const monthEnd = nextStart("month", monthStart);
      const perTenant = await store.perTenant(db, monthStart, q.limit);
      const customers = [];
      for (const t of perTenant) {
        const tenant = await deps.tenants.adminGet(ctx, t.tenant_id).catch((err: unknown) => {
          // A tenant removed since its usage was recorded: shown by id, without a name.
          if (err instanceof AppError && err.code === "not_found") return null;
          throw err;
        });
        customers.push({
          tenantId: t.tenant_id,
          name: tenant?.name ?? null,
          apiCalls: t.api_calls,
          totalTokens: t.total_tokens,
          searches: t.searches,
          costUsd: t.cost,
        });
      }
      const top = await store.topDocumentsGlobal(db, monthStart, monthEnd, 10);
      const topUsers = [];
      for (const d of top) {
        const [doc] = await deps.documents.summaries({ tenantId: d.tenant_id }, [d.document_id]);
        topUsers.push({
          tenantId: d.tenant_id,
          documentId: d.document_id,
          title: doc?.title ?? null,
          embeddingTokens: d.tokens,
          embeddingCostUsd: d.cost,
        });
      }
      const month = await store.platformMonth(db, monthStart);
      const docs = await deps.documents.platformStats();
      return {
        month: { from: monthStart.toISOString(), to: monthEnd.toISOString() },
        customers,
        topUsers,
        systemStats: {
          tenantsWithUsage: month.tenants,
          apiCalls: month.api_calls,
          totalTokens: month.total_tokens,
          costUsd: month.cost,
          documents: docs.documents,
          completedDocuments: docs.completed,
          avgTokensPerDocument: docs.avgTokensPerDocument,
          avgProcessingTimeMs: docs.avgProcessingTimeMs,
        },
      };
    },
  };
}

export type Reports = ReturnType<typeof createReports>;
