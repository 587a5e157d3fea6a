/**
 * Section `writer`: API-call events per second the telemetry writer (modules/usage/telemetry.ts)
 * sustains into PostgreSQL (TEST_DATABASE_URL, a schema of its own) and into PGlite (on disk,
 * as embedded mode keeps it), with 0 lost: rows are counted at the end and must equal the
 * calls recorded, and the drop counter must read 0.
 *
 * A producer records calls as fast as the writer takes them (yielding to the event loop every
 * `chunk` calls and pausing while the buffer is near its bound, so that the figure is the
 * writer's, not a drop rate); the clock runs from the first record to the end of the last
 * flush. Both insert forms are measured: `unnest` (one statement of 14 array parameters per
 * batch, the default) and `values` (a multi-row VALUES list, 14 parameters per row).
 *
 *   npm run bench:metering -- writer --events=200000 --pglite-events=50000 --batches=500,2000,5000
 */
import { randomUUID } from "node:crypto";
import pino from "pino";
import { Registry } from "prom-client";
import { type ApiCall, createTelemetry, type InsertMethod } from "../../src/modules/usage/index.js";
import { BENCH_DATABASE_URL, type BenchDb, openPglite, openPostgres } from "../lib/backends.js";
import { intOption, listOption, table } from "../lib/report.js";

const ROUTES = ["/api/documents", "/api/documents/:id", "/api/search", "/api/ingest/document"];

function makeCall(tenants: string[], i: number): ApiCall {
  return {
    tenantId: tenants[i % tenants.length] as string,
    occurredAt: new Date(1_767_225_600_000 + i),
    requestId: randomUUID(),
    method: i % 3 === 0 ? "POST" : "GET",
    route: ROUTES[i % ROUTES.length] as string,
    routeGroup: i % 3 === 0 ? "ingest" : "management",
    status: i % 50 === 0 ? 429 : 200,
    errorCode: i % 50 === 0 ? "rate_limit.exceeded" : null,
    latencyMs: (i % 97) + 0.25,
    bytesIn: i % 3 === 0 ? 512 : 0,
    bytesOut: 1024 + (i % 256),
    actorType: "api_key",
    actorId: tenants[(i + 1) % tenants.length] as string,
  };
}

interface Figure {
  store: string;
  method: InsertMethod;
  writers: number;
  batch: number;
  events: number;
  rows: number;
  dropped: number;
  seconds: number;
  perSecond: number;
}

async function measure(
  bench: BenchDb,
  method: InsertMethod,
  batch: number,
  events: number,
  writers = 1,
): Promise<Figure> {
  await bench.db.exec("truncate api_calls");
  const registry = new Registry();
  const maxBuffered = Math.max(batch * 20, 50_000);
  const telemetry = createTelemetry({
    db: bench.db,
    logger: pino({ level: "warn" }),
    registry,
    batchSize: batch,
    flushIntervalMs: 50,
    maxBuffered,
    retryBaseMs: 50,
    retryMaxMs: 1000,
    insertMethod: method,
    writers,
  });
  const tenants = Array.from({ length: 50 }, () => randomUUID());
  const calls = Array.from({ length: events }, (_, i) => makeCall(tenants, i));
  const chunk = Math.min(batch, 1000);
  const t0 = performance.now();
  for (let i = 0; i < events; i += chunk) {
    while (telemetry.held() + chunk > maxBuffered) await new Promise((r) => setTimeout(r, 1));
    for (let j = i; j < Math.min(events, i + chunk); j++) telemetry.record(calls[j] as ApiCall);
    await new Promise((r) => setImmediate(r));
  }
  await telemetry.flush();
  const seconds = (performance.now() - t0) / 1000;
  await telemetry.close();
  const [row] = await bench.db.query<{ n: number }>("select count(*)::int as n from api_calls");
  const dropped =
    (await registry.getSingleMetric("tenantrag_telemetry_dropped_total")?.get())?.values.reduce(
      (s, v) => s + v.value,
      0,
    ) ?? 0;
  return {
    store: bench.label,
    method,
    writers,
    batch,
    events,
    rows: row?.n ?? 0,
    dropped,
    seconds: Number(seconds.toFixed(3)),
    perSecond: Math.round(events / seconds),
  };
}

export async function run(): Promise<Record<string, unknown>> {
  const events = intOption("events", 200_000);
  const pgliteEvents = intOption("pglite-events", 50_000);
  const batches = listOption("batches", [500, 2000, 5000]);
  // Batches in flight at once, on PostgreSQL (PGlite has one connection: 1 there).
  const writerCounts = listOption("writers", [1, 2]);
  const figures: Figure[] = [];
  const url = BENCH_DATABASE_URL;
  const stores: Array<{ open: () => Promise<BenchDb>; events: number; writers: number[] }> = [];
  if (url) stores.push({ open: () => openPostgres(url), events, writers: writerCounts });
  else console.log("PostgreSQL skipped: set TEST_DATABASE_URL");
  stores.push({ open: openPglite, events: pgliteEvents, writers: [1] });
  for (const store of stores) {
    const bench = await store.open();
    try {
      // A warm-up batch, not reported: connections, plans, the WAL file.
      await measure(bench, "unnest", 1000, 5000);
      for (const method of ["unnest", "values"] as const) {
        for (const writers of store.writers) {
          for (const batch of batches) {
            const f = await measure(bench, method, batch, store.events, writers);
            figures.push(f);
            if (f.rows !== f.events || f.dropped !== 0)
              throw new Error(`lost events: ${JSON.stringify(f)}`);
          }
        }
      }
    } finally {
      await bench.dispose();
    }
  }
  table(
    ["store", "insert", "writers", "batch", "events", "rows", "dropped", "seconds", "events/s"],
    figures.map((f) => [
      f.store,
      f.method,
      f.writers,
      f.batch,
      f.events,
      f.rows,
      f.dropped,
      f.seconds,
      f.perSecond,
    ]),
  );
  const best = (store: string) =>
    Math.max(0, ...figures.filter((f) => f.store === store).map((f) => f.perSecond));
  return {
    figures,
    bestPostgresPerSecond: best("PostgreSQL"),
    bestPglitePerSecond: best("PGlite"),
    lost: figures.reduce((s, f) => s + (f.events - f.rows), 0),
  };
}
