/**
 * The job queue with a no-op handler: enqueue → handler start latency, and jobs/s, for the
 * embedded queue on PGlite and on PostgreSQL against BullMQ (PostgreSQL mirror + Redis) on the
 * same machine, at worker concurrency 1 and 4. Producers and workers share this process.
 *
 *   npm run bench:queue -- --latency=200 --jobs=2000 --producers=8
 *
 * Phases, each on a fresh queue instance and a fresh tenant:
 * - idle latency: one job at a time (the next is enqueued 10 ms after the previous started);
 * - stream: `jobs` enqueued one by one by `producers` concurrent callers while the workers run:
 *   end-to-end jobs/s (first enqueue → last completion recorded) and latency under load;
 * - drain: `jobs` enqueued beforehand with enqueueBatch, then the workers start: jobs/s.
 * Embedded on PostgreSQL also runs the idle phase with the producer on another queue instance
 * (as another process would be): its worker learns of new jobs only by polling (500 ms).
 *
 * BullMQ and embedded-on-PostgreSQL need TEST_DATABASE_URL and TEST_REDIS_URL; each adapter
 * gets a fresh schema (dropped after) and BullMQ a unique key prefix (obliterated after).
 */
import pino from "pino";
import { z } from "zod";
import type { Db } from "../src/platform/db/index.js";
import {
  createBullmqQueue,
  createEmbeddedQueue,
  type JobHandlers,
  type JobQueue,
} from "../src/platform/queue/index.js";
import {
  BENCH_DATABASE_URL,
  BENCH_REDIS_URL,
  type BenchDb,
  dropQueuePrefix,
  insertTenant,
  openPglite,
  openPostgres,
  uniqueQueuePrefix,
} from "./lib/backends.js";
import {
  intOption,
  mapLimit,
  ms,
  printFooter,
  printHeader,
  ratio,
  type Summary,
  sleep,
  summarize,
  table,
} from "./lib/report.js";

const opts = {
  latency: intOption("latency", 200),
  warmup: intOption("warmup", 10),
  jobs: intOption("jobs", 2000),
  producers: intOption("producers", 8),
  remote: intOption("remote", 40),
};
const CONCURRENCIES = [1, 4];

const registry = {
  "bench.noop": z.object({ tenantId: z.uuid(), n: z.number().int().min(0) }),
};
type BenchQueue = JobQueue<typeof registry>;

const silent = pino({ level: "silent" });

interface Adapter {
  name: string;
  open(): Promise<{ db: Db; make(): BenchQueue; dispose(): Promise<void> }>;
}

function embedded(name: string, open: () => Promise<BenchDb>): Adapter {
  return {
    name,
    async open() {
      const store = await open();
      return {
        db: store.db,
        make: () => createEmbeddedQueue({ db: store.db, registry, logger: silent }),
        dispose: () => store.dispose(),
      };
    },
  };
}

const bullmq: Adapter = {
  name: "BullMQ (PostgreSQL + Redis)",
  async open() {
    const store = await openPostgres(BENCH_DATABASE_URL as string);
    const redisUrl = BENCH_REDIS_URL as string;
    const prefix = uniqueQueuePrefix("queue");
    return {
      db: store.db,
      make: () => createBullmqQueue({ db: store.db, registry, logger: silent, redisUrl, prefix }),
      async dispose() {
        await store.dispose();
        await dropQueuePrefix(redisUrl, prefix);
      },
    };
  },
};

/** Handler start times by job number, and a way to wait for a given start or for all. */
function tracker(expected: number) {
  const started = new Array<number>(expected);
  const waiting = new Map<number, () => void>();
  let count = 0;
  let allStarted!: () => void;
  const all = new Promise<void>((r) => {
    allStarted = r;
  });
  const handlers: JobHandlers<typeof registry> = {
    "bench.noop": async (job) => {
      const n = job.payload.n;
      if (started[n] !== undefined) return; // a second delivery: not a new start
      started[n] = performance.now();
      waiting.get(n)?.();
      if (++count === expected) allStarted();
    },
  };
  return {
    started,
    handlers,
    all,
    waitFor(n: number): Promise<void> {
      if (started[n] !== undefined) return Promise.resolve();
      return new Promise((r) => waiting.set(n, r));
    },
  };
}

