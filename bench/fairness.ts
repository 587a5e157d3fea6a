/**
 * Fairness across tenants: while tenant A bulk-loads N documents, tenant B submits one small
 * document every second; B's submit → searchable latency is what a second customer sees during
 * someone else's bulk load. Through the HTTP app (app.inject) with the workers in-process, as
 * bench/ingest.ts drives it. Each mode runs twice in the same run: fair scheduling on (the
 * default) and off (JOB_FAIR_SCHEDULING=false: one FIFO across tenants, the baseline).
 *
 *   npm run bench:fairness -- --docs=5000          (full size: about 4 × 4 min)
 *
 * Options (flag or BENCH_* variable): docs (A's bulk, default 1500), doc-bytes (A's, 5000),
 * b-bytes (B's, 600), b-every-ms (1000), submitters (A's requests in flight, 4), concurrency
 * (WORKER_CONCURRENCY, 2), tenant-concurrency (JOB_TENANT_CONCURRENCY, unset), modes
 * (embedded,server), fairness (on,off).
 */
import { randomBytes } from "node:crypto";
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
} from "./lib/report.js";
import { createTextGenerator, uniqueMarker } from "./lib/text.js";

const opts = {
  docs: intOption("docs", 1500),
  docBytes: intOption("doc-bytes", 5000),
  bBytes: intOption("b-bytes", 600),
  bEveryMs: intOption("b-every-ms", 1000),
  submitters: intOption("submitters", 4),
  concurrency: intOption("concurrency", 2),
  tenantConcurrency: intOption("tenant-concurrency", 0),
  modes: stringOption("modes", "embedded,server").split(","),
  fairness: stringOption("fairness", "on,off").split(","),
  seed: intOption("seed", 42),
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
  dispose(): Promise<void>;
}

const _silent = pino({ level: "silent" });

function boot(mode: Mode, fair: boolean): Promise<Booted> {
  return bootBenchApp(mode, "fairness", {
    WORKER_CONCURRENCY: String(opts.concurrency),
    JOB_FAIR_SCHEDULING: String(fair),
    ...(opts.tenantConcurrency > 0
      ? { JOB_TENANT_CONCURRENCY: String(opts.tenantConcurrency) }
      : {}),
  });
}

function generateDocs(count: number, bytes: number, offset: number, runSeed: number): Doc[] {
  const gen = createTextGenerator(opts.seed + offset);
  return Array.from({ length: count }, (_, i) => {
    const marker = uniqueMarker(offset + i, runSeed);
    const title = `${gen.word()} ${gen.word()} guide ${offset + i}`;
    return { title, marker, content: gen.markdown(title, bytes, marker) };
  });
}

/** A tenant of the run, with limits above any load this benchmark makes. */
async function signup(ctx: AppContext, app: FastifyInstance, name: string) {
  const res = await app.inject({
    method: "POST",
    url: "/api/auth/signup",
    payload: {
      email: `bench-${randomBytes(4).toString("hex")}@example.test`,
      password: `pw-${randomBytes(8).toString("hex")}`,
      companyName: name,
    },
  });
  if (res.statusCode !== 201) throw new Error(`signup: ${res.body}`);
  const { apiKey, tenant } = res.json() as { apiKey: string; tenant: { id: string } };
  await ctx.db.query("update plans set rate_limit_rpm = 1000000, rate_limit_per_day = 100000000");
  await ctx.db.query("update tenants set plan_id = 'enterprise' where id = $1", [tenant.id]);
  await ctx.db.query(
    `update tenant_config set max_documents = 1000000, rate_limit_rpm = 1000000,
       rate_limit_per_day = 100000000 where tenant_id = $1`,
    [tenant.id],
  );
  return { apiKey, t: benchContext(tenant.id) };
}

async function submit(app: FastifyInstance, apiKey: string, doc: Doc): Promise<string> {
  const res = await app.inject({
    method: "POST",
    url: "/api/ingest/document",
    headers: { "x-api-key": apiKey },
    payload: { title: doc.title, content: doc.content, docType: "md" },
  });
  if (res.statusCode !== 202) throw new Error(`ingest answered ${res.statusCode}: ${res.body}`);
  return res.json().documentId as string;
}

/** Polls (every 50 ms) until a text search for the marker finds the document. */
async function untilSearchable(ctx: AppContext, t: TenantContext, id: string, marker: string) {
  const deadline = performance.now() + 300_000;
  let last: unknown;
  for (;;) {
    if (performance.now() > deadline) {
      const jobs = await ctx.db.query(
        "select status, attempts, last_error, created_at, started_at, finished_at from jobs where tenant_id = $1 and payload->>'documentId' = $2",
        [t.tenantId, id],
      );
      throw new Error(`document ${id} not searchable in 300 s: ${JSON.stringify({ last, jobs })}`);
    }
    const view = await ctx.documents.get(t, id);
    last = view;
    if (view.status === "failed") throw new Error(`document ${id} failed`);
    if (view.status === "completed") {
      const hits = await ctx.search.search(t, { query: marker, mode: "text", limit: 5 });
      if (hits.some((h) => h.documentId === id)) return;
    }
    await sleep(50);
  }
}

