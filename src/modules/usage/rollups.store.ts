import { kysely, type Queryable, type Row, sql } from "../../platform/db/index.js";
import { LN_GAMMA, ZERO_BELOW_MS, ZERO_BUCKET } from "./sketch.js";

/**
 * The SQL of the roll-ups: aggregates of the raw tables per UTC hour (`api_calls`,
 * `usage_events`), of hour rows per day and of day rows per month, the upsert, the watermark.
 * Every query filters by tenant; the windows are half-open `[from, to)`.
 */

export type Period = "hour" | "day" | "month";

export const ROLLUP_COLUMNS = [
  "tenant_id",
  "period",
  "period_start",
  "period_end",
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
  "embeddings_generated",
  "embedding_tokens",
  "searches",
  "chat_messages",
  "chat_input_tokens",
  "chat_output_tokens",
  "total_tokens",
  "documents_ingested",
  "documents_failed",
  "documents_stored",
  "storage_bytes",
  "cost_usd",
  "cost_platform_usd",
  "cost_tenant_usd",
  "quota_limit",
  "quota_remaining",
] as const;

export type RollupRow = Row<"usage_rollups", (typeof ROLLUP_COLUMNS)[number]>;

/** The key columns; every other column of ROLLUP_COLUMNS is recomputed. */
const KEY = ["tenant_id", "period", "period_start"] as const;
const VALUE_COLUMNS = ROLLUP_COLUMNS.filter((c) => !(KEY as readonly string[]).includes(c));

/**
 * The UTC window of a timestamp. Hours and seconds use `date_bin` (absolute time, no time
 * zone arithmetic: several times faster than `date_trunc(…, 'UTC')` over a million rows, and
 * the same result); days and months `date_trunc` in UTC.
 */
const trunc = (period: Period | "second", column: string) =>
  period === "hour" || period === "second"
    ? sql.raw(`date_bin('1 ${period}', ${column}, timestamptz '2000-01-01 00:00:00+00')`)
    : sql.raw(`date_trunc('${period}', ${column}, 'UTC')`);

export interface ApiHour {
  hour: Date;
  total: number;
  successful: number;
  failed: number;
  rate_limited: number;
  quota_exceeded: number;
  errors: number;
  latency_sum: number;
  bytes_in: number;
  bytes_out: number;
  buckets: number[];
  counts: number[];
}

export interface UsageHour {
  hour: Date;
  embeddings_generated: number;
  embedding_tokens: number;
  searches: number;
  chat_messages: number;
  chat_input_tokens: number;
  chat_output_tokens: number;
  cost: string;
  cost_platform: string;
  cost_tenant: string;
}

