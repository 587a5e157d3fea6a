/**
 * Ingestion throughput and time-to-searchable, end to end through the HTTP app (app.inject:
 * routing, API-key auth, zod validation, the ingestion service), with the workers in the same
 * process. Embedded mode (PGlite in a temporary DATA_DIR, embedded queue) always; server mode
 * (PostgreSQL + BullMQ on Redis) too when TEST_DATABASE_URL and TEST_REDIS_URL are set.
 *
 *   npm run bench:ingest -- --docs=1000 --doc-bytes=5000 --samples=50 --idle=20   (full size;
 *   the default of 300 documents keeps a run of both modes near 3 minutes on 2 cores)
 *
 * Options (flag or BENCH_* variable): docs, doc-bytes, samples (documents whose time to
 * searchable is followed during the bulk load), idle (documents sent one at a time afterwards),
 * submitters (requests in flight), concurrency (WORKER_CONCURRENCY; unset: the app's default),
 * modes (embedded,server), batches / batch-size / batch-bytes (`POST /api/ingest/batch`
 * requests timed after the idle documents, 10 × 50 × 9 KB by default; 0 skips them).
 *
 * RSS and heap of the process (API and workers are one process here) are sampled every second
 * of the bulk load; `--docs=10000` is the long-load memory run.
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import { connect } from "@lancedb/lancedb";
import type { FastifyInstance } from "fastify";
import pino from "pino";
import type { AppContext } from "../src/context.js";
import type { TenantContext } from "../src/tenancy.js";
import { bootBenchApp } from "./lib/app.js";
import { BENCH_DATABASE_URL, BENCH_REDIS_URL, benchContext } from "./lib/backends.js";
import {
  intOption,
  mapLimit,
  ms,
  printFooter,
  printHeader,
  rate,
  ratio,
  type Summary,
  sleep,
  stringOption,
  summarize,
  table,
  timed,
} from "./lib/report.js";
import { createStageTracer } from "./lib/stages.js";
import { createTextGenerator, uniqueMarker } from "./lib/text.js";

const opts = {
  docs: intOption("docs", 300),
  docBytes: intOption("doc-bytes", 5000),
  samples: intOption("samples", 50),
  idle: intOption("idle", 20),
  submitters: intOption("submitters", 4),
  concurrency: stringOption("concurrency", undefined),
  modes: stringOption("modes", "embedded,server").split(","),
  seed: intOption("seed", 42),
  batches: intOption("batches", 10),
  batchSize: intOption("batch-size", 50),
  batchBytes: intOption("batch-bytes", 9000),
};

type Mode = "embedded" | "server";

interface Doc {
  title: string;
  content: string;
  marker: string;
}

interface Booted {
  ctx: AppContext;
  app: FastifyInstance;
  label: string;
  lanceDir: string;
  dispose(): Promise<void>;
}

const _silent = pino({ level: "silent" });

async function boot(mode: Mode): Promise<Booted> {
  const b = await bootBenchApp(
    mode,
    "ingest",
    opts.concurrency ? { WORKER_CONCURRENCY: opts.concurrency } : {},
  );
  return {
    ...b,
    label:
      mode === "embedded"
        ? "embedded (PGlite + embedded queue)"
        : "server (PostgreSQL + BullMQ/Redis)",
    lanceDir: path.join(b.dataDir, "lance"),
  };
}

function generateDocs(count: number, offset: number, runSeed: number, bytes = opts.docBytes) {
  const gen = createTextGenerator(opts.seed + offset);
  return Array.from({ length: count }, (_, i): Doc => {
    const marker = uniqueMarker(offset + i, runSeed);
    const title = `${gen.word()} ${gen.word()} ${gen.word()} guide ${offset + i}`;
    return { title, marker, content: gen.markdown(title, bytes, marker) };
  });
}

/** One `POST /api/ingest/batch`; its time to the answer, every item accepted. */
async function submitBatch(app: FastifyInstance, apiKey: string, docs: Doc[]): Promise<number> {
  const started = performance.now();
  const res = await app.inject({
    method: "POST",
    url: "/api/ingest/batch",
    headers: { "x-api-key": apiKey },
    payload: {
      documents: docs.map((d) => ({ title: d.title, content: d.content, docType: "md" })),
    },
  });
  const elapsed = performance.now() - started;
  if (res.statusCode >= 300) throw new Error(`batch answered ${res.statusCode}: ${res.body}`);
  const body = res.json() as { accepted: number };
  if (body.accepted !== docs.length)
    throw new Error(`batch accepted ${body.accepted}: ${res.body}`);
  return elapsed;
}

