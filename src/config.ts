import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { z } from "zod";
import { generateSigningKeyPem, loadSigningKey } from "./platform/crypto/signing.js";

/**
 * All settings, parsed once at start from the environment. Nothing else in the code base reads
 * `process.env`. Defaults are embedded mode: no variable is needed to start.
 */

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

const optionalString = z
  .string()
  .transform((v) => (v.trim() === "" ? undefined : v.trim()))
  .optional();

const boolish = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");

const envSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().min(1).default("127.0.0.1"),
  DATA_DIR: z.string().min(1).default("./data"),
  DATABASE_URL: optionalString.pipe(
    z
      .string()
      .regex(/^postgres(ql)?:\/\//, "must be a postgres:// or postgresql:// URL")
      .optional(),
  ),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  REDIS_URL: optionalString.pipe(
    z
      .string()
      .regex(/^rediss?:\/\//, "must be a redis:// or rediss:// URL")
      .optional(),
  ),
  JWT_SECRET: optionalString.pipe(z.string().min(32, "must be at least 32 characters").optional()),
  MASTER_KEY: optionalString.pipe(
    z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex characters (32 bytes)")
      .optional(),
  ),
  ACCESS_TOKEN_TTL_SECONDS: z.coerce
    .number()
    .int()
    .min(60)
    .max(30 * 86400)
    .default(86400),
  REFRESH_TOKEN_TTL_SECONDS: z.coerce
    .number()
    .int()
    .min(3600)
    .max(365 * 86400)
    .default(30 * 86400),
  LOGIN_MAX_FAILURES: z.coerce.number().int().min(1).max(1000).default(5),
  LOGIN_LOCKOUT_SECONDS: z.coerce.number().int().min(1).max(86400).default(900),
  LOGIN_MAX_FAILURES_PER_IP: z.coerce.number().int().min(1).max(100_000).default(20),
  RATE_LIMITS_ENABLED: boolish.default(true),
  TELEMETRY_ENABLED: boolish.default(true),
  QUOTA_HEADERS_ENABLED: boolish.default(true),
  BODY_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .max(1024 * 1024 * 1024)
    .default(1024 * 1024),
  REQUEST_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(60_000),
  CORS_ORIGINS: optionalString,
  TRUST_PROXY: boolish.default(false),
  LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
  BLOB_URL: optionalString.pipe(
    z
      .string()
      .regex(/^s3:\/\/[^/]+/, "must be s3://bucket or s3://bucket/prefix")
      .optional(),
  ),
  S3_ENDPOINT: optionalString.pipe(z.url({ message: "must be a URL" }).optional()),
  S3_REGION: z.string().min(1).default("us-east-1"),
  S3_FORCE_PATH_STYLE: boolish.default(false),
  S3_ACCESS_KEY_ID: optionalString,
  S3_SECRET_ACCESS_KEY: optionalString,
  LANCE_URI: optionalString,
  EMBEDDING_DIMENSIONS: z.coerce.number().int().min(8).max(4096).default(384),
  OPENAI_API_KEY: optionalString,
  OPENAI_BASE_URL: optionalString.pipe(z.url({ message: "must be a URL" }).optional()),
  OPENAI_EMBEDDING_MODEL: z.string().min(1).default("text-embedding-3-small"),
  ALLOW_PRIVATE_URLS: boolish.default(false),
  INGEST_BODY_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .max(1024 * 1024 * 1024)
    .default(10 * 1024 * 1024),
  FETCH_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .max(1024 * 1024 * 1024)
    .default(10 * 1024 * 1024),
  FETCH_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(15_000),
  WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(8),
  EXTRACTION_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(60_000),
  JOB_BACKOFF_MS: z.coerce.number().int().min(1).max(600_000).default(2000),
  JOB_LOCK_MS: z.coerce.number().int().min(500).max(3_600_000).default(30_000),
  JOB_FAIR_SCHEDULING: boolish.default(true),
  JOB_TENANT_CONCURRENCY: z.coerce.number().int().min(1).max(1_000).optional(),
  QUEUE_PREFIX: z
    .string()
    .regex(/^[\w.-]{1,64}$/, "letters, digits, _ . - (at most 64)")
    .default("tenantrag"),
  ANN_THRESHOLD: z.coerce.number().int().min(256).max(100_000_000).default(20_000),
  ANN_EF: z.coerce.number().int().min(10).max(10_000).default(1000),
  ANN_REFINE_FACTOR: z.coerce.number().int().min(1).max(100).default(4),
  ANN_NPROBES: z.coerce.number().int().min(1).max(10_000).default(20),
  ANN_INDEX_TYPE: z.enum(["ivf_flat", "ivf_hnsw_sq", "ivf_pq"]).default("ivf_pq"),
  ANN_ROWS_PER_PARTITION: z.coerce.number().int().min(16).max(100_000_000).optional(),
  VECTOR_SEARCH_CONCURRENCY: z.coerce.number().int().min(1).max(256).optional(),
  LANCE_INDEX_CACHE_MB: z.coerce.number().int().min(1).max(1_000_000).default(1024),
  LANCE_METADATA_CACHE_MB: z.coerce.number().int().min(1).max(1_000_000).default(256),
  TELEMETRY_BATCH_SIZE: z.coerce.number().int().min(1).max(10_000).default(500),
  TELEMETRY_FLUSH_INTERVAL_MS: z.coerce.number().int().min(10).max(600_000).default(1000),
  TELEMETRY_BUFFER_MAX: z.coerce.number().int().min(1).max(10_000_000).default(100_000),
  TELEMETRY_RETRY_BASE_MS: z.coerce.number().int().min(1).max(600_000).default(250),
  TELEMETRY_RETRY_MAX_MS: z.coerce.number().int().min(1).max(3_600_000).default(30_000),
  TELEMETRY_WRITERS: z.coerce.number().int().min(1).max(16).default(2),
  METRICS_TOKEN: optionalString.pipe(
    z.string().min(16, "must be at least 16 characters").optional(),
  ),
  API_CALLS_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(30),
  USAGE_EVENTS_RETENTION_DAYS: z.coerce.number().int().min(1).max(36_500).default(400),
  RETENTION_BATCH_SIZE: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
  AUDIT_SIGNING_KEY: optionalString,
  AUDIT_RETENTION_DAYS: z.coerce.number().int().min(1).max(36_500).default(730),
  /** Only `production` changes anything here (EVENTS_OVERSIZE's default); any value is accepted. */
  NODE_ENV: optionalString,
  EVENTS_OVERSIZE: z.enum(["refuse", "truncate"]).optional(),
  EVENTS_MESSAGE_SENT_SAMPLE_RATE: z.coerce.number().min(0).max(1).default(1),
  CHAT_MAX_MESSAGE_CHARS: z.coerce.number().int().min(1).max(100_000).default(4000),
  EVENTS_RETENTION_DAYS: z.coerce.number().int().min(1).max(36_500).default(400),
  EVENTS_RETENTION: optionalString.pipe(
    z
      .string()
      .regex(
        /^\s*[a-z][a-z0-9_]*\s*:\s*\d{1,5}\s*(,\s*[a-z][a-z0-9_]*\s*:\s*\d{1,5}\s*)*$/,
        "must be name:days,name:days (e.g. message_sent:90,ingest_started:30)",
      )
      .optional(),
  ),
});

