/**
 * The events feed's cost, on PGlite and on PostgreSQL (when TEST_DATABASE_URL is set):
 *
 * 1. Events/s written, one transaction per write, for `seconds`: `single` (one `events.log`
 *    per transaction) and `batched` (one `events.logMany` of `batch` events per transaction,
 *    one INSERT), by 1 and by 4 concurrent writers.
 * 2. The p50 overhead an accepted submission pays for its events (ingest_started and
 *    document_created/updated, one INSERT in its transaction): the ingestion service's
 *    `submit` of a new text document, built with the real events log and with one that writes
 *    nothing, in alternating blocks of 50 in the same run, over the same database. Also the
 *    bare cost: a one-insert transaction with and without one `events.log`.
 *    Service calls in process, not HTTP; no workers (the jobs stay queued).
 *
 *   npm run bench:events -- [--ops=400] [--seconds=3] [--batch=50]
 */
import { randomBytes, randomUUID } from "node:crypto";
import pino from "pino";
import { loadConfig } from "../src/config.js";
import { type AppContext, createContext } from "../src/context.js";
import type { EventInput, EventsLog } from "../src/modules/events/index.js";
import { createIngestionService } from "../src/modules/ingestion/index.js";
import type { Queryable } from "../src/platform/db/index.js";
import {
  BENCH_DATABASE_URL,
  type BenchDb,
  openPglite,
  openPostgres,
  tempDir,
} from "./lib/backends.js";
import { compareAlternating, newEnterpriseTenant } from "./lib/compare.js";
import {
  intOption,
  ms,
  printFooter,
  printHeader,
  type Summary,
  summarize,
  table,
} from "./lib/report.js";

/** An events log that writes nothing: the baseline's. */
const silentEvents: EventsLog = {
  log: async () => ({ id: null, written: false }),
  logMany: async (_ctx, events) => events.map(() => ({ id: null, written: false })),
  logOutside: async () => undefined,
  drain: async () => undefined,
};

interface Overhead {
  operation: string;
  baseline: Summary;
  withEvents: Summary;
  addedP50Ms: number;
}

const overhead = (operation: string, r: { a: Summary; b: Summary }): Overhead => ({
  operation,
  baseline: r.a,
  withEvents: r.b,
  addedP50Ms: r.b.p50 - r.a.p50,
});

async function overheads(app: AppContext, ops: number): Promise<Overhead[]> {
  const ctx = await newEnterpriseTenant(app);
  const deps = {
    db: app.db,
    blobs: app.blobs,
    queue: app.queue,
    tenants: app.tenants,
    quotas: app.quotas,
    audit: app.audit,
    allowPrivateUrls: false,
  };
  const plain = createIngestionService({ ...deps, events: silentEvents });
  const doc = (i: number, tag: string) =>
    [
      { title: `Doc ${tag} ${i}`, docType: "txt" },
      {
        kind: "bytes" as const,
        bytes: Buffer.from(`${tag} ${i}: we open at nine. `.repeat(20)),
        format: "txt" as const,
      },
    ] as const;
  const out: Overhead[] = [];
  const submit = await compareAlternating(
    ops,
    (i) => plain.submit(ctx, ...doc(i, "plain")),
    (i) => app.ingestion.submit(ctx, ...doc(i, "events")),
  );
  out.push(overhead("submit (new text document)", submit));

  const write = (tx: Queryable) =>
    tx.query(
      `insert into api_calls (id, tenant_id, occurred_at, request_id, method, route, route_group,
         status, latency_ms, bytes_in, bytes_out, actor_type)
       values ($1, $2, now(), 'bench', 'PUT', '/api/bench', 'bench', 200, 1, 10, 10, 'api_key')`,
      [randomUUID(), ctx.tenantId],
    );
  const bare = await compareAlternating(
    ops,
    () => app.db.transaction(write),
    () =>
      app.db.transaction(async (tx) => {
        await write(tx);
        await app.events.log(ctx, "document_deleted", { documentId: randomUUID() }, { tx });
      }),
  );
  out.push(overhead("bare one-insert transaction", bare));
  return out;
}

