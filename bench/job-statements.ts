/**
 * Statements per server-mode ingestion job: boots the app in server mode (PostgreSQL +
 * BullMQ), sends documents one at a time through the HTTP app and waits for each, while every
 * statement the `pg` driver sends is recorded with the job (BullMQ run) it was sent for.
 * The same for each submission, from the request to its 202 (statements sent while it is in
 * flight that no job sent: a relay or telemetry pass landing in that window counts too).
 * Prints the statements of one job and one submission in order, and the counts per run
 * (begin/commit included).
 *
 *   TEST_DATABASE_URL=… TEST_REDIS_URL=… npx tsx bench/job-statements.ts --docs=20
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";
import { Worker } from "bullmq";
import pg from "pg";
import pino from "pino";
import { loadConfig } from "../src/config.js";
import { createContext } from "../src/context.js";
import { buildApp } from "../src/http/app.js";
import { generateSigningKeyPem } from "../src/platform/crypto/signing.js";
import {
  BENCH_DATABASE_URL,
  BENCH_REDIS_URL,
  dropQueuePrefix,
  openPostgres,
  tempDir,
  uniqueQueuePrefix,
} from "./lib/backends.js";
import { intOption, sleep } from "./lib/report.js";
import { createTextGenerator, uniqueMarker } from "./lib/text.js";

const opts = { docs: intOption("docs", 20), docBytes: intOption("doc-bytes", 5000) };
if (!BENCH_DATABASE_URL || !BENCH_REDIS_URL)
  throw new Error("set TEST_DATABASE_URL and TEST_REDIS_URL");

const run = new AsyncLocalStorage<string>();
/** The submission in flight (the HTTP path does not carry an async context through inject). */
let submitting: string | undefined;
const byJob = new Map<string, Array<{ sql: string; ms: number }>>();
const proto = Worker.prototype as unknown as {
  callProcessJob(job: { name: string; id?: string }, ...rest: unknown[]): unknown;
};
const callProcessJob = proto.callProcessJob;
proto.callProcessJob = function (this: unknown, job, ...rest) {
  return run.run(`${job.name} ${job.id}`, () => callProcessJob.call(this, job, ...rest));
};
/** Records a statement sent on a promise (the adapter's calls; the pool's own use callbacks). */
function record(original: (...a: unknown[]) => unknown) {
  return function (this: unknown, ...args: unknown[]) {
    const tag = run.getStore() ?? submitting;
    const text = typeof args[0] === "string" ? args[0] : (args[0] as { text?: string })?.text;
    const res = original.apply(this, args);
    if (tag && text && res instanceof Promise) {
      const t0 = performance.now();
      const list = byJob.get(tag) ?? [];
      byJob.set(tag, list);
      const entry = { sql: text.replace(/\s+/g, " ").trim().slice(0, 150), ms: 0 };
      list.push(entry);
      const done = () => {
        entry.ms = performance.now() - t0;
      };
      res.then(done, done);
    }
    return res;
  };
}
for (const proto of [pg.Client.prototype, pg.Pool.prototype] as unknown as Array<{
  query(...a: unknown[]): unknown;
}>) {
  proto.query = record(proto.query);
}

async function main() {
  const data = tempDir("stmts");
  const store = await openPostgres(BENCH_DATABASE_URL as string);
  const prefix = uniqueQueuePrefix("stmts");
  const config = loadConfig({
    DATA_DIR: data.dir,
    LOG_LEVEL: "silent",
    WORKER_CONCURRENCY: "1",
    DATABASE_URL: BENCH_DATABASE_URL,
    REDIS_URL: BENCH_REDIS_URL,
    QUEUE_PREFIX: prefix,
    JWT_SECRET: randomBytes(32).toString("hex"),
    MASTER_KEY: randomBytes(32).toString("hex"),
    AUDIT_SIGNING_KEY: generateSigningKeyPem(),
  });
  const ctx = await createContext(config, {
    db: store.db,
    logger: pino({ level: "silent" }),
    migrations: "skip",
  });
  const app = await buildApp(ctx);
  await app.ready();
  try {
    const signup = await app.inject({
      method: "POST",
      url: "/api/auth/signup",
      payload: {
        email: `stmts-${randomBytes(4).toString("hex")}@example.test`,
        password: `pw-${randomBytes(8).toString("hex")}`,
        companyName: "Bench Ltd",
      },
    });
    const { apiKey } = signup.json() as { apiKey: string };
    ctx.startWorkers();
    const gen = createTextGenerator(42);
    for (let i = 0; i < opts.docs; i++) {
      const title = `${gen.word()} guide ${i}`;
      submitting = `submit ${i}`;
      const res = await app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: { "x-api-key": apiKey },
        payload: {
          title,
          content: gen.markdown(title, opts.docBytes, uniqueMarker(i, 7)),
          docType: "md",
        },
      });
      submitting = undefined;
      const { documentId } = res.json() as { documentId: string };
      for (;;) {
        const [row] = await ctx.db.query<{ status: string }>(
          "select j.status from jobs j join document_versions v on v.job_id = j.id where v.document_id = $1",
          [documentId],
        );
        if (row?.status === "completed") break;
        if (row?.status === "failed" || row?.status === "dead") throw new Error("job failed");
        await sleep(20);
      }
    }
    await sleep(200);
    const avg = (a: number[]) => a.reduce((n, x) => n + x, 0) / a.length;
    for (const [prefix, label] of [
      ["submit", "submission (POST /api/ingest/document, to its 202)"],
      ["ingest.process", "ingest.process run"],
    ] as const) {
      const runs = [...byJob.entries()].filter(([k]) => k.startsWith(prefix));
      const [, sample] = runs[Math.floor(runs.length / 2)] ?? [];
      console.log(`statements of one ${label}, in order (ms = round trip):`);
      for (const [i, s] of (sample ?? []).entries())
        console.log(`${String(i + 1).padStart(3)} ${s.ms.toFixed(2).padStart(6)}  ${s.sql}`);
      const counts = runs.map(([, l]) => l.length);
      const txs = runs.map(([, l]) => l.filter((s) => /^begin/i.test(s.sql)).length);
      const sum = runs.map(([, l]) => l.reduce((n, s) => n + s.ms, 0));
      console.log(
        `\n${runs.length} × ${prefix}: statements mean ${avg(counts).toFixed(1)} (min ${Math.min(...counts)}, max ${Math.max(...counts)}), transactions ${avg(txs).toFixed(1)}, summed round trips ${avg(sum).toFixed(1)} ms\n`,
      );
    }
  } finally {
    await app.close();
    await ctx.close();
    await store.dispose();
    await dropQueuePrefix(BENCH_REDIS_URL as string, prefix);
    data.remove();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