/** Waits until `expected` jobs of the tenant are recorded as completed. */
async function recorded(db: Db, tenantId: string, expected: number): Promise<number> {
  for (;;) {
    const [row] = await db.query<{ n: number; bad: number }>(
      `select count(*) filter (where status = 'completed')::int as n,
              count(*) filter (where status in ('failed', 'dead'))::int as bad
       from jobs where tenant_id = $1`,
      [tenantId],
    );
    if ((row?.bad ?? 0) > 0) throw new Error(`${row?.bad} jobs failed`);
    if ((row?.n ?? 0) >= expected) return performance.now();
    await sleep(10);
  }
}

interface Result {
  adapter: string;
  concurrency: number;
  enqueue: Summary;
  idle: Summary;
  streamRate: number;
  stream: Summary;
  drainRate: number;
  batchEnqueueRate: number;
}

async function idlePhase(
  db: Db,
  producer: BenchQueue,
  worker: BenchQueue,
  concurrency: number,
  samples: number,
  gapMs: () => number,
): Promise<{ enqueue: Summary; latency: Summary }> {
  const tenantId = await insertTenant(db);
  const total = opts.warmup + samples;
  const t = tracker(total);
  worker.work(t.handlers, { concurrency });
  const enqueueMs: number[] = [];
  const latency: number[] = [];
  for (let n = 0; n < total; n++) {
    const sent = performance.now();
    await producer.enqueue("bench.noop", { tenantId, n });
    const enqueued = performance.now();
    await t.waitFor(n);
    if (n >= opts.warmup) {
      enqueueMs.push(enqueued - sent);
      latency.push((t.started[n] as number) - sent);
    }
    // Let the worker record the outcome and go idle before the next job.
    await sleep(gapMs());
  }
  await recorded(db, tenantId, total);
  return { enqueue: summarize(enqueueMs), latency: summarize(latency) };
}

async function run(adapter: Adapter, results: Result[], remote: Summary[]) {
  console.log(`${adapter.name}…`);
  const { db, make, dispose } = await adapter.open();
  try {
    for (const concurrency of CONCURRENCIES) {
      const q1 = make();
      const idle = await idlePhase(db, q1, q1, concurrency, opts.latency, () => 10);
      await q1.close();

      // Stream: producers and workers at once.
      const q2 = make();
      const streamTenant = await insertTenant(db);
      const t2 = tracker(opts.jobs);
      const sent = new Array<number>(opts.jobs);
      q2.work(t2.handlers, { concurrency });
      const s0 = performance.now();
      await mapLimit(
        Array.from({ length: opts.jobs }, (_, n) => n),
        opts.producers,
        async (n) => {
          sent[n] = performance.now();
          await q2.enqueue("bench.noop", { tenantId: streamTenant, n });
        },
      );
      await t2.all;
      const s1 = await recorded(db, streamTenant, opts.jobs);
      await q2.close();

      // Drain: everything queued first, then the workers start.
      const q3 = make();
      const drainTenant = await insertTenant(db);
      const t3 = tracker(opts.jobs);
      const b0 = performance.now();
      for (let i = 0; i < opts.jobs; i += 500) {
        await q3.enqueueBatch(
          Array.from({ length: Math.min(500, opts.jobs - i) }, (_, k) => ({
            type: "bench.noop" as const,
            payload: { tenantId: drainTenant, n: i + k },
          })),
        );
      }
      const b1 = performance.now();
      q3.work(t3.handlers, { concurrency });
      await t3.all;
      const d1 = await recorded(db, drainTenant, opts.jobs);
      await q3.close();

      const r: Result = {
        adapter: adapter.name,
        concurrency,
        enqueue: idle.enqueue,
        idle: idle.latency,
        streamRate: opts.jobs / ((s1 - s0) / 1000),
        stream: summarize(t2.started.map((s, n) => s - (sent[n] as number))),
        drainRate: opts.jobs / ((d1 - b1) / 1000),
        batchEnqueueRate: opts.jobs / ((b1 - b0) / 1000),
      };
      results.push(r);
      console.log(
        `  concurrency ${concurrency}: idle p50 ${ms(r.idle.p50)} ms, stream ${r.streamRate.toFixed(0)} jobs/s, drain ${r.drainRate.toFixed(0)} jobs/s`,
      );
    }
    if (adapter.name.startsWith("embedded (PostgreSQL") && opts.remote > 0) {
      const producer = make();
      const worker = make();
      // A random pause, so that enqueues fall anywhere in the worker's polling period.
      const idle = await idlePhase(db, producer, worker, 1, opts.remote, () => Math.random() * 600);
      await producer.close();
      await worker.close();
      remote.push(idle.latency);
    }
  } finally {
    await dispose();
  }
}