interface MemorySample {
  at: number;
  rss: number;
  heap: number;
  external: number;
  completed: number;
}

/** RSS, heap and external memory of this process, and the documents completed, every second. */
function startMemorySampler(ctx: AppContext, tenantId: string) {
  const samples: MemorySample[] = [];
  const t0 = performance.now();
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    const m = process.memoryUsage();
    ctx.db
      .query<{ n: number }>(
        "select count(*)::int as n from documents where tenant_id = $1 and status = 'completed'",
        [tenantId],
      )
      .then(([row]) => {
        const sample = {
          at: performance.now() - t0,
          rss: m.rss,
          heap: m.heapUsed,
          external: m.external + m.arrayBuffers,
          completed: row?.n ?? 0,
        };
        samples.push(sample);
        // Progress on stderr every 15 s, so a long run that is cut short still tells its story.
        if (samples.length % 15 === 0) {
          const mb = (b: number) => (b / 2 ** 20).toFixed(0);
          process.stderr.write(
            `memory ${(sample.at / 1000).toFixed(0)} s: ${sample.completed} docs, RSS ${mb(sample.rss)} MB, heap ${mb(sample.heap)} MB, external ${mb(sample.external)} MB\n`,
          );
        }
      })
      .catch(() => undefined)
      .finally(() => {
        busy = false;
      });
  }, 1000);
  return {
    stop() {
      clearInterval(timer);
      return samples;
    },
  };
}

/** Latest version of each table of the tenant: every commit (writes, compactions, indexes). */
async function tableCommits(lanceDir: string, tenantId: string): Promise<number> {
  const conn = await connect(path.join(lanceDir, tenantId));
  let commits = 0;
  for (const name of await conn.tableNames()) {
    const t = await conn.openTable(name);
    commits += await t.version();
    t.close();
  }
  conn.close();
  return commits;
}

interface Submitted {
  documentId: string;
  submittedAt: number;
  acceptedAt: number;
}

async function submit(app: FastifyInstance, apiKey: string, doc: Doc): Promise<Submitted> {
  const submittedAt = performance.now();
  const res = await app.inject({
    method: "POST",
    url: "/api/ingest/document",
    headers: { "x-api-key": apiKey },
    payload: { title: doc.title, content: doc.content, docType: "md" },
  });
  const acceptedAt = performance.now();
  if (res.statusCode !== 202) throw new Error(`ingest answered ${res.statusCode}: ${res.body}`);
  return { documentId: res.json().documentId, submittedAt, acceptedAt };
}

/** True once a text search for the document's unique marker returns one of its chunks. */
async function searchable(ctx: AppContext, t: TenantContext, documentId: string, marker: string) {
  const hits = await ctx.search.search(t, { query: marker, mode: "text", limit: 5 });
  return hits.some((h) => h.documentId === documentId);
}

interface Follow {
  doc: Doc;
  sub: Submitted;
  completedAt?: number;
  searchableAt?: number;
}

/**
 * Follows sampled documents until they are searchable: one status query for all of them per
 * tick, then a text search for each one that has completed. The tick bounds the resolution.
 */
function startFollower(ctx: AppContext, t: TenantContext, tickMs: number) {
  const pending = new Map<string, Follow>();
  const done: Follow[] = [];
  let stop = false;
  const loop = (async () => {
    while (!stop || pending.size > 0) {
      if (pending.size > 0) {
        const rows = await ctx.db.query<{ id: string; status: string }>(
          "select id, status from documents where tenant_id = $1 and id = any($2::uuid[])",
          [t.tenantId, [...pending.keys()]],
        );
        const now = performance.now();
        for (const r of rows) {
          const f = pending.get(r.id) as Follow;
          if (r.status === "failed") throw new Error(`document ${r.id} failed`);
          if (r.status === "completed") f.completedAt ??= now;
        }
        for (const f of pending.values()) {
          if (f.completedAt === undefined) continue;
          if (await searchable(ctx, t, f.sub.documentId, f.doc.marker)) {
            f.searchableAt = performance.now();
            pending.delete(f.sub.documentId);
            done.push(f);
          }
        }
      }
      await sleep(tickMs);
    }
  })();
  return {
    add: (f: Follow) => pending.set(f.sub.documentId, f),
    async finish() {
      stop = true;
      await loop;
      return done;
    },
  };
}

