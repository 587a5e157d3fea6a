/**
 * Added latency of a quota reserve + settle, on PGlite and on PostgreSQL (when
 * TEST_DATABASE_URL is set): the same business transaction (one row written, as a search or an
 * activation writes its records) timed bare, and with a reservation before it and the settle
 * inside it, as the search and ingestion paths do.
 *
 *   npx tsx bench/metering/quota.ts -- --ops=2000 --concurrency=8
 *
 * Phases per backend, each on a fresh tenant: `sequential` (one operation at a time: the
 * latency a request sees on an idle server) and `concurrent` (`concurrency` callers at once on
 * one tenant, i.e. on one counter row: the worst case, every reserve queues on the row's lock).
 * Baseline and metered runs alternate in blocks of 100 so that drift hits both alike.
 * `bench/metering.ts` imports `run()`; run alone, this file prints its tables.
 */
import { randomUUID } from "node:crypto";
import pino from "pino";
import { createAuditLog } from "../../src/modules/audit/index.js";
import { createEventsLog } from "../../src/modules/events/index.js";
import { createQuotasService } from "../../src/modules/quotas/index.js";
import { createTenantsService } from "../../src/modules/tenants/index.js";
import { systemClock } from "../../src/platform/clock.js";
import type { Db, Queryable } from "../../src/platform/db/index.js";
import {
  BENCH_DATABASE_URL,
  type BenchDb,
  benchContext,
  insertTenant,
  openPglite,
  openPostgres,
} from "../lib/backends.js";
import {
  intOption,
  ms,
  printFooter,
  printHeader,
  type Summary,
  summarize,
  table,
} from "../lib/report.js";

const BLOCK = 100;

/** The business write both variants do: one telemetry-shaped row. */
async function businessWrite(tx: Queryable, tenantId: string): Promise<void> {
  await tx.query(
    `insert into api_calls (id, tenant_id, occurred_at, request_id, method, route, route_group,
       status, latency_ms, bytes_in, bytes_out, actor_type)
     values ($1, $2, now(), 'bench', 'POST', '/api/search', 'search', 200, 1, 10, 10, 'api_key')`,
    [randomUUID(), tenantId],
  );
}

interface PhaseResult {
  baseline: Summary;
  metered: Summary;
  addedP50Ms: number;
  addedP99Ms: number;
}

async function measure(db: Db, ops: number, concurrency: number): Promise<PhaseResult> {
  const tenantId = await insertTenant(db, "bench-quota");
  const ctx = benchContext(tenantId);
  // Nothing measured here changes a tenant's profile, configuration or status: no audit rows.
  const audit = { record: async () => ({ id: "", seq: 0 }), recordMany: async () => [] };
  const tenants = createTenantsService({
    db,
    masterKey: Buffer.alloc(32, 7),
    clock: systemClock,
    audit,
  });
  const quotas = createQuotasService({
    db,
    tenants,
    clock: systemClock,
    logger: pino({ level: "silent" }),
    levels: async () => ({ documents: 0, storageBytes: 0 }),
    audit: createAuditLog({ db, clock: systemClock }),
    events: createEventsLog({
      db,
      clock: systemClock,
      logger: pino({ level: "silent" }),
      oversize: "refuse",
      messageSentSampleRate: 1,
    }),
  });

  const bare = async () => {
    await db.transaction((tx) => businessWrite(tx, tenantId));
  };
  const metered = async () => {
    const r = await quotas.reserve(ctx, "searches", 1);
    await db.transaction(async (tx) => {
      await businessWrite(tx, tenantId);
      await quotas.settle(ctx, r, 1, { tx });
    });
  };

  const time = async (fn: () => Promise<void>, n: number, into: number[]) => {
    let next = 0;
    const worker = async () => {
      while (next < n) {
        next += 1;
        const t0 = performance.now();
        await fn();
        into.push(performance.now() - t0);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  };

  // Warm-up: connections, plans, the period's counter row.
  const discard: number[] = [];
  await time(bare, 50, discard);
  await time(metered, 50, discard);

  const base: number[] = [];
  const quota: number[] = [];
  for (let done = 0; done < ops; done += BLOCK) {
    const n = Math.min(BLOCK, ops - done);
    await time(bare, n, base);
    await time(metered, n, quota);
  }
  const b = summarize(base);
  const m = summarize(quota);
  const status = await quotas.status(tenantId);
  if (status.searches.used !== ops + 50 || status.searches.reserved !== 0)
    throw new Error(`counter drift: ${JSON.stringify(status.searches)}`);
  return { baseline: b, metered: m, addedP50Ms: m.p50 - b.p50, addedP99Ms: m.p99 - b.p99 };
}

async function backendsToRun(): Promise<Array<() => Promise<BenchDb>>> {
  const list: Array<() => Promise<BenchDb>> = [openPglite];
  if (BENCH_DATABASE_URL) list.push(() => openPostgres(BENCH_DATABASE_URL as string));
  return list;
}

/** The section's figures: per backend, per phase, baseline and metered latency (ms). */
export async function run(
  opts: { ops?: number; concurrency?: number } = {},
): Promise<Record<string, unknown>> {
  const ops = opts.ops ?? 2000;
  const concurrency = opts.concurrency ?? 8;
  const out: Record<string, unknown> = { ops, concurrency };
  for (const open of await backendsToRun()) {
    const store = await open();
    try {
      out[store.label] = {
        sequential: await measure(store.db, ops, 1),
        // PGlite has one connection: concurrent callers queue on it, as in embedded mode.
        concurrent: await measure(store.db, ops, concurrency),
      };
    } finally {
      await store.dispose();
    }
  }
  return out;
}

function print(result: Record<string, unknown>): void {
  const rows: Array<Array<string | number>> = [];
  for (const [label, value] of Object.entries(result)) {
    if (typeof value !== "object" || value === null) continue;
    for (const [phase, r] of Object.entries(value as Record<string, PhaseResult>)) {
      rows.push([
        label,
        phase,
        ms(r.baseline.p50),
        ms(r.baseline.p99),
        ms(r.metered.p50),
        ms(r.metered.p99),
        ms(r.addedP50Ms),
        ms(r.addedP99Ms),
      ]);
    }
  }
  table(
    [
      "store",
      "phase",
      "bare p50 ms",
      "bare p99 ms",
      "with quota p50 ms",
      "with quota p99 ms",
      "added p50 ms",
      "added p99 ms",
    ],
    rows,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const options = { ops: intOption("ops", 2000), concurrency: intOption("concurrency", 8) };
  printHeader("Quota reserve + settle: added latency", options);
  const result = await run(options);
  print(result);
  printFooter();
}