export const rollupsStore = {
  /**
   * Calls per hour in one scan: counts by outcome, latency sum, bytes, and the latency sketch's
   * buckets (sketch.ts: the sketch's own key function) with their counts as two arrays in
   * bucket order — a few hundred (bucket, count) pairs per hour cost three times more to ship
   * as rows than as arrays.
   */
  async apiHours(q: Queryable, tenantId: string, from: Date, to: Date): Promise<ApiHour[]> {
    const r = await sql<ApiHour>`
      select hour,
        sum(total)::int8 as total, sum(successful)::int8 as successful,
        sum(failed)::int8 as failed, sum(rate_limited)::int8 as rate_limited,
        sum(quota_exceeded)::int8 as quota_exceeded, sum(errors)::int8 as errors,
        sum(latency_sum)::float8 as latency_sum,
        sum(bytes_in)::int8 as bytes_in, sum(bytes_out)::int8 as bytes_out,
        array_agg(bucket order by bucket) as buckets, array_agg(total order by bucket) as counts
      from (
        select ${trunc("hour", "occurred_at")} as hour,
          case when latency_ms < ${ZERO_BELOW_MS}::float8 then ${ZERO_BUCKET}::int4
            else ceil(ln(latency_ms) / ${LN_GAMMA}::float8)::int4 end as bucket,
          count(*)::int4 as total,
          count(*) filter (where status < 400) as successful,
          count(*) filter (where status >= 400) as failed,
          count(*) filter (where status = 429 and error_code = 'rate_limit.exceeded') as rate_limited,
          count(*) filter (where error_code = 'quota.exceeded') as quota_exceeded,
          count(*) filter (where status >= 500) as errors,
          sum(latency_ms) as latency_sum,
          sum(bytes_in) as bytes_in,
          sum(bytes_out) as bytes_out
        from api_calls
        where tenant_id = ${tenantId} and occurred_at >= ${from} and occurred_at < ${to}
        group by 1, 2
      ) b
      group by hour`.execute(kysely(q));
    return r.rows;
  },

  /** The most calls in any one second, per hour. */
  async peakQps(
    q: Queryable,
    tenantId: string,
    from: Date,
    to: Date,
  ): Promise<Array<{ hour: Date; peak: number }>> {
    const r = await sql<{ hour: Date; peak: number }>`
      select ${trunc("hour", "s")} as hour, max(n)::int4 as peak
      from (
        select ${trunc("second", "occurred_at")} as s, count(*) as n
        from api_calls
        where tenant_id = ${tenantId} and occurred_at >= ${from} and occurred_at < ${to}
        group by 1
      ) per_second
      group by 1`.execute(kysely(q));
    return r.rows;
  },

  /**
   * Billable facts per hour. Costs are numeric sums (exact, as text). Gauges (documents
   * stored, storage bytes) are levels: they are not summed here, and their cost is not added.
   */
  async usageHours(q: Queryable, tenantId: string, from: Date, to: Date): Promise<UsageHour[]> {
    const r = await sql<UsageHour>`
      select ${trunc("hour", "occurred_at")} as hour,
        coalesce(sum(items) filter (where metric = 'embedding_tokens'), 0)::int8 as embeddings_generated,
        coalesce(sum(quantity) filter (where metric = 'embedding_tokens'), 0)::int8 as embedding_tokens,
        coalesce(sum(quantity) filter (where metric = 'search_queries'), 0)::int8 as searches,
        coalesce(sum(quantity) filter (where metric = 'chat_messages'), 0)::int8 as chat_messages,
        coalesce(sum(quantity) filter (where metric = 'chat_input_tokens'), 0)::int8 as chat_input_tokens,
        coalesce(sum(quantity) filter (where metric = 'chat_output_tokens'), 0)::int8 as chat_output_tokens,
        coalesce(sum(cost_usd) filter (where metric not in ('documents_stored', 'storage_bytes')), 0)::text as cost,
        coalesce(sum(cost_usd) filter (where payer = 'platform' and metric not in ('documents_stored', 'storage_bytes')), 0)::text as cost_platform,
        coalesce(sum(cost_usd) filter (where payer = 'tenant' and metric not in ('documents_stored', 'storage_bytes')), 0)::text as cost_tenant
      from usage_events
      where tenant_id = ${tenantId} and occurred_at >= ${from} and occurred_at < ${to}
      group by 1`.execute(kysely(q));
    return r.rows;
  },

  /** The last level of each gauge in each hour. */
  async gaugeHours(
    q: Queryable,
    tenantId: string,
    from: Date,
    to: Date,
  ): Promise<
    Array<{ hour: Date; metric: "documents_stored" | "storage_bytes"; quantity: number }>
  > {
    const r = await sql<{
      hour: Date;
      metric: "documents_stored" | "storage_bytes";
      quantity: number;
    }>`
      select distinct on (1, metric) ${trunc("hour", "occurred_at")} as hour, metric, quantity
      from usage_events
      where tenant_id = ${tenantId} and occurred_at >= ${from} and occurred_at < ${to}
        and metric in ('documents_stored', 'storage_bytes')
      order by 1, metric, occurred_at desc, recorded_at desc, id desc`.execute(kysely(q));
    return r.rows;
  },

  /**
   * Sums of the hourly rows in `[from, to)` of the summed metrics, by the ledger's metric names,
   * and their cost (numeric, exact, as text): what reconciliation compares with the events.
   */
  async hourTotals(q: Queryable, tenantId: string, from: Date, to: Date) {
    const row = await kysely(q)
      .selectFrom("usage_rollups")
      .select([
        sql<string>`coalesce(sum(embedding_tokens), 0)::text`.as("embedding_tokens"),
        sql<string>`coalesce(sum(searches), 0)::text`.as("search_queries"),
        sql<string>`coalesce(sum(chat_input_tokens), 0)::text`.as("chat_input_tokens"),
        sql<string>`coalesce(sum(chat_output_tokens), 0)::text`.as("chat_output_tokens"),
        sql<string>`coalesce(sum(chat_messages), 0)::text`.as("chat_messages"),
        sql<string>`coalesce(sum(cost_usd), 0)::text`.as("cost_usd"),
      ])
      .where("tenant_id", "=", tenantId)
      .where("period", "=", "hour")
      .where("period_start", ">=", from)
      .where("period_start", "<", to)
      .executeTakeFirstOrThrow();
    return row;
  },

  /** Stored rows of one period in `[from, to)`, oldest first. */
  async rows(
    q: Queryable,
    tenantId: string,
    period: Period,
    from: Date,
    to: Date,
  ): Promise<RollupRow[]> {
    return kysely(q)
      .selectFrom("usage_rollups")
      .select(ROLLUP_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("period", "=", period)
      .where("period_start", ">=", from)
      .where("period_start", "<", to)
      .orderBy("period_start")
      .execute();
  },

  /**
   * Sums of the child rows (hours of a day, days of a month) per parent window: the additive
   * columns, exactly (numeric costs included); the peak is the children's highest.
   */
  async childSums(
    q: Queryable,
    tenantId: string,
    child: Period,
    parent: Period,
    from: Date,
    to: Date,
  ) {
    const r = await sql<{
      start: Date;
      api_calls_total: number;
      api_calls_successful: number;
      api_calls_failed: number;
      api_calls_rate_limited: number;
      quota_exceeded_count: number;
      error_count: number;
      latency_count: number;
      latency_sum_ms: number;
      peak_qps: number;
      bytes_in: number;
      bytes_out: number;
      embeddings_generated: number;
      embedding_tokens: number;
      searches: number;
      chat_messages: number;
      chat_input_tokens: number;
      chat_output_tokens: number;
      total_tokens: number;
      documents_ingested: number;
      documents_failed: number;
      cost_usd: string;
      cost_platform_usd: string;
      cost_tenant_usd: string;
    }>`
      select ${trunc(parent, "period_start")} as start,
        sum(api_calls_total)::int8 as api_calls_total,
        sum(api_calls_successful)::int8 as api_calls_successful,
        sum(api_calls_failed)::int8 as api_calls_failed,
        sum(api_calls_rate_limited)::int8 as api_calls_rate_limited,
        sum(quota_exceeded_count)::int8 as quota_exceeded_count,
        sum(error_count)::int8 as error_count,
        sum(latency_count)::int8 as latency_count,
        sum(latency_sum_ms)::float8 as latency_sum_ms,
        max(peak_qps)::int4 as peak_qps,
        sum(bytes_in)::int8 as bytes_in,
        sum(bytes_out)::int8 as bytes_out,
        sum(embeddings_generated)::int8 as embeddings_generated,
        sum(embedding_tokens)::int8 as embedding_tokens,
        sum(searches)::int8 as searches,
        sum(chat_messages)::int8 as chat_messages,
        sum(chat_input_tokens)::int8 as chat_input_tokens,
        sum(chat_output_tokens)::int8 as chat_output_tokens,
        sum(total_tokens)::int8 as total_tokens,
        sum(documents_ingested)::int8 as documents_ingested,
        sum(documents_failed)::int8 as documents_failed,
        sum(cost_usd)::text as cost_usd,
        sum(cost_platform_usd)::text as cost_platform_usd,
        sum(cost_tenant_usd)::text as cost_tenant_usd
      from usage_rollups
      where tenant_id = ${tenantId} and period = ${child}
        and period_start >= ${from} and period_start < ${to}
      group by 1`.execute(kysely(q));
    return r.rows;
  },

  /** The children's sketches and gauges, oldest first (merged and carried forward in code). */
  async childDetails(
    q: Queryable,
    tenantId: string,
    child: Period,
    from: Date,
    to: Date,
  ): Promise<
    Array<Pick<RollupRow, "period_start" | "latency_sketch" | "documents_stored" | "storage_bytes">>
  > {
    return kysely(q)
      .selectFrom("usage_rollups")
      .select(["period_start", "latency_sketch", "documents_stored", "storage_bytes"])
      .where("tenant_id", "=", tenantId)
      .where("period", "=", child)
      .where("period_start", ">=", from)
      .where("period_start", "<", to)
      .orderBy("period_start")
      .execute();
  },

  /**
   * Writes whole rows. A row identical to the stored one is left alone (computed_at kept), so
   * recomputing an unchanged window writes nothing and reads back the same rows.
   */
  async upsert(q: Queryable, rows: RollupRow[]): Promise<number> {
    if (rows.length === 0) return 0;
    const excluded = VALUE_COLUMNS.map((c) => `excluded.${c}`).join(", ");
    const stored = VALUE_COLUMNS.map((c) => `usage_rollups.${c}`).join(", ");
    let written = 0;
    // Bounded statements: a month of hours is 744 rows × 36 parameters.
    for (let i = 0; i < rows.length; i += 500) {
      const r = await kysely(q)
        .insertInto("usage_rollups")
        .values(rows.slice(i, i + 500))
        .onConflict((oc) =>
          oc
            .columns([...KEY])
            .doUpdateSet({
              ...Object.fromEntries(VALUE_COLUMNS.map((c) => [c, sql.raw(`excluded.${c}`)])),
              computed_at: sql`now()`,
            })
            .where(sql<boolean>`${sql.raw(`(${stored}) is distinct from (${excluded})`)}`),
        )
        .executeTakeFirst();
      written += Number(r.numInsertedOrUpdatedRows ?? 0);
    }
    return written;
  },

  /** Serialises recomputations of one tenant's roll-ups (until the transaction ends). */
  async lockTenant(q: Queryable, tenantId: string): Promise<void> {
    await sql`select pg_advisory_xact_lock(hashtextextended(${`usage-rollups:${tenantId}`}, 0))`.execute(
      kysely(q),
    );
  },

  /**
   * The database's clock (what `recorded_at` defaults to), as text: a JavaScript Date keeps
   * milliseconds and would cut the microseconds off, so a row recorded in the same millisecond
   * just before would fall after the watermark and wait for the next pass.
   */
  async now(q: Queryable): Promise<string> {
    const r = await sql<{ now: string }>`select now()::text as now`.execute(kysely(q));
    return (r.rows[0] as { now: string }).now;
  },

  async watermark(q: Queryable, name: string): Promise<Date | null> {
    const r = await kysely(q)
      .selectFrom("usage_rollup_watermarks")
      .select("recorded_to")
      .where("name", "=", name)
      .executeTakeFirst();
    return r?.recorded_to ?? null;
  },

  async setWatermark(q: Queryable, name: string, to: string): Promise<void> {
    await kysely(q)
      .insertInto("usage_rollup_watermarks")
      .values({ name, recorded_to: to })
      .onConflict((oc) =>
        oc.column("name").doUpdateSet({ recorded_to: to, updated_at: sql`now()` }),
      )
      .execute();
  },

  /**
   * The (tenant, hour) windows that received raw rows recorded in `(after, upTo]`: where the
   * roll-ups may be stale, late-flushed calls included (they carry an old `occurred_at` and a
   * new `recorded_at`).
   */
  async touchedHours(
    q: Queryable,
    after: Date | null,
    upTo: string,
  ): Promise<Array<{ tenant_id: string; hour: Date }>> {
    const since = after ?? new Date(0);
    const r = await sql<{ tenant_id: string; hour: Date }>`
      select tenant_id, ${trunc("hour", "occurred_at")} as hour from usage_events
        where recorded_at > ${since} and recorded_at <= ${upTo}::timestamptz
      union
      select tenant_id, ${trunc("hour", "occurred_at")} as hour from api_calls
        where recorded_at > ${since} and recorded_at <= ${upTo}::timestamptz
      order by 1, 2`.execute(kysely(q));
    return r.rows;
  },
};