/** Waits until every document is completed and its job's row says so too. */
async function waitAllDone(ctx: AppContext, tenantId: string, expected: number) {
  let at: number | undefined;
  for (;;) {
    const [row] = await ctx.db.query<{ completed: number; failed: number; chunks: number }>(
      `select count(*) filter (where status = 'completed')::int as completed,
              count(*) filter (where status = 'failed')::int as failed,
              coalesce(sum(chunk_count), 0)::int as chunks
       from documents where tenant_id = $1`,
      [tenantId],
    );
    const r = row as { completed: number; failed: number; chunks: number };
    if (r.failed > 0) throw new Error(`${r.failed} documents failed`);
    if (r.completed >= expected) {
      at ??= performance.now();
      // The job's own row is written just after the document's: wait for it (not timed).
      const [jobs] = await ctx.db.query<{ n: number }>(
        `select count(*)::int as n from jobs
         where tenant_id = $1 and type = 'ingest.process' and status = 'completed'`,
        [tenantId],
      );
      if ((jobs?.n ?? 0) >= expected) return { at, chunks: r.chunks };
    }
    await sleep(50);
  }
}

interface ModeResult {
  label: string;
  docs: number;
  chunks: number;
  tokens: number;
  bytes: number;
  submitMs: number;
  totalMs: number;
  accept: Summary;
  backlogCompleted: Summary;
  backlogSearchable: Summary;
  idleCompleted: Summary;
  idleSearchable: Summary;
  queueWait: Summary;
  jobRun: Summary;
  /** Milliseconds summed over all jobs: their run time, and each traced stage's. */
  jobRunTotal: number;
  stages: Map<string, { calls: number; ms: number }>;
  commits: number;
  memory: MemorySample[];
  batch: Summary;
}

async function runMode(
  mode: Mode,
  docs: Doc[],
  idleDocs: Doc[],
  batchDocs: Doc[][],
): Promise<ModeResult> {
  const booted = await boot(mode);
  const { ctx, app } = booted;
  try {
    const signup = await app.inject({
      method: "POST",
      url: "/api/auth/signup",
      payload: {
        email: `bench-${randomBytes(4).toString("hex")}@example.test`,
        password: `pw-${randomBytes(8).toString("hex")}`,
        companyName: "Bench Ltd",
      },
    });
    if (signup.statusCode !== 201) throw new Error(`signup: ${signup.body}`);
    const { apiKey, tenant } = signup.json() as { apiKey: string; tenant: { id: string } };
    // The trial plan stops at 1 000 documents, 60 requests a minute and 1 000 000 embedding
    // tokens; a benchmark sends more. The plans of the bench's own schema get ceilings above
    // any load, and the tenant the enterprise plan's quotas. Set before its first request, so
    // no limit of the trial plan is cached anywhere.
    await ctx.db.query("update plans set rate_limit_rpm = 1000000, rate_limit_per_day = 100000000");
    await ctx.db.query("update tenants set plan_id = 'enterprise' where id = $1", [tenant.id]);
    await ctx.db.query(
      `update tenant_config set max_documents = $2, rate_limit_rpm = 1000000,
         rate_limit_per_day = 100000000 where tenant_id = $1`,
      [tenant.id, docs.length + idleDocs.length + batchDocs.flat().length + 10],
    );
    const t = benchContext(tenant.id);
    const tracer = createStageTracer();
    tracer.wrap(ctx.embedders.local, "embed", "embed (local embedder, incl. token count)");
    tracer.wrap(ctx.blobs, "get", "blobs.get");
    for (const m of ["upsertChunks", "deleteDocument", "count", "upsertCatalog"]) {
      tracer.wrap(ctx.vectors, m, `vectors.${m}`);
    }
    tracer.wrap(ctx.vectors, "searchText", "vectors.searchText (follower's searches)");
    ctx.startWorkers();

    // Bulk load: every document submitted as fast as `submitters` clients can, while the
    // workers drain the queue; sampled documents are followed until they are searchable.
    const follower = startFollower(ctx, t, 100);
    const sampler = startMemorySampler(ctx, tenant.id);
    const every = Math.max(1, Math.floor(docs.length / Math.max(1, opts.samples)));
    const t0 = performance.now();
    const subs = await mapLimit(docs, opts.submitters, async (doc, i) => {
      const sub = await submit(app, apiKey, doc);
      if (i % every === 0 && i / every < opts.samples) follower.add({ doc, sub });
      return sub;
    });
    const submitted = performance.now();
    const end = await waitAllDone(ctx, tenant.id, docs.length);
    const memory = sampler.stop();
    const followed = await follower.finish();
    const commits = await tableCommits(booted.lanceDir, tenant.id);
    console.log(`\n${booted.label}: time per call of traced stages, bulk load in 4 slices\n`);
    tracer.print(t0, end.at, 4);
    const traced = tracer.totals(t0, end.at);

    const [figures] = await ctx.db.query<{ tokens: number; bytes: number }>(
      `select coalesce(sum(embedding_tokens), 0)::int as tokens,
              coalesce(sum(file_size_bytes), 0)::int as bytes
       from documents where tenant_id = $1`,
      [tenant.id],
    );
    // Both queue adapters record created/started/finished on the job's row.
    const jobs = await ctx.db.query<{ wait_ms: number; run_ms: number }>(
      `select extract(epoch from (started_at - created_at)) * 1000 as wait_ms,
              extract(epoch from (finished_at - started_at)) * 1000 as run_ms
       from jobs where tenant_id = $1 and type = 'ingest.process' and status = 'completed'`,
      [tenant.id],
    );

    // Idle latency: one document at a time on a quiet system, polled every 5 ms.
    const idleCompleted: number[] = [];
    const idleSearchable: number[] = [];
    for (const doc of idleDocs) {
      const sub = await submit(app, apiKey, doc);
      let completedAt: number | undefined;
      for (;;) {
        if (completedAt === undefined) {
          const view = await ctx.documents.get(t, sub.documentId);
          if (view.status === "failed") throw new Error(`document ${sub.documentId} failed`);
          if (view.status === "completed") completedAt = performance.now();
        }
        if (completedAt !== undefined && (await searchable(ctx, t, sub.documentId, doc.marker))) {
          idleCompleted.push(completedAt - sub.submittedAt);
          idleSearchable.push(performance.now() - sub.submittedAt);
          break;
        }
        await sleep(5);
      }
    }

    // Batches: one request of `batchSize` documents at a time, the workers busy with the last.
    const batchMs: number[] = [];
    for (const batch of batchDocs) batchMs.push(await submitBatch(app, apiKey, batch));

    return {
      label: booted.label,
      docs: docs.length,
      chunks: end.chunks,
      tokens: figures?.tokens ?? 0,
      bytes: figures?.bytes ?? 0,
      submitMs: submitted - t0,
      totalMs: end.at - t0,
      accept: summarize(subs.map((s) => s.acceptedAt - s.submittedAt)),
      backlogCompleted: summarize(
        followed.map((f) => (f.completedAt as number) - f.sub.submittedAt),
      ),
      backlogSearchable: summarize(
        followed.map((f) => (f.searchableAt as number) - f.sub.submittedAt),
      ),
      idleCompleted: summarize(idleCompleted),
      idleSearchable: summarize(idleSearchable),
      queueWait: summarize(jobs.map((j) => Number(j.wait_ms))),
      jobRun: summarize(jobs.map((j) => Number(j.run_ms))),
      jobRunTotal: jobs.reduce((n, j) => n + Number(j.run_ms), 0),
      stages: traced,
      commits,
      memory,
      batch: summarize(batchMs),
    };
  } finally {
    await booted.dispose();
  }
}

