import { randomBytes } from "node:crypto";
import type { FastifyInstance } from "fastify";
import pino from "pino";
import { loadConfig } from "../../src/config.js";
import { type AppContext, createContext } from "../../src/context.js";
import { buildApp } from "../../src/http/app.js";
import { generateSigningKeyPem } from "../../src/platform/crypto/signing.js";
import {
  BENCH_DATABASE_URL,
  BENCH_REDIS_URL,
  dropQueuePrefix,
  openPostgres,
  tempDir,
  uniqueQueuePrefix,
} from "./backends.js";

export type BenchMode = "embedded" | "server";

export interface BenchApp {
  ctx: AppContext;
  app: FastifyInstance;
  /** The app's DATA_DIR (LanceDB under `lance/`), removed by dispose(). */
  dataDir: string;
  dispose(): Promise<void>;
}

const silent = pino({ level: "silent" });

/**
 * The whole app with its workers in this process, as `npm start` builds it. Embedded: PGlite
 * in a temporary DATA_DIR, migrated, and the embedded queue. Server: a private schema of
 * TEST_DATABASE_URL (migrated by `openPostgres`) and a private BullMQ prefix on TEST_REDIS_URL,
 * both dropped by dispose(). `env` adds settings (worker concurrency, scheduling, …).
 */
export async function bootBenchApp(
  mode: BenchMode,
  label: string,
  env: Record<string, string> = {},
): Promise<BenchApp> {
  const data = tempDir(label);
  const base = { DATA_DIR: data.dir, LOG_LEVEL: "silent" as const, ...env };
  if (mode === "embedded") {
    const ctx = await createContext(loadConfig(base), { logger: silent });
    const app = await buildApp(ctx);
    await app.ready();
    return {
      ctx,
      app,
      dataDir: data.dir,
      async dispose() {
        await app.close();
        await ctx.close();
        data.remove();
      },
    };
  }
  if (!BENCH_DATABASE_URL || !BENCH_REDIS_URL) {
    throw new Error("server mode needs TEST_DATABASE_URL and TEST_REDIS_URL");
  }
  const pg = await openPostgres(BENCH_DATABASE_URL);
  const redisUrl = BENCH_REDIS_URL;
  const prefix = uniqueQueuePrefix(label);
  const config = loadConfig({
    ...base,
    DATABASE_URL: BENCH_DATABASE_URL,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: prefix,
    JWT_SECRET: randomBytes(32).toString("hex"),
    MASTER_KEY: randomBytes(32).toString("hex"),
    AUDIT_SIGNING_KEY: generateSigningKeyPem(),
  });
  const ctx = await createContext(config, { db: pg.db, logger: silent, migrations: "skip" });
  const app = await buildApp(ctx);
  await app.ready();
  return {
    ctx,
    app,
    dataDir: data.dir,
    async dispose() {
      await app.close();
      await ctx.close(); // closes pg.db too
      await pg.dispose();
      await dropQueuePrefix(redisUrl, prefix);
      data.remove();
    },
  };
}
