import { Redis } from "ioredis";
import pino, { type Logger } from "pino";
import type { Config } from "./config.js";
import { createAuthService, createTokenSigner } from "./modules/auth/index.js";
import { createTenantsService } from "./modules/tenants/index.js";
import { type Db, migrate, openDb, pendingMigrations } from "./platform/db/index.js";
import { createFailureThrottle } from "./platform/ratelimit/index.js";

/**
 * The composition root: the only place that chooses adapters. Everything else receives its
 * dependencies from here.
 */
export interface AppContext {
  config: Config;
  logger: Logger;
  db: Db;
  redis: Redis | undefined;
  tenants: ReturnType<typeof createTenantsService>;
  auth: ReturnType<typeof createAuthService>;
  /** Closes connections in reverse order of opening. Idempotent. */
  close(): Promise<void>;
}

export interface ContextOptions {
  /** A database opened by the caller (tests); it is closed with the context. */
  db?: Db;
  logger?: Logger;
  /**
   * `auto` applies pending migrations (embedded mode, tests); `check` refuses to start when
   * some are pending (server mode: migrations are an explicit `tenantrag migrate`).
   */
  migrations?: "auto" | "check" | "skip";
}

export class StartupError extends Error {
  override name = "StartupError";
}

export async function createContext(
  config: Config,
  opts: ContextOptions = {},
): Promise<AppContext> {
  const logger =
    opts.logger ??
    pino({
      level: config.logLevel,
      // Credentials never reach the logs, whatever a future serializer includes.
      redact: [
        "req.headers.authorization",
        'req.headers["x-api-key"]',
        "*.password",
        "*.refreshToken",
      ],
    });
  const db = opts.db ?? (await openDb(config));
  const redis = config.redisUrl
    ? new Redis(config.redisUrl, {
        lazyConnect: false,
        maxRetriesPerRequest: 3,
        enableOfflineQueue: true,
      })
    : undefined;
  redis?.on("error", (err) => logger.warn({ err }, "redis connection error"));
  const closers: Array<() => Promise<unknown>> = [() => db.close()];
  if (redis) closers.push(() => redis.quit());

  const close = async () => {
    for (const c of closers.splice(0).reverse()) await c();
  };

  try {
    const mode = opts.migrations ?? (config.mode === "embedded" ? "auto" : "check");
    if (mode === "auto") {
      const applied = await migrate(db);
      if (applied.length > 0) logger.info({ applied }, "database migrated");
    } else if (mode === "check") {
      const pending = await pendingMigrations(db);
      if (pending.length > 0) {
        throw new StartupError(
          `the database has ${pending.length} pending migration(s) (${pending.join(", ")}); run 'tenantrag migrate' first`,
        );
      }
    }
  } catch (err) {
    await close();
    throw err;
  }

  const tokens = createTokenSigner({
    secret: config.jwtSecret,
    ttlSeconds: config.accessTokenTtlSeconds,
  });
  const tenants = createTenantsService({ db, masterKey: config.masterKey });
  const loginThrottle = createFailureThrottle({
    maxFailures: config.loginMaxFailures,
    windowSeconds: config.loginLockoutSeconds,
    keyPrefix: "tenantrag:login-fail",
    ...(redis ? { redis } : {}),
  });
  const auth = createAuthService({
    db,
    tokens,
    tenants,
    loginThrottle,
    refreshTokenTtlSeconds: config.refreshTokenTtlSeconds,
  });
  return { config, logger, db, redis, tenants, auth, close };
}
