/**
 * Usage roll-ups: hourly, daily and monthly aggregates per tenant (UTC), the figures reports,
 * dashboards and exports read (seed 000's `tenant_usage_metrics`).
 *
 * A row is recomputed whole from raw data (`api_calls`, `usage_events`, the ingestion
 * module's version counts) for an hour, and from the hour rows for a day or a month, so a
 * recomputation gives the same row; the upsert changes nothing when nothing differs.
 * Percentiles are never averaged: each hour keeps a DDSketch of its latencies
 * (`latency_sketch`, protobuf), and a day or a month merges its hours' sketches. The average
 * latency is `latency_sum_ms / latency_count`, exact at every period.
 *
 * `api_calls.recorded_at` (new here) is when a call's row was written: the telemetry buffer
 * may flush a call long after it happened (after a restart), so the roll-up job finds the
 * windows to recompute by `recorded_at`, not `occurred_at`, for both raw tables.
 *
 * No foreign key to tenants, as on `api_calls`: calls of a tenant removed meanwhile still roll
 * up, and roll-ups outlive the raw rows retention removes.
 *
 * `usage_rollup_watermarks`: how far (in `recorded_at`) the roll-up job has folded raw rows in.
 */
export const sql = `
alter table api_calls add column recorded_at timestamptz not null default now();
create index api_calls_recorded_idx on api_calls (recorded_at);
create index usage_events_recorded_idx on usage_events (recorded_at);

create table usage_rollups (
  tenant_id uuid not null,
  period text not null check (period in ('hour', 'day', 'month')),
  period_start timestamptz not null,
  period_end timestamptz not null,
  api_calls_total bigint not null default 0,
  api_calls_successful bigint not null default 0,
  api_calls_failed bigint not null default 0,
  api_calls_rate_limited bigint not null default 0,
  quota_exceeded_count bigint not null default 0,
  error_count bigint not null default 0,
  error_rate double precision not null default 0,
  latency_count bigint not null default 0,
  latency_sum_ms double precision not null default 0,
  latency_avg_ms double precision not null default 0,
  latency_p95_ms double precision,
  latency_p99_ms double precision,
  latency_sketch bytea,
  peak_qps integer not null default 0,
  bytes_in bigint not null default 0,
  bytes_out bigint not null default 0,
  embeddings_generated bigint not null default 0,
  embedding_tokens bigint not null default 0,
  searches bigint not null default 0,
  chat_messages bigint not null default 0,
  chat_input_tokens bigint not null default 0,
  chat_output_tokens bigint not null default 0,
  total_tokens bigint not null default 0,
  documents_ingested bigint not null default 0,
  documents_failed bigint not null default 0,
  documents_stored bigint,
  storage_bytes bigint,
  cost_usd numeric(20, 10) not null default 0,
  cost_platform_usd numeric(20, 10) not null default 0,
  cost_tenant_usd numeric(20, 10) not null default 0,
  quota_limit bigint,
  quota_remaining bigint,
  computed_at timestamptz not null default now(),
  primary key (tenant_id, period, period_start)
);
create index usage_rollups_period_idx on usage_rollups (period, period_start);

create table usage_rollup_watermarks (
  name text primary key,
  recorded_to timestamptz not null,
  updated_at timestamptz not null default now()
);
`;
