import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createContext } from "../../src/context.js";
import { buildApp } from "../../src/http/app.js";
import { generateSigningKeyPem } from "../../src/platform/crypto/signing.js";
import { builtMain, migratedDataDir } from "../fixtures/cli.js";
import { TEST_DATABASE_URL } from "../fixtures/db.js";

/** The real binary as `npm start` runs it (dist/main.js), in a child process with a clean environment. */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const START_TIMEOUT_MS = 45_000;
const EXIT_TIMEOUT_MS = 10_000;

interface Cli {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `re` in stdout; rejects on exit or timeout. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code; rejects when the process outlives `timeoutMs`. */
  exited(timeoutMs?: number): Promise<number | null>;
}

const children = new Set<ChildProcess>();
const tempDirs: string[] = [];
let main: string;

beforeAll(async () => {
  main = await builtMain();
}, 180_000);

/** An empty DATA_DIR: a first start creates and migrates its database. */
function tempDataDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "tenantrag-cli-"));
  tempDirs.push(dir);
  return dir;
}

/** A DATA_DIR whose database is migrated already, as after a first start. */
function migratedDir(): string {
  const dir = migratedDataDir();
  tempDirs.push(dir);
  return dir;
}

function cli(args: string[], env: Record<string, string>): Cli {
  const child = spawn(process.execPath, [main, ...args], {
    cwd: ROOT,
    // Only what the test names: nothing leaks in from the developer's shell (DATABASE_URL…).
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? tmpdir(),
      LOG_LEVEL: "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<number | null>((resolve) => {
    child.on("exit", (code) => {
      children.delete(child);
      resolve(code);
    });
  });
  const describeOutput = () => `\nstdout:\n${out}\nstderr:\n${err}`;
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitFor(re, timeoutMs = START_TIMEOUT_MS) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no ${re} within ${timeoutMs} ms${describeOutput()}`));
        }, timeoutMs);
        const check = () => {
          const m = out.match(re);
          if (m) {
            cleanup();
            resolve(m);
          }
        };
        const onExit = (code: number | null) => {
          cleanup();
          reject(new Error(`exited with ${code} before printing ${re}${describeOutput()}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          child.stdout?.off("data", check);
          child.off("exit", onExit);
        };
        child.stdout?.on("data", check);
        child.on("exit", onExit);
        check();
      });
    },
    exited(timeoutMs = START_TIMEOUT_MS) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`still running after ${timeoutMs} ms${describeOutput()}`)),
          timeoutMs,
        );
      });
      return Promise.race([exit, timeout]).finally(() => clearTimeout(timer));
    },
  };
}

/** Runs a command to completion. */
async function run(args: string[], env: Record<string, string>) {
  const c = cli(args, env);
  const code = await c.exited();
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

const LISTENING = /listening on (http:\/\/127\.0\.0\.1:\d+)/;
const NO_STACK = /\n\s+at /;

/** Starts `serve`, checks /healthz, stops it with SIGTERM and expects a clean exit. */
async function serveAnswersAndStops(
  env: Record<string, string>,
  startTimeoutMs = START_TIMEOUT_MS,
) {
  const server = cli(["serve"], { PORT: "0", ...env });
  const [, url] = await server.waitFor(LISTENING, startTimeoutMs);
  const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) });
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ status: "ok" });
  server.child.kill("SIGTERM");
  expect(await server.exited(EXIT_TIMEOUT_MS)).toBe(0);
}

afterEach(() => {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
});

afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

const JWT_SECRET = randomBytes(32).toString("hex");
const MASTER_KEY = randomBytes(32).toString("hex");

describe("tenantrag serve (embedded)", () => {
  // The one start on an empty DATA_DIR: the others copy a migrated one. initdb comes first,
  // which on a loaded machine takes far longer than a start on a migrated database.
  it("on a new DATA_DIR, prints its URL, answers /healthz and exits 0 on SIGTERM", {
    timeout: 150_000,
  }, async () => {
    await serveAnswersAndStops({ DATA_DIR: tempDataDir() }, 120_000);
  });
});

