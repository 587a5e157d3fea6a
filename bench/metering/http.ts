/**
 * Requests/s of an authenticated read route (GET /api/documents, by API key) with the metering
 * features on against the same route with them off, in one run, driven over real HTTP by
 * autocannon in a separate process against `tenantrag serve` in another.
 *
 * The features are switched by configuration (SWITCHES below): the baseline server runs with
 * every switch off, the test server with every switch on: rate limits (RATE_LIMITS_ENABLED),
 * API-call telemetry (TELEMETRY_ENABLED: a buffered `api_calls` row per call) and the quota
 * headers (QUOTA_HEADERS_ENABLED). Quotas themselves are enforced in both.
 *
 * Embedded mode (PGlite in a temporary DATA_DIR): one server at a time (PGlite is one process's
 * database), alternating baseline and test for `rounds` rounds, so that drift of the machine
 * falls on both; the medians are compared. The tenant's limits are raised far above the load
 * (its plan's ceilings too), so the test measures the cost of counting, not of refusing: a run
 * with any non-2xx answer fails.
 *
 *   npx tsx bench/metering/http.ts [--connections=10] [--duration=10] [--rounds=3] [--documents=20]
 *
 * `run()` returns the figures (the bench/metering.ts driver prints them with the other sections).
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import pino from "pino";
import { loadConfig } from "../../src/config.js";
import { createContext } from "../../src/context.js";
import { buildApp } from "../../src/http/app.js";
import { kysely } from "../../src/platform/db/index.js";
import { tempDir } from "../lib/backends.js";
import { intOption, printFooter, printHeader, table } from "../lib/report.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** A feature the comparison turns off in the baseline and on in the test run. */
export interface FeatureSwitch {
  env: string;
  on: string;
  off: string;
}

export const SWITCHES: Record<string, FeatureSwitch> = {
  rateLimits: { env: "RATE_LIMITS_ENABLED", on: "true", off: "false" },
  telemetry: { env: "TELEMETRY_ENABLED", on: "true", off: "false" },
  quotaHeaders: { env: "QUOTA_HEADERS_ENABLED", on: "true", off: "false" },
};

const switchesEnv = (state: "on" | "off") =>
  Object.fromEntries(Object.values(SWITCHES).map((s) => [s.env, s[state]]));

interface Round {
  requestsPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  requests: number;
  non2xx: number;
  errors: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

export async function run(): Promise<Record<string, unknown>> {
  const opts = {
    connections: intOption("connections", 10),
    duration: intOption("duration", 10),
    rounds: intOption("rounds", 3),
    documents: intOption("documents", 20),
  };
  const data = tempDir("http");
  try {
    const apiKey = await seed(data.dir, opts.documents);
    const route = "/api/documents";
    const results: Record<"baseline" | "test", Round[]> = { baseline: [], test: [] };
    for (let i = 0; i < opts.rounds; i++) {
      for (const arm of ["baseline", "test"] as const) {
        const state = arm === "baseline" ? "off" : "on";
        const server = await serve(data.dir, switchesEnv(state));
        try {
          await checkHeaders(server.url + route, apiKey, state);
          // A short warm-up (JIT, caches, the tenant's limits read once), then the measurement.
          await autocannon(server.url + route, apiKey, {
            connections: opts.connections,
            duration: 2,
          });
          const round = await autocannon(server.url + route, apiKey, opts);
          if (round.non2xx > 0 || round.errors > 0) {
            throw new Error(`${arm}: ${round.non2xx} non-2xx answers, ${round.errors} errors`);
          }
          results[arm].push(round);
        } finally {
          await server.stop();
        }
      }
    }
    const summary = (rounds: Round[]) => ({
      requestsPerSecond: median(rounds.map((r) => r.requestsPerSecond)),
      latencyP50Ms: median(rounds.map((r) => r.latencyP50Ms)),
      latencyP99Ms: median(rounds.map((r) => r.latencyP99Ms)),
      rounds: rounds.map((r) => r.requestsPerSecond),
    });
    const baseline = summary(results.baseline);
    const test = summary(results.test);
    return {
      section: "http",
      route: `GET ${route} (API key, ${opts.documents} documents)`,
      mode: "embedded (PGlite)",
      switches: Object.keys(SWITCHES),
      ...opts,
      baseline,
      test,
      ratio: Number((test.requestsPerSecond / baseline.requestsPerSecond).toFixed(3)),
      target: 0.9,
    };
  } finally {
    data.remove();
  }
}

/** Migrates DATA_DIR, signs a tenant up with limits far above the load, adds documents. */
async function seed(dataDir: string, documents: number): Promise<string> {
  const config = loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: "silent" });
  const ctx = await createContext(config, { logger: pino({ level: "silent" }) });
  try {
    const app = await buildApp(ctx);
    // The plans cap tenants' limits; the bench's own database gets ceilings above any load.
    await kysely(ctx.db)
      .updateTable("plans")
      .set({ rate_limit_rpm: 1_000_000, rate_limit_per_day: 100_000_000 })
      .execute();
    const signup = await app.inject({
      method: "POST",
      url: "/api/auth/signup",
      payload: { email: "bench@example.test", password: "bench-password-1", companyName: "Bench" },
    });
    if (signup.statusCode !== 201) throw new Error(`signup: ${signup.body}`);
    const { token, apiKey } = signup.json();
    const auth = { authorization: `Bearer ${token}` };
    const put = await app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: auth,
      payload: { rateLimitPerMinute: 1_000_000, rateLimitPerDay: 100_000_000 },
    });
    if (put.statusCode !== 200) throw new Error(`config: ${put.body}`);
    for (let i = 0; i < documents; i++) {
      const doc = await app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: auth,
        payload: { title: `Document ${i}`, content: `The content of document number ${i}.` },
      });
      if (doc.statusCode !== 202) throw new Error(`ingest: ${doc.body}`);
    }
    await app.close();
    return apiKey as string;
  } finally {
    await ctx.close();
  }
}