async function countCompleted(ctx: AppContext, t: TenantContext): Promise<number> {
  const [row] = await ctx.db.query<{ n: number; failed: number }>(
    `select count(*) filter (where status = 'completed')::int as n,
            count(*) filter (where status = 'failed')::int as failed
     from documents where tenant_id = $1`,
    [t.tenantId],
  );
  if ((row?.failed ?? 0) > 0) throw new Error(`${row?.failed} documents failed`);
  return row?.n ?? 0;
}

interface RunResult {
  mode: Mode;
  fair: boolean;
  aDocsPerSec: number;
  aTotalMs: number;
  b: Summary;
}

async function run(mode: Mode, fair: boolean, aDocs: Doc[], bDocs: Doc[]): Promise<RunResult> {
  const booted = await boot(mode, fair);
  const { ctx, app } = booted;
  try {
    const a = await signup(ctx, app, "Bulk Ltd");
    const b = await signup(ctx, app, "Single Ltd");
    ctx.startWorkers();
    const t0 = performance.now();
    let aDone = false;
    const bulk = mapLimit(aDocs, opts.submitters, (doc) => submit(app, a.apiKey, doc));
    const aFinished = (async () => {
      await bulk;
      while ((await countCompleted(ctx, a.t)) < aDocs.length) await sleep(100);
      aDone = true;
      return performance.now();
    })();
    // B: one document every `bEveryMs` while A's load lasts, each followed on its own.
    const latencies: Array<Promise<number>> = [];
    for (let i = 0; !aDone && i < bDocs.length; i++) {
      const doc = bDocs[i] as Doc;
      latencies.push(
        (async () => {
          const at = performance.now();
          const id = await submit(app, b.apiKey, doc);
          await untilSearchable(ctx, b.t, id, doc.marker);
          return performance.now() - at;
        })(),
      );
      await Promise.race([sleep(opts.bEveryMs), aFinished]);
    }
    const end = await aFinished;
    const bMs = await Promise.all(latencies);
    return {
      mode,
      fair,
      aDocsPerSec: aDocs.length / ((end - t0) / 1000),
      aTotalMs: end - t0,
      b: summarize(bMs),
    };
  } finally {
    await booted.dispose();
  }
}

async function main() {
  const modes = opts.modes.filter((m): m is Mode => m === "embedded" || m === "server");
  const runnable = modes.filter(
    (m) => m === "embedded" || (BENCH_DATABASE_URL !== undefined && BENCH_REDIS_URL !== undefined),
  );
  printHeader("tenantrag fairness benchmark", { ...opts, modes: runnable });
  const runSeed = Math.floor(Math.random() * 36 ** 4);
  const aDocs = generateDocs(opts.docs, opts.docBytes, 0, runSeed);
  // Enough for B to submit one a second for as long as the slowest run could last.
  const bDocs = generateDocs(Math.max(100, opts.docs), opts.bBytes, opts.docs, runSeed);
  const results: RunResult[] = [];
  for (const mode of runnable) {
    for (const f of opts.fairness) {
      const fair = f !== "off";
      console.log(`running ${mode}, fair scheduling ${fair ? "on" : "off"}…`);
      const r = await run(mode, fair, aDocs, bDocs);
      console.log(
        `  A: ${rate(opts.docs, r.aTotalMs)} docs/s; B: p50 ${ms(r.b.p50)} ms, p95 ${ms(r.b.p95)} ms`,
      );
      results.push(r);
    }
  }
  console.log("\n## B's submit → searchable during A's bulk load, and A's throughput\n");
  table(
    ["mode", "fair", "A docs", "A total s", "A docs/s", "B n", "B p50 ms", "B p95 ms", "B max ms"],
    results.map((r) => [
      r.mode,
      r.fair ? "on" : "off (FIFO)",
      opts.docs,
      (r.aTotalMs / 1000).toFixed(1),
      r.aDocsPerSec.toFixed(1),
      r.b.n,
      ms(r.b.p50),
      ms(r.b.p95),
      ms(r.b.max),
    ]),
  );
  const pairs = runnable.flatMap((mode) => {
    const on = results.find((r) => r.mode === mode && r.fair);
    const off = results.find((r) => r.mode === mode && !r.fair);
    return on && off ? [{ mode, on, off }] : [];
  });
  if (pairs.length > 0) {
    console.log("## Fair against FIFO (same run)\n");
    table(
      ["mode", "B p95 fair / FIFO", "A docs/s fair / FIFO"],
      pairs.map(({ mode, on, off }) => [
        mode,
        ratio(on.b.p95, off.b.p95),
        ratio(on.aDocsPerSec, off.aDocsPerSec),
      ]),
    );
  }
}

await main();
printFooter();