const pct = (part: number, whole: number) => `${((100 * part) / whole).toFixed(0)} %`;

async function main() {
  const modes = opts.modes.filter((m): m is Mode => m === "embedded" || m === "server");
  const runnable = modes.filter(
    (m) => m === "embedded" || (BENCH_DATABASE_URL !== undefined && BENCH_REDIS_URL !== undefined),
  );
  printHeader("tenantrag ingestion benchmark", {
    ...opts,
    modes: runnable,
    skipped: modes.filter((m) => !runnable.includes(m)),
  });
  const runSeed = Math.floor(Math.random() * 36 ** 4);
  const { ms: genMs, value: docs } = await timed(async () => generateDocs(opts.docs, 0, runSeed));
  const idleDocs = generateDocs(opts.idle, opts.docs, runSeed);
  const batchDocs = Array.from({ length: opts.batches }, (_, b) =>
    generateDocs(
      opts.batchSize,
      opts.docs + opts.idle + b * opts.batchSize,
      runSeed,
      opts.batchBytes,
    ),
  );
  const avgBytes = docs.reduce((n, d) => n + Buffer.byteLength(d.content), 0) / docs.length;
  console.log(
    `generated ${docs.length} Markdown documents (mean ${avgBytes.toFixed(0)} bytes) in ${ms(genMs)} ms\n`,
  );

  const results: ModeResult[] = [];
  for (const mode of runnable) {
    console.log(`running ${mode} mode…`);
    results.push(await runMode(mode, docs, idleDocs, batchDocs));
  }

  console.log("\n## Throughput (bulk load, end to end: first request → last document completed)\n");
  table(
    ["mode", "docs", "chunks", "tokens", "MB", "submit s", "total s", "docs/s", "chunks/s", "MB/s"],
    results.map((r) => [
      r.label,
      r.docs,
      r.chunks,
      r.tokens,
      (r.bytes / 1e6).toFixed(1),
      (r.submitMs / 1000).toFixed(1),
      (r.totalMs / 1000).toFixed(1),
      rate(r.docs, r.totalMs),
      rate(r.chunks, r.totalMs),
      (r.bytes / 1e6 / (r.totalMs / 1000)).toFixed(2),
    ]),
  );
  console.log("## LanceDB commits (table versions of chunks + catalog after the bulk load)\n");
  table(
    ["mode", "docs", "commits", "commits per document"],
    results.map((r) => [r.label, r.docs, r.commits, (r.commits / r.docs).toFixed(2)]),
  );
  console.log("## Latencies (ms)\n");
  const row = (label: string, what: string, s: Summary) => [
    label,
    what,
    s.n,
    ms(s.p50),
    ms(s.p95),
    ms(s.max),
  ];
  table(
    ["mode", "measure", "n", "p50", "p95", "max"],
    results.flatMap((r) => [
      row(r.label, "202 answer (submit → 202)", r.accept),
      row(r.label, "bulk: submit → completed", r.backlogCompleted),
      row(r.label, "bulk: submit → searchable", r.backlogSearchable),
      row(r.label, "bulk: job queue wait", r.queueWait),
      row(r.label, "bulk: job run (handler + bookkeeping)", r.jobRun),
      row(r.label, "idle: submit → completed", r.idleCompleted),
      row(r.label, "idle: submit → searchable", r.idleSearchable),
      row(r.label, `batch of ${opts.batchSize} × ${opts.batchBytes} B → answer`, r.batch),
    ]),
  );
  console.log("## Memory of the process during the bulk load (MB), ten points in time\n");
  table(
    ["mode", "s", "docs completed", "RSS", "heap used", "external + buffers"],
    results.flatMap((r) => {
      const picks = r.memory.filter(
        (_, i) => i % Math.max(1, Math.floor(r.memory.length / 10)) === 0,
      );
      const last = r.memory.at(-1);
      if (last && picks.at(-1) !== last) picks.push(last);
      return picks.map((m) => [
        r.label,
        (m.at / 1000).toFixed(0),
        m.completed,
        (m.rss / 2 ** 20).toFixed(0),
        (m.heap / 2 ** 20).toFixed(0),
        (m.external / 2 ** 20).toFixed(0),
      ]);
    }),
  );
  table(
    ["mode", "RSS max MB", "RSS at end MB", "heap max MB"],
    results.map((r) => [
      r.label,
      (Math.max(0, ...r.memory.map((m) => m.rss)) / 2 ** 20).toFixed(0),
      ((r.memory.at(-1)?.rss ?? 0) / 2 ** 20).toFixed(0),
      (Math.max(0, ...r.memory.map((m) => m.heap)) / 2 ** 20).toFixed(0),
    ]),
  );
  console.log("## Share of job run time (summed over all jobs of the bulk load)\n");
  table(
    ["mode", "stage", "calls", "total s", "share of job time"],
    results.flatMap((r) => {
      let rest = r.jobRunTotal;
      const rows = [...r.stages.entries()]
        .filter(([label]) => !label.includes("follower"))
        .map(([label, t]) => {
          rest -= t.ms;
          return [r.label, label, t.calls, (t.ms / 1000).toFixed(1), pct(t.ms, r.jobRunTotal)];
        });
      rows.push([
        r.label,
        "rest: extract, chunk, SQL, queue bookkeeping",
        "",
        (rest / 1000).toFixed(1),
        pct(rest, r.jobRunTotal),
      ]);
      return rows;
    }),
  );
  const [embedded, server] = results;
  if (embedded && server) {
    console.log("## Server mode against embedded mode (same run)\n");
    table(
      ["measure", "server / embedded"],
      [
        ["docs/s", ratio(server.docs / server.totalMs, embedded.docs / embedded.totalMs)],
        ["202 answer p50", ratio(server.accept.p50, embedded.accept.p50)],
        ["batch answer p50", ratio(server.batch.p50, embedded.batch.p50)],
        ["job run p50", ratio(server.jobRun.p50, embedded.jobRun.p50)],
        [
          "idle submit → searchable p50",
          ratio(server.idleSearchable.p50, embedded.idleSearchable.p50),
        ],
      ],
    );
  }
  console.log(
    "Bulk latencies include the backlog: every document is submitted at once, so a document's\n" +
      "wait grows with its position in the queue. Idle latencies are one document at a time.\n" +
      "Follower resolution: 100 ms (bulk), 5 ms (idle).",
  );
}

await main();
printFooter();