/** `tenantrag serve --no-worker` in a child process (tsx, as `npm run dev` runs it). */
async function serve(
  dataDir: string,
  env: Record<string, string>,
): Promise<{ url: string; stop(): Promise<void> }> {
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", path.join(ROOT, "src/main.ts"), "serve", "--no-worker"],
    {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "",
        DATA_DIR: dataDir,
        PORT: "0",
        LOG_LEVEL: "warn",
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
      if (m) resolve(m[1] as string);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    exited.then((code) => reject(new Error(`serve exited (${code}):\n${out}`)));
  });
  return {
    url,
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** The switch really took: RateLimit headers on the test server, none on the baseline. */
async function checkHeaders(url: string, apiKey: string, state: "on" | "off"): Promise<void> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${apiKey}` } });
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`${url}: ${res.status}`);
  const has = res.headers.has("ratelimit");
  if (has !== (state === "on")) throw new Error(`rate limits ${state}, RateLimit header: ${has}`);
}

/** autocannon's CLI in its own process, its JSON report parsed. */
async function autocannon(
  url: string,
  apiKey: string,
  o: { connections: number; duration: number },
): Promise<Round> {
  const bin = path.join(ROOT, "node_modules/.bin/autocannon");
  const child = spawn(
    bin,
    [
      "-j",
      "-n",
      "-c",
      String(o.connections),
      "-d",
      String(o.duration),
      "-H",
      `authorization=Bearer ${apiKey}`,
      url,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  if (code !== 0) throw new Error(`autocannon exited ${code}: ${err}`);
  const r = JSON.parse(out) as {
    requests: { average: number; total: number };
    latency: { p50: number; p99: number };
    non2xx: number;
    errors: number;
  };
  return {
    requestsPerSecond: r.requests.average,
    latencyP50Ms: r.latency.p50,
    latencyP99Ms: r.latency.p99,
    requests: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  printHeader("HTTP throughput: metering features on vs off", {
    connections: intOption("connections", 10),
    duration: intOption("duration", 10),
    rounds: intOption("rounds", 3),
  });
  const r = await run();
  const b = r.baseline as { requestsPerSecond: number; latencyP50Ms: number; latencyP99Ms: number };
  const t = r.test as typeof b;
  table(
    ["run", "switches", "req/s (median)", "p50 ms", "p99 ms"],
    [
      ["baseline", "all off", b.requestsPerSecond, b.latencyP50Ms, b.latencyP99Ms],
      ["test", "all on", t.requestsPerSecond, t.latencyP50Ms, t.latencyP99Ms],
    ],
  );
  process.stdout.write(`\nratio test/baseline: ${r.ratio} (target ≥ ${r.target})\n`);
  process.stdout.write(`${JSON.stringify(r)}\n`);
  printFooter();
}