async function main() {
  const server = BENCH_DATABASE_URL !== undefined && BENCH_REDIS_URL !== undefined;
  printHeader("tenantrag job queue benchmark", {
    ...opts,
    concurrencies: CONCURRENCIES,
    server: server ? "PostgreSQL + Redis" : "skipped (set TEST_DATABASE_URL and TEST_REDIS_URL)",
  });
  const adapters: Adapter[] = [embedded("embedded (PGlite)", openPglite)];
  if (server) {
    adapters.push(
      embedded("embedded (PostgreSQL)", () => openPostgres(BENCH_DATABASE_URL as string)),
      bullmq,
    );
  }
  const results: Result[] = [];
  const remote: Summary[] = [];
  for (const adapter of adapters) await run(adapter, results, remote);

  console.log("\n## Latency, enqueue → handler start (ms)\n");
  table(
    ["adapter", "conc.", "enqueue p50", "idle p50", "idle p95", "under stream p50", "p95"],
    results.map((r) => [
      r.adapter,
      r.concurrency,
      ms(r.enqueue.p50),
      ms(r.idle.p50),
      ms(r.idle.p95),
      ms(r.stream.p50),
      ms(r.stream.p95),
    ]),
  );
  console.log(`## Throughput (jobs/s, ${opts.jobs} no-op jobs)\n`);
  table(
    ["adapter", "conc.", "stream (enqueue + run)", "drain (pre-queued)", "enqueueBatch"],
    results.map((r) => [
      r.adapter,
      r.concurrency,
      r.streamRate.toFixed(0),
      r.drainRate.toFixed(0),
      r.batchEnqueueRate.toFixed(0),
    ]),
  );
  const base = (c: number) => results.find((r) => r.adapter === bullmq.name && r.concurrency === c);
  const rows = results
    .filter((r) => r.adapter !== bullmq.name)
    .flatMap((r) => {
      const b = base(r.concurrency);
      if (!b) return [];
      return [
        [
          r.adapter,
          r.concurrency,
          ratio(r.idle.p50, b.idle.p50),
          ratio(r.stream.p50, b.stream.p50),
          ratio(r.streamRate, b.streamRate),
          ratio(r.drainRate, b.drainRate),
        ],
      ];
    });
  if (rows.length > 0) {
    console.log("## Against BullMQ in this run (embedded / BullMQ; latency: lower is better)\n");
    table(
      [
        "adapter",
        "conc.",
        "idle latency p50",
        "stream latency p50",
        "stream jobs/s",
        "drain jobs/s",
      ],
      rows,
    );
  }
  for (const s of remote) {
    console.log(
      `embedded (PostgreSQL), producer on another queue instance (poll 500 ms), concurrency 1: ` +
        `p50 ${ms(s.p50)} ms, p95 ${ms(s.p95)} ms, max ${ms(s.max)} ms (n ${s.n})`,
    );
  }
}

await main();
printFooter();
