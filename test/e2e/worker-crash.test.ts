import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { type AppContext, createContext } from "../../src/context.js";
import { buildApp } from "../../src/http/app.js";
import { generateSigningKeyPem } from "../../src/platform/crypto/signing.js";
import {
  createInProcessTenantLock,
  createLanceVectorIndex,
} from "../../src/platform/vectors/index.js";
import { dropQueueKeys, GENEROUS_RATE_LIMITS } from "../fixtures/app.js";
import { builtMain, migratedDataDir } from "../fixtures/cli.js";
import { TEST_DATABASE_URL, TEST_REDIS_URL } from "../fixtures/db.js";
import { type FakeOpenAI, startFakeOpenAI } from "../fixtures/fake-openai.js";
import { usageEvents } from "../fixtures/usage.js";
import {
  type Api,
  crashScenario,
  duringEmbedding,
  type KillPoint,
  until,
} from "../fixtures/worker-crash.js";

/**
 * A worker killed (SIGKILL: no shutdown, no hand-back) in the middle of an ingestion job: the
 * job runs again in the next worker and the document ends completed exactly once. The job is
 * held mid-way by what it waits on for real: the tenant embeds through the fake OpenAI server,
 * which keeps the first embeddings request unanswered until the worker that sent it is dead
 * (or, in the second server test, a lock on the version row that the activation must take).
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const OPENAI_KEY = `sk-fake-${randomBytes(8).toString("hex")}`;
const rand = () => randomBytes(5).toString("hex");

interface Child {
  child: ChildProcess;
  /** Resolves with the first match of `re` in stdout; rejects on exit or after `ms`. */
  waitFor(re: RegExp, ms: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code or signal; rejects after `ms`. */
  exited(ms: number): Promise<number | string | null>;
}

/** The version's embedding is in the ledger once, whatever the crash. */
async function expectBilledOnce(ctx: AppContext, tenantId: string) {
  const events = await usageEvents(ctx, {
    tenantId,
    metric: "embedding_tokens",
    subjectType: "document_version",
  });
  expect(events).toHaveLength(1);
}

const children = new Set<ChildProcess>();
const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(path.join(tmpdir(), "tenantrag-crash-"));
  dirs.push(dir);
  return dir;
};

