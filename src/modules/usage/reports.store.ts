import { kysely, type Queryable, sql } from "../../platform/db/index.js";
import type { Period } from "./rollups.store.js";

/**
 * The SQL of reports and exports: sums over roll-up rows, and the ledger (`usage_events`)
 * grouped by document or by metric and payer. Gauges (documents stored, storage bytes) are
 * levels and are left out of every sum.
 */

const GAUGES = sql.raw("('documents_stored', 'storage_bytes')");

export interface RangeTotals {
  api_calls: number;
  successful: number;
  errors: number;
  total_tokens: number;
  embedding_tokens: number;
  searches: number;
  documents_ingested: number;
  documents_failed: number;
  cost: string;
  cost_platform: string;
  cost_tenant: string;
}

export interface EventExportRow {
  id: string;
  occurred_at: Date;
  recorded_at: Date;
  metric: string;
  quantity: number;
  items: number;
  unit: string;
  provider: string;
  model: string;
  payer: string;
  cost_usd: string;
  document_id: string | null;
  subject_type: string;
  subject_id: string;
}

export const reportsStore = {
  /** Sums of the tenant's `period` rows starting in `[from, to)`. */
  async totals(
    q: Queryable,
    tenantId: string,
    period: Period,
    from: Date,
    to: Date,
  ): Promise<RangeTotals> {
    const r = await sql<RangeTotals>`
      select coalesce(sum(api_calls_total), 0)::int8 as api_calls,
        coalesce(sum(api_calls_successful), 0)::int8 as successful,
        coalesce(sum(error_count), 0)::int8 as errors,
        coalesce(sum(total_tokens), 0)::int8 as total_tokens,
        coalesce(sum(embedding_tokens), 0)::int8 as embedding_tokens,
        coalesce(sum(searches), 0)::int8 as searches,
        coalesce(sum(documents_ingested), 0)::int8 as documents_ingested,
        coalesce(sum(documents_failed), 0)::int8 as documents_failed,
        coalesce(sum(cost_usd), 0)::numeric(20, 10)::text as cost,
        coalesce(sum(cost_platform_usd), 0)::numeric(20, 10)::text as cost_platform,
        coalesce(sum(cost_tenant_usd), 0)::numeric(20, 10)::text as cost_tenant
      from usage_rollups
      where tenant_id = ${tenantId} and period = ${period}
        and period_start >= ${from} and period_start < ${to}`.execute(kysely(q));
    return r.rows[0] as RangeTotals;
  },

  /** Latency sketches of the tenant's `period` rows in `[from, to)`. */
  async sketches(
    q: Queryable,
    tenantId: string,
    period: Period,
    from: Date,
    to: Date,
  ): Promise<Array<Uint8Array | null>> {
    const rows = await kysely(q)
      .selectFrom("usage_rollups")
      .select("latency_sketch")
      .where("tenant_id", "=", tenantId)
      .where("period", "=", period)
      .where("period_start", ">=", from)
      .where("period_start", "<", to)
      .execute();
    return rows.map((r) => r.latency_sketch);
  },

  /** Embedding tokens per document in `[from, to)`, most first. */
  async tokensByDocument(q: Queryable, tenantId: string, from: Date, to: Date, limit: number) {
    const r = await sql<{ document_id: string; tokens: number; items: number; cost: string }>`
      select document_id, sum(quantity)::int8 as tokens, sum(items)::int8 as items,
        sum(cost_usd)::numeric(20, 10)::text as cost
      from usage_events
      where tenant_id = ${tenantId} and metric = 'embedding_tokens' and document_id is not null
        and occurred_at >= ${from} and occurred_at < ${to}
      group by document_id
      order by tokens desc, document_id
      limit ${limit}`.execute(kysely(q));
    return r.rows;
  },

  /** Quantity, events and cost per window, metric and payer. */
  async costs(q: Queryable, tenantId: string, period: Period, from: Date, to: Date) {
    const r = await sql<{
      start: Date;
      metric: string;
      payer: "platform" | "tenant";
      quantity: number;
      events: number;
      cost: string;
    }>`
      select date_trunc(${period}, occurred_at, 'UTC') as start, metric, payer,
        sum(quantity)::int8 as quantity, count(*)::int8 as events,
        sum(cost_usd)::numeric(20, 10)::text as cost
      from usage_events
      where tenant_id = ${tenantId} and occurred_at >= ${from} and occurred_at < ${to}
        and metric not in ${GAUGES}
      group by 1, 2, 3
      order by 1, 2, 3`.execute(kysely(q));
    return r.rows;
  },

  /** One page of the tenant's billable events in `[from, to)`, by (occurred_at, id). */
  async eventsPage(
    q: Queryable,
    tenantId: string,
    from: Date,
    to: Date,
    after: { at: Date; id: string } | null,
    limit: number,
  ): Promise<EventExportRow[]> {
    let query = kysely(q)
      .selectFrom("usage_events")
      .select([
        "id",
        "occurred_at",
        "recorded_at",
        "metric",
        "quantity",
        "items",
        "unit",
        "provider",
        "model",
        "payer",
        "cost_usd",
        "document_id",
        "subject_type",
        "subject_id",
      ])
      .where("tenant_id", "=", tenantId)
      .where("occurred_at", ">=", from)
      .where("occurred_at", "<", to);
    if (after) {
      query = query.where((eb) =>
        eb.or([
          eb("occurred_at", ">", after.at),
          eb.and([eb("occurred_at", "=", after.at), eb("id", ">", after.id)]),
        ]),
      );
    }
    return query.orderBy("occurred_at").orderBy("id").limit(limit).execute();
  },

  /** Per tenant, the month row's figures (platform admins), costliest first. */
  async perTenant(q: Queryable, monthStart: Date, limit: number) {
    const r = await sql<{
      tenant_id: string;
      api_calls: number;
      total_tokens: number;
      searches: number;
      cost: string;
    }>`
      select tenant_id, api_calls_total as api_calls, total_tokens, searches,
        cost_usd::text as cost
      from usage_rollups
      where period = 'month' and period_start = ${monthStart}
      order by cost_usd desc, total_tokens desc, tenant_id
      limit ${limit}`.execute(kysely(q));
    return r.rows;
  },

  /** Platform totals of the month row of every tenant. */
  async platformMonth(q: Queryable, monthStart: Date) {
    const r = await sql<{ tenants: number; api_calls: number; total_tokens: number; cost: string }>`
      select count(*)::int8 as tenants, coalesce(sum(api_calls_total), 0)::int8 as api_calls,
        coalesce(sum(total_tokens), 0)::int8 as total_tokens,
        coalesce(sum(cost_usd), 0)::numeric(20, 10)::text as cost
      from usage_rollups where period = 'month' and period_start = ${monthStart}`.execute(
      kysely(q),
    );
    return r.rows[0] as { tenants: number; api_calls: number; total_tokens: number; cost: string };
  },

  /** The documents that used the most embedding tokens in `[from, to)`, across tenants. */
  async topDocumentsGlobal(q: Queryable, from: Date, to: Date, limit: number) {
    const r = await sql<{ tenant_id: string; document_id: string; tokens: number; cost: string }>`
      select tenant_id, document_id, sum(quantity)::int8 as tokens,
        sum(cost_usd)::numeric(20, 10)::text as cost
      from usage_events
      where metric = 'embedding_tokens' and document_id is not null
        and occurred_at >= ${from} and occurred_at < ${to}
      group by tenant_id, document_id
      order by tokens desc, document_id
      limit ${limit}`.execute(kysely(q));
    return r.rows;
  },
};
