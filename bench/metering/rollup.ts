/**
 * Roll-up of 1 000 000 raw rows on PostgreSQL (target ≤ 10 s): api_calls and usage_events made
 * with generate_series in SQL over 30 days for several tenants, then every tenant's hours,
 * days and months recomputed (rollups.ts `recompute`, the job's code path), timed; then the
 * same again (idempotent: nothing written), an incremental job pass after late rows, and the
 * two ways of getting hourly percentiles compared on the same data:
 *   - sketch buckets grouped in SQL (what the roll-ups do: a few hundred rows per hour cross
 *     the wire, DDSketch built in JS, mergeable for days and months);
 *   - exact `percentile_disc` per hour in SQL (exact, but a day's p95 cannot be merged from
 *     hours: it would need the raw rows again).
 *
 *   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx bench/metering/rollup.ts \
 *     -- --rows=1000000 --tenants=10 --days=30
 *
 * Runs alone, or from the bench/metering.ts driver through `run()`. A schema of its own,
 * dropped after.
 */
import { fileURLToPath } from "node:url";
import pino from "pino";
import { createRollups } from "../../src/modules/usage/index.js";
import { LN_GAMMA, sketchFromBuckets } from "../../src/modules/usage/sketch.js";
import { systemClock } from "../../src/platform/clock.js";
import { BENCH_DATABASE_URL, insertTenant, openPostgres } from "../lib/backends.js";
import { intOption, mapLimit, printFooter, printHeader, table, timed } from "../lib/report.js";

const DAY = 86_400_000;