function bounded<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what()} within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** The real CLI in a child process, with only the environment the test names. */
function cli(args: string[], env: Record<string, string>): Child {
  const child = spawn(process.execPath, [main, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? tmpdir(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exit = new Promise<number | string | null>((resolve) => {
    child.on("exit", (code, signal) => {
      children.delete(child);
      resolve(code ?? signal);
    });
  });
  return {
    child,
    waitFor(re, ms) {
      const found = new Promise<RegExpMatchArray>((resolve, reject) => {
        const check = () => {
          const m = out.match(re);
          if (m) resolve(m);
        };
        child.stdout?.on("data", check);
        exit.then((code) => reject(new Error(`exited (${code}) before ${re}:\n${out}`)));
        check();
      });
      return bounded(found, ms, () => `no ${re} in the output:\n${out}\n`);
    },
    exited: (ms) => bounded(exit, ms, () => `still running:\n${out}\n`),
  };
}

const base = (dataDir: string) => ({
  DATA_DIR: dataDir,
  OPENAI_BASE_URL: fake.url,
  OPENAI_API_KEY: OPENAI_KEY,
  // A dead worker's job is taken over about two seconds after its lock was last renewed.
  JOB_LOCK_MS: "2000",
  JOB_BACKOFF_MS: "50",
  LOG_LEVEL: "warn",
});

let fake: FakeOpenAI;
let main: string;
beforeAll(async () => {
  fake = await startFakeOpenAI({ keys: [OPENAI_KEY] });
  main = await builtMain();
}, 180_000);
afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  await fake?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * After the chunks are written, before the version is made active: the test holds a lock on
 * the version's row, as a slow database would, so the worker's activation waits on it. The
 * first embeddings answer is late enough for the test to take the lock before it arrives.
 */
function afterChunksWritten(dbUrl: string, storedChunks: (tenantId: string) => Promise<number>) {
  const locker = new pg.Client({ connectionString: dbUrl });
  const point: KillPoint = {
    arm(fake) {
      fake.delayMs = 5_000;
    },
    async reached(fake, ids) {
      await duringEmbedding.reached(fake, ids);
      fake.delayMs = 0;
      await locker.connect();
      await locker.query("begin");
      await locker.query("select 1 from document_versions where document_id = $1 for update", [
        ids.documentId,
      ]);
      const written = async () => ((await storedChunks(ids.tenantId)) > 0 ? true : undefined);
      await until("the chunks to be written", written, 30_000);
    },
    async release() {
      await locker.query("rollback");
      await locker.end();
    },
  };
  return point;
}

const serverMode = describe.skipIf(!TEST_DATABASE_URL || !TEST_REDIS_URL);

serverMode("worker killed mid-job (server mode)", () => {
  let admin: pg.Client;
  const databases: string[] = [];
  const queuePrefixes: string[] = [];
  const contexts: AppContext[] = [];

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
  });
  afterAll(async () => {
    for (const child of children) child.kill("SIGKILL");
    for (const ctx of contexts) await ctx.close();
    for (const prefix of queuePrefixes) await dropQueueKeys(TEST_REDIS_URL as string, prefix);
    for (const name of databases)
      await admin?.query(`drop database if exists ${name} with (force)`);
    await admin?.end();
  });

  /**
   * A fresh database migrated by `tenantrag migrate`, and the API in the test process as
   * `serve --no-worker` would run it; the workers are `tenantrag worker` children.
   */
  async function deployment() {
    const database = `tr_crash_${rand()}`;
    await admin.query(`create database ${database}`);
    databases.push(database);
    const url = new URL(TEST_DATABASE_URL as string);
    url.pathname = `/${database}`;
    const queuePrefix = `tenantrag-test-${rand()}`;
    queuePrefixes.push(queuePrefix);
    const env = {
      ...base(tempDir()),
      DATABASE_URL: url.toString(),
      REDIS_URL: TEST_REDIS_URL as string,
      QUEUE_PREFIX: queuePrefix,
      JWT_SECRET: randomBytes(32).toString("hex"),
      MASTER_KEY: randomBytes(32).toString("hex"),
      AUDIT_SIGNING_KEY: generateSigningKeyPem(),
    };
    expect(await cli(["migrate"], env).exited(60_000)).toBe(0);
    const ctx = await createContext(loadConfig({ ...env, LOG_LEVEL: "silent" }), {
      logger: pino({ level: "silent" }),
      tenantRateLimits: GENEROUS_RATE_LIMITS,
    });
    contexts.push(ctx);
    const app = await buildApp(ctx);
    await app.ready();
    const api: Api = async (method, path, body, token) => {
      const res = await app.inject({
        method,
        url: path,
        headers: token ? { authorization: `Bearer ${token}` } : {},
        ...(body !== undefined ? { payload: body as object } : {}),
      });
      return { status: res.statusCode, body: res.body ? res.json() : undefined };
    };
    return { ctx, api, dbUrl: url.toString(), startWorker: () => cli(["worker"], env) };
  }

  it("killed while embedding: a second `tenantrag worker` completes the job once", {
    timeout: 120_000,
  }, async () => {
    const d = await deployment();
    const outcome = await crashScenario({ api: d.api, fake, startWorker: d.startWorker });
    expect(await d.ctx.vectors.count(outcome.tenantId)).toBe(outcome.chunkCount);
    await expectBilledOnce(d.ctx, outcome.tenantId);
  });

  it("killed after writing its chunks: the second worker writes them again without duplicates", {
    timeout: 120_000,
  }, async () => {
    const d = await deployment();
    const killPoint = afterChunksWritten(d.dbUrl, (tenantId) => d.ctx.vectors.count(tenantId));
    const outcome = await crashScenario({
      api: d.api,
      fake,
      startWorker: d.startWorker,
      killPoint,
    });
    // Counted in the table itself, not through search (which could hide duplicates).
    expect(await d.ctx.vectors.count(outcome.tenantId)).toBe(outcome.chunkCount);
    await expectBilledOnce(d.ctx, outcome.tenantId);
  });
});

describe("worker killed mid-job (embedded mode)", () => {
  // PGlite is one process's database: no second process may open DATA_DIR while the first has
  // it. So the embedded variant kills `tenantrag serve` (API and workers in one process) and
  // starts it again on the same DATA_DIR, which is how an embedded installation restarts.
  it("a restarted `tenantrag serve` finishes the job: completed once, one version, no duplicate chunks", {
    timeout: 150_000,
  }, async () => {
    const dataDir = migratedDataDir("tenantrag-crash-");
    dirs.push(dataDir);
    // A lease far longer than the test: the restarted process must repair the job at start-up,
    // not when the dead one's lease runs out.
    const env = { ...base(dataDir), PORT: "0", JOB_LOCK_MS: "600000" };
    let baseUrl = "";
    const api: Api = async (method, url, body, token) => {
      const res = await fetch(`${baseUrl}${url}`, {
        method,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    };
    const serve = async () => {
      const c = cli(["serve"], env);
      [, baseUrl = ""] = await c.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/, 60_000);
      return c;
    };
    const outcome = await crashScenario({ api, fake, startWorker: serve });
    const server = outcome.lastWorker;
    server.child.kill("SIGTERM");
    expect(await server.exited(20_000)).toBe(0);
    // Counted in the table itself, not through search (which could hide duplicates).
    const vectors = createLanceVectorIndex({
      uri: path.join(dataDir, "lance"),
      dimensions: loadConfig({ DATA_DIR: dataDir }).embeddingDimensions,
      lock: createInProcessTenantLock(),
      logger: pino({ level: "silent" }),
    });
    try {
      expect(await vectors.count(outcome.tenantId)).toBe(outcome.chunkCount);
    } finally {
      await vectors.close();
    }
  });
});