export type Env = z.input<typeof envSchema>;

export interface Config {
  mode: "embedded" | "server";
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string | undefined;
  databasePoolSize: number;
  redisUrl: string | undefined;
  jwtSecret: string;
  /** 32-byte key for AES-256-GCM encryption of tenant secrets at rest. */
  masterKey: Buffer;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  loginMaxFailures: number;
  loginLockoutSeconds: number;
  /** Failed logins per client address (IPv6: per /64) inside the same window. */
  loginMaxFailuresPerIp: number;
  /**
   * Per-tenant request rate limits (and their RateLimit headers). Off only for benchmarks (the
   * baseline a limited run is compared with) and trusted deployments behind their own limiter.
   */
  rateLimitsEnabled: boolean;
  /**
   * API-call telemetry (the `api_calls` rows and the HTTP process metrics). Off only to measure
   * its cost (bench/metering/http.ts): with it off, calls are not in usage reports.
   */
  telemetryEnabled: boolean;
  /** The X-Quota-* headers; off only to measure their cost. Quotas are enforced either way. */
  quotaHeadersEnabled: boolean;
  bodyLimitBytes: number;
  /** How long a client may take to send one whole request, body included (408 beyond). */
  requestTimeoutMs: number;
  /** Allowed CORS origins; empty means CORS is off. */
  corsOrigins: string[];
  trustProxy: boolean;
  logLevel: (typeof LOG_LEVELS)[number];
  /** s3://bucket/prefix for raw uploads; unset keeps them under DATA_DIR/blobs. */
  blobUrl: string | undefined;
  s3: {
    endpoint: string | undefined;
    region: string;
    forcePathStyle: boolean;
    /** Both set, or neither (then the AWS SDK's own chain: environment, profile, instance role). */
    credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
  };
  /** Where each tenant's LanceDB lives: `<lanceUri>/<tenantId>`. */
  lanceUri: string;
  /** Vector size of every embedder of this deployment (the OpenAI one is asked for it too). */
  embeddingDimensions: number;
  openai: { apiKey: string | undefined; baseUrl: string | undefined; embeddingModel: string };
  /** Lets URL ingestion fetch loopback and private addresses: tests and local use only. */
  allowPrivateUrls: boolean;
  ingestBodyLimitBytes: number;
  fetchMaxBytes: number;
  fetchTimeoutMs: number;
  workerConcurrency: number;
  jobBackoffMs: number;
  /**
   * How long a running job stays claimed without renewal (renewed while it runs): a job whose
   * worker died runs again about this long later, plus one check interval of as much.
   */
  jobLockMs: number;
  /** Jobs are taken round-robin across tenants (false: one FIFO across all). */
  jobFairScheduling: boolean;
  /**
   * Most jobs of one tenant running at once across all workers; undefined: no cap (embedded)
   * or the BullMQ adapter's window (4).
   */
  jobTenantConcurrency: number | undefined;
  /** Namespace of the keys in Redis (queues, throttles): deployments (or test runs) sharing a Redis differ. */
  queuePrefix: string;
  annThreshold: number;
  /** How long one document's text extraction may take. */
  extractionTimeoutMs: number;
  annSearch: { ef: number; refineFactor: number; nprobes: number };
  /** Undefined rows per partition: LanceDB's √rows partitions. */
  annIndex: { type: "ivf_flat" | "ivf_hnsw_sq" | "ivf_pq"; rowsPerPartition?: number };
  /** Undefined: the CPU count. */
  vectorSearchConcurrency: number | undefined;
  /** LanceDB's index and metadata caches, shared by every open tenant of the process. */
  lanceCacheBytes: { index: number; metadata: number };
  /** The API-call telemetry buffer (modules/usage/telemetry.ts). */
  telemetry: {
    /** Rows per INSERT; a flush starts as soon as this many are buffered. */
    batchSize: number;
    /** The longest a buffered call waits for its flush. */
    flushIntervalMs: number;
    /** Calls held at most (buffered and in flight); past it new calls are dropped and counted. */
    maxBuffered: number;
    /** First retry delay after a failed flush, doubling up to `retryMaxMs`. */
    retryBaseMs: number;
    retryMaxMs: number;
    /** Batches written at once on PostgreSQL (PGlite has one connection: always 1 there). */
    writers: number;
  };
  /** A bearer token that may read GET /metrics besides platform admins; unset: admins only. */
  metricsToken: string | undefined;
  /** Retention (modules/usage/retention.ts): raw API calls and billable events, in days. */
  retention: { apiCallsDays: number; usageEventsDays: number; batchSize: number };
  /** The audit log (modules/audit). */
  audit: {
    /**
     * The Ed25519 private key (PKCS#8 PEM) that signs the hourly digests: AUDIT_SIGNING_KEY,
     * or in embedded mode the one kept in DATA_DIR/secrets.json.
     */
    signingKeyPem: string;
    /** Audit rows older than this are deleted by the `audit.retention` job (default 2 years). */
    retentionDays: number;
  };
  /** The chat assistant (modules/chat). */
  chat: {
    /** Characters (code points) of one chat message, at most; a longer one is refused (413). */
    maxMessageChars: number;
  };
  /** The analytics events feed (modules/events). */
  events: {
    /**
     * What an event whose data is over 2 KB gets: `refuse` (an error, in development and
     * tests: the emitting code is wrong and should fail where its author sees it) or `truncate`
     * (in production: an analytics row never fails the business write it rides with; counted).
     */
    oversize: "refuse" | "truncate";
    /** The share of `message_sent` events kept, 0…1, decided per message id. */
    messageSentSampleRate: number;
    /** Events older than this are deleted by the `events.retention` job (default 400 days). */
    retentionDays: number;
    /** Per event name, days that replace `retentionDays` (EVENTS_RETENTION=name:days,…). */
    retentionByName: Record<string, number>;
  };
}