// Which values are refused, and what the message names, is test/unit/config.test.ts's; here,
// only how the binary reports a refused configuration.
describe("tenantrag refuses a bad configuration with one clear line", () => {
  it("PORT=abc: exits non-zero, names PORT on stderr, no stack, never listens", async () => {
    const r = await run(["serve"], { DATA_DIR: tempDataDir(), PORT: "abc" });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("PORT");
    expect(r.stderr).not.toMatch(NO_STACK);
    expect(r.stdout).not.toMatch(LISTENING);
  });
});

describe("tenantrag admin create-platform-admin (embedded)", () => {
  it("creates an admin who can then log in, and refuses the same email twice", {
    timeout: 120_000,
  }, async () => {
    const dataDir = migratedDir();
    const email = `ops-${randomBytes(4).toString("hex")}@example.test`;
    const password = "a long enough password";
    const created = await run(
      ["admin", "create-platform-admin", "--email", email, "--password", password],
      {
        DATA_DIR: dataDir,
      },
    );
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain(`platform admin ${email} created`);

    const again = await run(
      ["admin", "create-platform-admin", "--email", email, "--password", password],
      {
        DATA_DIR: dataDir,
      },
    );
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/already taken/);

    // Start the same installation in-process and log in as the new admin.
    const ctx = await createContext(loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: "silent" }));
    const app = await buildApp(ctx);
    try {
      const login = await app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { email, password },
      });
      expect(login.statusCode, login.body).toBe(200);
      const list = await app.inject({
        url: "/api/admin/customers",
        headers: { authorization: `Bearer ${login.json().token}` },
      });
      expect(list.statusCode, list.body).toBe(200);
    } finally {
      await app.close();
      await ctx.close();
    }
  });

  it("refuses a short password with a clear message and creates nothing", async () => {
    const dataDir = tempDataDir();
    const r = await run(
      ["admin", "create-platform-admin", "--email", "ops@example.test", "--password", "short"],
      {
        DATA_DIR: dataDir,
      },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--password must be at least 10 characters/);
    expect(r.stderr).not.toMatch(NO_STACK);
    expect(r.stdout).not.toContain("created");
  });

  it("refuses an invalid email", async () => {
    const r = await run(
      ["admin", "create-platform-admin", "--email", "not-an-email", "--password", "long enough pw"],
      { DATA_DIR: tempDataDir() },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--email must be an email address/);
  });
});

describe.skipIf(!TEST_DATABASE_URL)("tenantrag against PostgreSQL (server mode)", () => {
  const databases: string[] = [];
  let admin: pg.Client;

  /** A new, empty database on the test server; dropped in afterAll. */
  async function freshDatabase(): Promise<string> {
    const name = `tr_cli_${randomBytes(5).toString("hex")}`;
    await admin.query(`create database ${name}`);
    databases.push(name);
    const url = new URL(TEST_DATABASE_URL as string);
    url.pathname = `/${name}`;
    return url.toString();
  }

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
  });

  afterAll(async () => {
    for (const name of databases) await admin.query(`drop database if exists ${name} with (force)`);
    await admin?.end();
  });

  const serverEnv = (url: string) => ({
    DATABASE_URL: url,
    JWT_SECRET,
    MASTER_KEY,
    AUDIT_SIGNING_KEY: generateSigningKeyPem(),
    DATA_DIR: tempDataDir(),
  });

  it("migrate applies the migrations once, then serve starts on the migrated database", {
    timeout: 90_000,
  }, async () => {
    const url = await freshDatabase();
    const first = await run(["migrate"], serverEnv(url));
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/applied migrations: 1\b/);

    const second = await run(["migrate"], serverEnv(url));
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/up to date/);

    await serveAnswersAndStops(serverEnv(url));
  });

  it("serve refuses an unmigrated database and says to run 'tenantrag migrate'", async () => {
    const url = await freshDatabase();
    const r = await run(["serve"], { PORT: "0", ...serverEnv(url) });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("run 'tenantrag migrate'");
    expect(r.stderr).not.toMatch(NO_STACK);
    expect(r.stdout).not.toMatch(LISTENING);
    // Refusing did not migrate behind the operator's back.
    const check = new pg.Client({ connectionString: url });
    await check.connect();
    try {
      const res = await check.query("select to_regclass('tenants')::text as t");
      expect(res.rows[0].t).toBeNull();
    } finally {
      await check.end();
    }
  });
});