interface Throughput {
  mode: "single" | "batched";
  writers: number;
  events: number;
  eventsPerSecond: number;
  p50Ms: number;
}

async function throughput(
  app: AppContext,
  mode: "single" | "batched",
  writers: number,
  seconds: number,
  batch: number,
): Promise<Throughput> {
  const ctx = await newEnterpriseTenant(app);
  const one = (): EventInput => ({
    name: "ingest_completed",
    data: {
      sourceType: "url",
      url: "https://example.test/menu",
      docs: 1,
      chunks: 12,
      documentId: randomUUID(),
      version: 1,
      tokens: 4096,
      durationMs: 850,
    },
  });
  const perTx = mode === "single" ? 1 : batch;
  const samples: number[] = [];
  const until = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (performance.now() < until) {
        const s = performance.now();
        const events = Array.from({ length: perTx }, one);
        await app.db.transaction((tx) => app.events.logMany(ctx, events, { tx }));
        samples.push(performance.now() - s);
      }
    }),
  );
  const elapsed = performance.now() - t0;
  const [row] = await app.db.query<{ n: number }>(
    "select count(*)::int as n from events where tenant_id = $1",
    [ctx.tenantId],
  );
  const written = samples.length * perTx;
  if (row?.n !== written) throw new Error(`wrote ${written} events, found ${row?.n}`);
  return {
    mode,
    writers,
    events: written,
    eventsPerSecond: (written / elapsed) * 1000,
    p50Ms: summarize(samples).p50,
  };
}

async function run(opts: { ops: number; seconds: number; batch: number }) {
  const stores: Array<() => Promise<BenchDb>> = [openPglite];
  if (BENCH_DATABASE_URL) stores.push(() => openPostgres(BENCH_DATABASE_URL as string, 20));
  const out: Record<string, { overhead: Overhead[]; throughput: Throughput[] }> = {};
  for (const open of stores) {
    const store = await open();
    const data = tempDir("events");
    const config = loadConfig({
      DATA_DIR: data.dir,
      LOG_LEVEL: "silent",
      JWT_SECRET: randomBytes(32).toString("hex"),
      MASTER_KEY: randomBytes(32).toString("hex"),
      RATE_LIMITS_ENABLED: "false",
    });
    const app = await createContext(config, {
      db: store.db,
      logger: pino({ level: "silent" }),
      migrations: "skip",
    });
    try {
      const overhead = await overheads(app, opts.ops);
      const thr: Throughput[] = [];
      for (const writers of [1, 4]) {
        thr.push(await throughput(app, "single", writers, opts.seconds, opts.batch));
        thr.push(await throughput(app, "batched", writers, opts.seconds, opts.batch));
      }
      out[store.label] = { overhead, throughput: thr };
    } finally {
      await app.close();
      data.remove();
      await store.dispose().catch(() => undefined);
    }
  }
  return out;
}

const options = {
  ops: intOption("ops", 400),
  seconds: intOption("seconds", 3),
  batch: intOption("batch", 50),
};
printHeader("Events feed: events/s and the overhead added to a submit", options);
const result = await run(options);
const over: Array<Array<string | number>> = [];
const thr: Array<Array<string | number>> = [];
for (const [label, r] of Object.entries(result)) {
  for (const o of r.overhead) {
    over.push([
      label,
      o.operation,
      ms(o.baseline.p50),
      ms(o.baseline.p99),
      ms(o.withEvents.p50),
      ms(o.withEvents.p99),
      ms(o.addedP50Ms),
    ]);
  }
  for (const t of r.throughput)
    thr.push([label, t.mode, t.writers, t.events, Math.round(t.eventsPerSecond), ms(t.p50Ms)]);
}
table(
  ["store", "operation", "no events p50", "no events p99", "events p50", "events p99", "added p50"],
  over,
);
table(["store", "mode", "writers", "events", "events/s", "p50 ms per transaction"], thr);
console.log(`\n## results\n${JSON.stringify(result, null, 2)}`);
printFooter();