/** Thrown when the environment is invalid; the message names each bad variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * Parses the environment. In server mode (DATABASE_URL set) JWT_SECRET and MASTER_KEY are
 * required; in embedded mode they are generated once and kept in DATA_DIR/secrets.json (0600).
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
  }
  const e = parsed.data;
  if (Boolean(e.S3_ACCESS_KEY_ID) !== Boolean(e.S3_SECRET_ACCESS_KEY)) {
    throw new ConfigError(
      "invalid configuration:\n  S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together: set both or neither",
    );
  }
  const mode = e.DATABASE_URL ? "server" : "embedded";
  const dataDir = path.resolve(e.DATA_DIR);
  let jwtSecret = e.JWT_SECRET;
  let masterKeyHex = e.MASTER_KEY;
  let signingKey = e.AUDIT_SIGNING_KEY;
  if (mode === "server") {
    const missing = [
      jwtSecret ? null : "JWT_SECRET",
      masterKeyHex ? null : "MASTER_KEY",
      signingKey ? null : "AUDIT_SIGNING_KEY",
    ].filter(Boolean);
    if (missing.length > 0) {
      throw new ConfigError(
        `server mode (DATABASE_URL is set) requires ${missing.join(" and ")}: ` +
          "JWT_SECRET is at least 32 characters, MASTER_KEY is 64 hex characters " +
          "(generate one with: openssl rand -hex 32), AUDIT_SIGNING_KEY is an Ed25519 private " +
          "key, PKCS#8 PEM or base64 DER (generate one with: tenantrag audit keygen)",
      );
    }
  } else {
    const secrets = embeddedSecrets(dataDir);
    jwtSecret ??= secrets.jwtSecret;
    masterKeyHex ??= secrets.masterKey;
    signingKey ??= secrets.auditSigningKey;
  }
  let signingKeyPem: string;
  try {
    signingKeyPem = loadSigningKey(signingKey as string)
      .privateKey.export({ type: "pkcs8", format: "pem" })
      .toString();
  } catch (err) {
    throw new ConfigError(
      `invalid configuration:\n  AUDIT_SIGNING_KEY: ${(err as Error).message} ` +
        "(generate one with: tenantrag audit keygen)",
    );
  }
  return {
    mode,
    port: e.PORT,
    host: e.HOST,
    dataDir,
    databaseUrl: e.DATABASE_URL,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    redisUrl: e.REDIS_URL,
    jwtSecret: jwtSecret as string,
    masterKey: Buffer.from(masterKeyHex as string, "hex"),
    accessTokenTtlSeconds: e.ACCESS_TOKEN_TTL_SECONDS,
    refreshTokenTtlSeconds: e.REFRESH_TOKEN_TTL_SECONDS,
    loginMaxFailures: e.LOGIN_MAX_FAILURES,
    loginLockoutSeconds: e.LOGIN_LOCKOUT_SECONDS,
    loginMaxFailuresPerIp: e.LOGIN_MAX_FAILURES_PER_IP,
    rateLimitsEnabled: e.RATE_LIMITS_ENABLED,
    telemetryEnabled: e.TELEMETRY_ENABLED,
    quotaHeadersEnabled: e.QUOTA_HEADERS_ENABLED,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
    corsOrigins: e.CORS_ORIGINS
      ? e.CORS_ORIGINS.split(",")
          .map((o) => o.trim())
          .filter(Boolean)
      : [],
    trustProxy: e.TRUST_PROXY,
    logLevel: e.LOG_LEVEL,
    blobUrl: e.BLOB_URL,
    s3: {
      endpoint: e.S3_ENDPOINT,
      region: e.S3_REGION,
      forcePathStyle: e.S3_FORCE_PATH_STYLE,
      credentials:
        e.S3_ACCESS_KEY_ID && e.S3_SECRET_ACCESS_KEY
          ? { accessKeyId: e.S3_ACCESS_KEY_ID, secretAccessKey: e.S3_SECRET_ACCESS_KEY }
          : undefined,
    },
    lanceUri: e.LANCE_URI ?? path.join(dataDir, "lance"),
    embeddingDimensions: e.EMBEDDING_DIMENSIONS,
    openai: {
      apiKey: e.OPENAI_API_KEY,
      baseUrl: e.OPENAI_BASE_URL,
      embeddingModel: e.OPENAI_EMBEDDING_MODEL,
    },
    allowPrivateUrls: e.ALLOW_PRIVATE_URLS,
    ingestBodyLimitBytes: e.INGEST_BODY_LIMIT_BYTES,
    fetchMaxBytes: e.FETCH_MAX_BYTES,
    fetchTimeoutMs: e.FETCH_TIMEOUT_MS,
    workerConcurrency: e.WORKER_CONCURRENCY,
    extractionTimeoutMs: e.EXTRACTION_TIMEOUT_MS,
    jobBackoffMs: e.JOB_BACKOFF_MS,
    jobLockMs: e.JOB_LOCK_MS,
    jobFairScheduling: e.JOB_FAIR_SCHEDULING,
    jobTenantConcurrency: e.JOB_TENANT_CONCURRENCY,
    queuePrefix: e.QUEUE_PREFIX,
    annThreshold: e.ANN_THRESHOLD,
    annSearch: { ef: e.ANN_EF, refineFactor: e.ANN_REFINE_FACTOR, nprobes: e.ANN_NPROBES },
    annIndex: {
      type: e.ANN_INDEX_TYPE,
      ...(e.ANN_ROWS_PER_PARTITION ? { rowsPerPartition: e.ANN_ROWS_PER_PARTITION } : {}),
    },
    vectorSearchConcurrency: e.VECTOR_SEARCH_CONCURRENCY,
    lanceCacheBytes: {
      index: e.LANCE_INDEX_CACHE_MB * 1024 * 1024,
      metadata: e.LANCE_METADATA_CACHE_MB * 1024 * 1024,
    },
    telemetry: {
      batchSize: e.TELEMETRY_BATCH_SIZE,
      flushIntervalMs: e.TELEMETRY_FLUSH_INTERVAL_MS,
      maxBuffered: Math.max(e.TELEMETRY_BUFFER_MAX, e.TELEMETRY_BATCH_SIZE),
      retryBaseMs: e.TELEMETRY_RETRY_BASE_MS,
      retryMaxMs: Math.max(e.TELEMETRY_RETRY_MAX_MS, e.TELEMETRY_RETRY_BASE_MS),
      writers: e.TELEMETRY_WRITERS,
    },
    metricsToken: e.METRICS_TOKEN,
    retention: {
      apiCallsDays: e.API_CALLS_RETENTION_DAYS,
      usageEventsDays: e.USAGE_EVENTS_RETENTION_DAYS,
      batchSize: e.RETENTION_BATCH_SIZE,
    },
    audit: { signingKeyPem, retentionDays: e.AUDIT_RETENTION_DAYS },
    chat: { maxMessageChars: e.CHAT_MAX_MESSAGE_CHARS },
    events: {
      oversize: e.EVENTS_OVERSIZE ?? (e.NODE_ENV === "production" ? "truncate" : "refuse"),
      messageSentSampleRate: e.EVENTS_MESSAGE_SENT_SAMPLE_RATE,
      retentionDays: e.EVENTS_RETENTION_DAYS,
      retentionByName: parseRetentionByName(e.EVENTS_RETENTION),
    },
  };
}

/** `name:days,name:days` (already checked by the schema's pattern) as a map; days >= 1. */
function parseRetentionByName(value: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of value ? value.split(",") : []) {
    const [name, days] = part.split(":").map((s) => s.trim()) as [string, string];
    const n = Number(days);
    if (n < 1)
      throw new ConfigError(
        `invalid configuration:\n  EVENTS_RETENTION: ${name} keeps events at least 1 day`,
      );
    if (name in out)
      throw new ConfigError(`invalid configuration:\n  EVENTS_RETENTION: ${name} is named twice`);
    out[name] = n;
  }
  return out;
}