export async function run(): Promise<Record<string, unknown>> {
  const rows = intOption("rows", 1_000_000);
  const tenantCount = intOption("tenants", 10);
  const days = intOption("days", 30);
  if (!BENCH_DATABASE_URL) {
    return { skipped: "set TEST_DATABASE_URL (PostgreSQL) to run the roll-up benchmark" };
  }
  const bench = await openPostgres(BENCH_DATABASE_URL, 4);
  const { db } = bench;
  try {
    const tenants: string[] = [];
    for (let i = 0; i < tenantCount; i++) tenants.push(await insertTenant(db, `rollup-${i}`));
    const end = new Date(Date.UTC(2027, 0, 1));
    const start = new Date(end.getTime() - days * DAY);
    const calls = Math.round(rows * 0.6);
    const events = rows - calls;
    const spanSeconds = (days * DAY) / 1000;
    // Rows spread evenly over the window and the tenants; latencies skewed (cubed uniform).
    const generate = await timed(async () => {
      await db.query(
        `insert into api_calls (id, tenant_id, occurred_at, request_id, method, route, route_group,
           status, error_code, latency_ms, bytes_in, bytes_out, actor_type, recorded_at)
         select gen_random_uuid(), ($1::uuid[])[1 + (g % $2)],
           $3::timestamptz + make_interval(secs => ((g - 1)::float8 * $4 / $5)),
           'r' || g, 'GET', '/api/documents', 'management',
           case when g % 50 = 0 then 500 when g % 20 = 0 then 429 when g % 10 = 0 then 404 else 200 end,
           case when g % 50 = 0 then 'internal' when g % 20 = 0 then 'rate_limit.exceeded'
             when g % 10 = 0 then 'not_found' end,
           round((power(random(), 3) * 2000)::numeric, 3)::float8, 200, 4000, 'api_key',
           now() - interval '1 hour'
         from generate_series(1, $5) g`,
        [tenants, tenantCount, start, spanSeconds, calls],
      );
      await db.query(
        `insert into usage_events (id, tenant_id, metric, quantity, items, unit, provider, model,
           payer, cost_usd, subject_type, subject_id, actor_type, occurred_at, recorded_at)
         select gen_random_uuid(), ($1::uuid[])[1 + (g % $2)],
           case when g % 3 = 0 then 'search_queries' else 'embedding_tokens' end,
           case when g % 3 = 0 then 1 else 100 + g % 900 end,
           case when g % 3 = 0 then 1 else 1 + g % 20 end,
           case when g % 3 = 0 then 'call' else 'input_token' end,
           'openai', 'text-embedding-3-small',
           case when g % 4 = 0 then 'tenant' else 'platform' end,
           case when g % 3 = 0 then 0 else (100 + g % 900) * 0.00000002 end,
           'bench', g::text, 'system',
           $3::timestamptz + make_interval(secs => ((g - 1)::float8 * $4 / $5)),
           now() - interval '1 hour'
         from generate_series(1, $5) g`,
        [tenants, tenantCount, start, spanSeconds, events],
      );
      await db.query("analyze api_calls");
      await db.query("analyze usage_events");
    });

    const rollups = createRollups({
      db,
      clock: systemClock,
      documents: { versionCountsByHour: async () => [] },
      logger: pino({ level: "silent" }),
      // The generated month is in the past: recompute it from the raw rows, not keep old figures.
      apiCallsRetentionDays: 100_000,
      usageEventsRetentionDays: 100_000,
      concurrency: intOption("concurrency", 4),
    });
    // As the job does on PostgreSQL: tenants side by side, `concurrency` at a time.
    const concurrency = intOption("concurrency", 4);
    const recomputeAll = async () => {
      const written = await mapLimit(tenants, concurrency, (t) => rollups.recompute(t, start, end));
      return written.reduce((s, n) => s + n, 0);
    };
    const first = await timed(recomputeAll);
    const second = await timed(recomputeAll);
    const [check] = await db.query<{ calls: number; events: number }>(
      `select (select sum(api_calls_total) from usage_rollups where period = 'month')::int8 as calls,
         (select sum(embedding_tokens) from usage_rollups where period = 'month')::int8 as events`,
    );
    const [raw] = await db.query<{ tokens: number }>(
      "select sum(quantity)::int8 as tokens from usage_events where metric = 'embedding_tokens'",
    );

    // The job: the first pass folds everything in (no watermark yet); then 1 000 calls of the
    // past month flushed late, which the next pass finds by recorded_at (the bulk rows were
    // recorded an hour ago, before the pass's overlap).
    const firstPass = await timed(() => rollups.run());
    await db.query(
      `insert into api_calls (id, tenant_id, occurred_at, request_id, method, route, route_group,
         status, latency_ms, bytes_in, bytes_out, actor_type, recorded_at)
       select gen_random_uuid(), ($1::uuid[])[1 + (g % $2)],
         $3::timestamptz + make_interval(secs => g * 7), 'late' || g, 'GET', '/api/documents',
         'management', 200, 12.5, 0, 0, 'api_key', now()
       from generate_series(1, 1000) g`,
      [tenants, tenantCount, start],
    );
    const latePass = await timed(() => rollups.run());

    // Percentiles, one tenant: sketch buckets in SQL vs exact percentile_disc per hour.
    const tenant = tenants[0] as string;
    const buckets = await timed(async () => {
      const r = await db.query<{ hour: Date; bucket: number; n: number }>(
        `select date_trunc('hour', occurred_at, 'UTC') as hour,
           ceil(ln(greatest(latency_ms, 1e-6)) / $2::float8)::int4 as bucket, count(*)::int8 as n
         from api_calls where tenant_id = $1 group by 1, 2`,
        [tenant, LN_GAMMA],
      );
      const perHour = new Map<number, Array<{ bucket: number; n: number }>>();
      for (const b of r) {
        const list = perHour.get(b.hour.getTime()) ?? [];
        list.push(b);
        perHour.set(b.hour.getTime(), list);
      }
      return [...perHour.values()].map((l) => sketchFromBuckets(l).getValueAtQuantile(0.95));
    });
    const exact = await timed(() =>
      db.query<{ p95: number }>(
        `select percentile_disc(0.95) within group (order by latency_ms) as p95
         from api_calls where tenant_id = $1 group by date_trunc('hour', occurred_at, 'UTC')`,
        [tenant],
      ),
    );
    const rowsPerSecond = Math.round(rows / (first.ms / 1000));
    const result = {
      rows,
      tenants: tenantCount,
      days,
      generateMs: Math.round(generate.ms),
      rollupMs: Math.round(first.ms),
      rollupRowsWritten: first.value,
      rawRowsPerSecond: rowsPerSecond,
      targetMs: 10_000,
      withinTarget: first.ms <= 10_000,
      recomputeAgainMs: Math.round(second.ms),
      recomputeAgainRowsWritten: second.value,
      monthCallsEqualRaw: check?.calls === calls,
      monthTokensEqualRaw: check?.events === raw?.tokens,
      jobFirstPassMs: Math.round(firstPass.ms),
      jobLatePassMs: Math.round(latePass.ms),
      jobLatePassWindows: latePass.value.windows,
      percentileSketchBucketsMs: Math.round(buckets.ms),
      percentileExactDiscMs: Math.round(exact.ms),
      hoursPerTenant: buckets.value.length,
    };
    return result;
  } finally {
    await bench.dispose();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  printHeader("usage roll-up", {
    rows: intOption("rows", 1_000_000),
    tenants: intOption("tenants", 10),
    days: intOption("days", 30),
  });
  const r = await run();
  table(
    ["measure", "value"],
    Object.entries(r).map(([k, v]) => [k, String(v)]),
  );
  printFooter();
}