const secretsSchema = z.object({
  jwtSecret: z.string().min(32),
  masterKey: z.string().regex(/^[0-9a-f]{64}$/),
  /** PKCS#8 PEM; files written before the audit log lack it, and get one added (below). */
  auditSigningKey: z.string().min(1).optional(),
});
type Secrets = Required<z.infer<typeof secretsSchema>>;

/**
 * Embedded mode keeps its secrets beside its data so that tokens and encrypted tenant keys
 * stay valid across restarts. The file is created once, readable by its owner only: written
 * whole to a temporary name, then linked into place, so two processes starting together on an
 * empty DATA_DIR agree on one set of secrets and neither reads a half-written file.
 */
function embeddedSecrets(dataDir: string): Secrets {
  const file = path.join(dataDir, "secrets.json");
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true });
    const secrets = {
      jwtSecret: randomBytes(48).toString("base64url"),
      masterKey: randomBytes(32).toString("hex"),
      auditSigningKey: generateSigningKeyPem(),
    };
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600, flag: "wx" });
    chmodSync(tmp, 0o600);
    try {
      linkSync(tmp, file);
      return secrets;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      // Another process won the race: use its secrets.
    } finally {
      unlinkSync(tmp);
    }
  }
  const secrets = readSecrets(file);
  if (secrets.auditSigningKey) return secrets as Secrets;
  return addSigningKey(file);
}

function readSecrets(file: string): z.infer<typeof secretsSchema> {
  let content: unknown;
  try {
    content = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    content = undefined;
  }
  const parsed = secretsSchema.safeParse(content);
  if (!parsed.success) {
    throw new ConfigError(`${file} is not a valid secrets file; restore it or remove the data`);
  }
  return parsed.data;
}

const LOCK_WAIT_MS = 10_000;

/**
 * A secrets file written before the audit log has no signing key: one is added, keeping the
 * other secrets byte for byte. Under a lock file (created exclusively), so two processes
 * upgrading the file at once add one key between them; the file is replaced by a rename, so a
 * reader never sees half of it. A lock left by a crashed process is taken over after 10 s.
 */
function addSigningKey(file: string): Secrets {
  const lock = `${file}.lock`;
  const started = Date.now();
  for (;;) {
    let fd: number | undefined;
    try {
      fd = openSync(lock, "wx", 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    if (fd !== undefined) {
      try {
        const current = readSecrets(file);
        if (current.auditSigningKey) return current as Secrets;
        const secrets = { ...current, auditSigningKey: generateSigningKeyPem() };
        const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
        writeFileSync(tmp, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600, flag: "wx" });
        chmodSync(tmp, 0o600);
        renameSync(tmp, file);
        return secrets;
      } finally {
        closeSync(fd);
        unlinkSync(lock);
      }
    }
    const again = readSecrets(file);
    if (again.auditSigningKey) return again as Secrets;
    if (Date.now() - started > LOCK_WAIT_MS) {
      // The holder died: take its lock over once.
      rmSync(lock, { force: true });
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
  }
}
