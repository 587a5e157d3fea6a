import { availableParallelism } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import pino, { type Logger } from "pino";
import type { Config } from "./config.js";
import {
  type AlertEvaluator,
  type AlertsService,
  alertsJobs,
  alertsJobTypes,
  alertsSchedules,
  createAlertEvaluator,
  createAlertsService,
} from "./modules/alerts/index.js";
import {
  type AuditLog,
  type AuditTrail,
  auditJobs,
  auditJobTypes,
  auditSchedules,
  createAuditLog,
  createAuditTrail,
} from "./modules/audit/index.js";
import { createAuthService, createTokenSigner } from "./modules/auth/index.js";
import { type ChatService, createChatService } from "./modules/chat/index.js";
import {
  createEventsFeed,
  createEventsLog,
  createEventsRetention,
  type EventsFeed,
  type EventsLog,
  eventsJobs,
  eventsJobTypes,
  eventsSchedules,
} from "./modules/events/index.js";
import {
  createDocumentsService,
  createIdempotency,
  createIngestionPipeline,
  createIngestionRecovery,
  createIngestionService,
  createThreadExtractor,
  createUploadsService,
  type IngestionRecovery,
  ingestionJobs,
  ingestionJobTypes,
  ingestionSchedules,
} from "./modules/ingestion/index.js";
import { createKnowledgeService } from "./modules/knowledge/index.js";
import {
  createQuotasService,
  quotaJobs,
  quotaJobTypes,
  quotaSchedules,
} from "./modules/quotas/index.js";
import { createSearchService, searchJobs, searchJobTypes } from "./modules/search/index.js";
import { createTenantsService } from "./modules/tenants/index.js";
import {
  createExports,
  createReconciliation,
  createReports,
  createRetention,
  createRollups,
  createTelemetry,
  createUsageService,
  createUsageSignals,
  type Exports,
  type Reconciliation,
  type Reports,
  type RerateHooks,
  type Retention,
  type Rollups,
  reconciliationJobs,
  reconciliationJobTypes,
  reconciliationSchedules,
  rollupJobs,
  rollupJobTypes,
  rollupSchedules,
  type Telemetry,
  telemetryJobs,
  telemetryJobTypes,
  telemetrySchedules,
  type UsageService,
  usageJobs,
  usageJobTypes,
  usageSchedules,
} from "./modules/usage/index.js";
import type { BlobStore } from "./platform/blobs/blobs.js";
import { createLocalBlobStore } from "./platform/blobs/local.js";
import { type Clock, systemClock } from "./platform/clock.js";
import { loadSigningKey } from "./platform/crypto/signing.js";
import { type Db, migrate, openDb, pendingMigrations } from "./platform/db/index.js";
import type { Embedder } from "./platform/embeddings/embedder.js";
import { createLocalEmbedder } from "./platform/embeddings/local.js";
import { createOpenAIEmbedder } from "./platform/embeddings/openai.js";
import { withQueryCache } from "./platform/embeddings/query-cache.js";
import { type ChatModel, createExtractiveModel } from "./platform/llm/index.js";
import { createMetrics, type Metrics } from "./platform/metrics/index.js";
import { createBullmqQueue } from "./platform/queue/bullmq.js";
import {
  catalogHandlers,
  type JobSchedule,
  type RegistryOf,
  registryOf,
  typeOptionsOf,
} from "./platform/queue/catalog.js";
import { createEmbeddedQueue } from "./platform/queue/embedded.js";
import { createJobMetrics, type JobMetrics } from "./platform/queue/metrics.js";
import type { JobQueue } from "./platform/queue/queue.js";
import {
  createFailureThrottle,
  createLimiterFactory,
  createRequestLimiter,
  type RequestLimiter,
} from "./platform/ratelimit/index.js";
import {
  createInProcessTenantLock,
  createLanceVectorIndex,
  createPgTenantLock,
} from "./platform/vectors/index.js";
import type { VectorIndex } from "./platform/vectors/vectors.js";

/**
 * The composition root: the only place that chooses adapters. Everything else receives its
 * dependencies from here.
 */
export interface AppContext {
  config: Config;
  logger: Logger;
  /** The time services decide with (platform/clock.ts). */
  clock: Clock;
  db: Db;
  redis: Redis | undefined;
  tenants: ReturnType<typeof createTenantsService>;
  /**
   * The tamper-evident audit log: `record(ctx, entry, { tx })` appends a row to the tenant's
   * hash chain in the caller's transaction, as its last statement (modules/audit).
   */
  audit: AuditLog;
  /** The audit log's reads, verification, export, hourly signed digests and retention. */
  auditTrail: AuditTrail;
  /**
   * The analytics events feed: `log(ctx, name, data, { tx })` writes a business fact in the
   * caller's transaction; `logOutside` a refusal whose transaction rolls back (modules/events).
   */
  events: EventsLog;
  /** The feed's pages and analytics. */
  eventsFeed: EventsFeed;
  auth: ReturnType<typeof createAuthService>;
  blobs: BlobStore;
  queue: JobQueue<AppJobs>;
  /** Runs of background jobs in this process, per job name. */
  jobMetrics: JobMetrics;
  /** This process's Prometheus registry (platform/metrics). */
  metrics: Metrics;
  /** The API-call telemetry buffer: the HTTP layer records every call of a known tenant. */
  telemetry: Telemetry;
  /** Deletes raw API calls and billable events past retention; run by `usage.retention`. */
  retention: Retention;
  /**
   * Per-tenant request limits, keyed by tenant and route group (the HTTP rate-limit hook);
   * undefined when RATE_LIMITS_ENABLED is off.
   */
  rateLimits: RequestLimiter | undefined;
  vectors: VectorIndex;
  embedders: { local: Embedder; openai?: Embedder };
  ingestion: ReturnType<typeof createIngestionService>;
  documents: ReturnType<typeof createDocumentsService>;
  search: ReturnType<typeof createSearchService>;
  knowledge: ReturnType<typeof createKnowledgeService>;
  /** The conversation service: chat turns, sessions, the assistant's settings (modules/chat). */
  chat: ChatService;
  /**
   * The billable usage ledger, the price book and re-rating; with the roll-ups (run by the
   * `usage.rollup` schedule), reports and exports.
   */
  usage: UsageService & { rollups: Rollups; reports: Reports; exports: Exports };
  /** Quota reservations, plans and overrides (modules/quotas). */
  quotas: ReturnType<typeof createQuotasService>;
  /** Repairs ingestion work a crash left behind; run by the `ingest.repair` schedule. */
  recovery: IngestionRecovery;
  uploads: ReturnType<typeof createUploadsService>;
  withIdempotency: ReturnType<typeof createIdempotency>;
  alerts: AlertsService;
  /** The alert rules' pass over all tenants; run by the `alerts.evaluate` schedule. */
  alertEvaluator: AlertEvaluator;
  /** Usage reconciliation (events vs roll-ups vs business rows); daily by `usage.reconcile`. */
  reconciliation: Reconciliation;
  /** Starts processing background jobs in this process (serve without --no-worker, worker). */
  startWorkers(): void;
  /** Closes connections in reverse order of opening. Idempotent. */
  close(): Promise<void>;
}

export interface ContextOptions {
  /** A database opened by the caller (tests); it is closed with the context. */
  db?: Db;
  logger?: Logger;
  /** The real clock unless given (tests move a controllable one). */
  clock?: Clock;
  /**
   * Told, in a re-rating run's transaction, of the hours whose events it changed (roll-ups
   * recompute them there). Document costs are wired here already.
   */
  onRerated?: RerateHooks["onRerated"];
  /**
   * `auto` applies pending migrations (embedded mode, tests); `check` refuses to start when
   * some are pending (server mode: migrations are an explicit `tenantrag migrate`).
   */
  migrations?: "auto" | "check" | "skip";
  /** Node's process metrics (CPU, memory, event loop) on the registry: on for `serve`/`worker`. */
  defaultMetrics?: boolean;
  /**
   * Request limits for every tenant instead of each tenant's configuration. Tests that are not
   * about rate limits give their tenants generous ones this way (the limiter still runs).
   */
  tenantRateLimits?: { perMinute: number; perDay: number };
  /** The answering model instead of the configured one (tests: a model that fails on cue). */
  chatModel?: ChatModel;
}

/** The windows of tenants' request limits, shortest first (RateLimit-Policy names them). */
export const TENANT_RATE_POLICIES = [
  { name: "minute", windowSeconds: 60 },
  { name: "day", windowSeconds: 86_400 },
] as const;

/** Every module's job types: the queue's registry (a name two modules declare fails at work). */
const appJobTypes = {
  ...ingestionJobTypes,
  ...searchJobTypes,
  ...usageJobTypes,
  ...telemetryJobTypes,
  ...alertsJobTypes,
  ...reconciliationJobTypes,
  ...quotaJobTypes,
  ...rollupJobTypes,
  ...auditJobTypes,
  ...eventsJobTypes,
};
export type AppJobs = RegistryOf<typeof appJobTypes>;

/** Every module's repeatable jobs, declared by worker processes. */
const appSchedules: JobSchedule[] = [
  ...ingestionSchedules,
  ...usageSchedules,
  ...telemetrySchedules,
  ...alertsSchedules,
  ...reconciliationSchedules,
  ...quotaSchedules,
  ...rollupSchedules,
  ...auditSchedules,
  ...eventsSchedules,
];

export class StartupError extends Error {
  override name = "StartupError";
}

export async function createContext(
  config: Config,
  opts: ContextOptions = {},
): Promise<AppContext> {
  // Anything recorded before this moment on a single-process database was left by a dead process.
  const startedAt = Date.now();
  const metrics = createMetrics({ defaultMetrics: opts.defaultMetrics ?? false });
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
  const clock = opts.clock ?? systemClock;
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
    clock,
  });
  const audit = createAuditLog({ db, clock });
  const events = createEventsLog({
    db,
    clock,
    logger,
    metrics,
    oversize: config.events.oversize,
    messageSentSampleRate: config.events.messageSentSampleRate,
  });
  // Runs just before the database closes (closers run in reverse): the events written outside
  // a transaction (refusals) land first.
  closers.push(() => events.drain());
  let eventsRetention: ReturnType<typeof createEventsRetention>;
  try {
    eventsRetention = createEventsRetention({
      db,
      clock,
      logger,
      policy: {
        defaultDays: config.events.retentionDays,
        byName: config.events.retentionByName,
        batchSize: config.retention.batchSize,
      },
    });
  } catch (err) {
    await close();
    throw new StartupError((err as Error).message);
  }
  const tenants = createTenantsService({ db, masterKey: config.masterKey, clock, audit });
  const auditTrail = createAuditTrail({
    db,
    clock,
    audit,
    signingKey: loadSigningKey(config.audit.signingKeyPem),
    retentionDays: config.audit.retentionDays,
    logger,
  });
  // Every limit of the process counts through one factory: memory, or Redis with a per-process
  // insurance while Redis is down. Keys go under the queue prefix: deployments (and test runs)
  // sharing one Redis keep apart.
  const limiters = createLimiterFactory({ redis, metrics, logger });
  const loginThrottle = createFailureThrottle(limiters, {
    name: "login_email",
    maxFailures: config.loginMaxFailures,
    windowSeconds: config.loginLockoutSeconds,
    keyPrefix: `${config.queuePrefix}:login-fail`,
  });
  const loginAddressThrottle = createFailureThrottle(limiters, {
    name: "login_address",
    maxFailures: config.loginMaxFailuresPerIp,
    windowSeconds: config.loginLockoutSeconds,
    keyPrefix: `${config.queuePrefix}:login-fail-ip`,
  });
  const fixedLimits = opts.tenantRateLimits;
  const rateLimits = config.rateLimitsEnabled
    ? createRequestLimiter(limiters, {
        name: "requests",
        keyPrefix: `${config.queuePrefix}:rl`,
        policies: TENANT_RATE_POLICIES,
        async limitsOf(tenantId) {
          const l = fixedLimits ?? (await tenants.rateLimits(tenantId));
          return { minute: l.perMinute, day: l.perDay };
        },
      })
    : undefined;
  if (rateLimits) tenants.onConfigChange((tenantId) => rateLimits.invalidate(tenantId));
  const auth = createAuthService({
    db,
    tokens,
    tenants,
    loginThrottle,
    loginAddressThrottle,
    refreshTokenTtlSeconds: config.refreshTokenTtlSeconds,
    clock,
    audit,
  });

  const blobs = await openBlobStore(config);
  closers.push(() => blobs.close());
  const registry = registryOf(appJobTypes);
  const typeOptions = typeOptionsOf(appJobTypes);
  const queue: JobQueue<AppJobs> = config.redisUrl
    ? createBullmqQueue({
        db,
        registry,
        typeOptions,
        logger,
        redisUrl: config.redisUrl,
        prefix: config.queuePrefix,
        backoffBaseMs: config.jobBackoffMs,
        lockDurationMs: config.jobLockMs,
        stalledIntervalMs: config.jobLockMs,
        fair: config.jobFairScheduling,
        ...(config.jobTenantConcurrency ? { tenantConcurrency: config.jobTenantConcurrency } : {}),
      })
    : createEmbeddedQueue({
        db,
        registry,
        typeOptions,
        logger,
        backoffBaseMs: config.jobBackoffMs,
        leaseMs: config.jobLockMs,
        // PGlite opens its files for one process only: a job running at start is orphaned.
        singleProcess: db.kind === "pglite",
        fair: config.jobFairScheduling,
        tenantConcurrency: config.jobTenantConcurrency ?? 0,
      });
  // One extraction thread per concurrent job, up to one per CPU (extraction is CPU work; the
  // rest of a job mostly waits on the database and the tenant's vector write); none start
  // until a job extracts. Closed after the queue, whose running jobs may still be extracting.
  const extractor = createThreadExtractor({
    threads: Math.min(config.workerConcurrency, availableParallelism()),
    timeoutMs: config.extractionTimeoutMs,
  });
  closers.push(() => extractor.close());
  // Closed first (pushed last): running jobs finish or are handed back before stores close.
  const vectors = createLanceVectorIndex({
    uri: config.lanceUri,
    dimensions: config.embeddingDimensions,
    // PGlite has one connection: holding it in a transaction for a whole LanceDB write would
    // stall every request. Embedded mode is one process, so an in-process lock is exact there.
    lock: db.kind === "postgres" ? createPgTenantLock(db) : createInProcessTenantLock(),
    annThreshold: config.annThreshold,
    annSearch: config.annSearch,
    annIndex: config.annIndex,
    searchConcurrency: config.vectorSearchConcurrency,
    cacheBytes: config.lanceCacheBytes,
    // Index builds and clean-ups run as background jobs, never on a request.
    async requestOptimize(tenantId, { delayMs }) {
      await queue.enqueue("index.optimize", { tenantId }, { priority: -10, delayMs });
    },
    logger,
  });
  closers.push(() => vectors.close());
  closers.push(() => queue.close());
  const embedders = {
    // Searches embed one query each: repeated queries skip the embedding (deterministic model).
    local: withQueryCache(createLocalEmbedder({ dimensions: config.embeddingDimensions })),
    ...(config.openai.apiKey || config.openai.baseUrl
      ? {
          openai: createOpenAIEmbedder({
            ...(config.openai.apiKey ? { apiKey: config.openai.apiKey } : {}),
            ...(config.openai.baseUrl ? { baseURL: config.openai.baseUrl } : {}),
            defaultModel: config.openai.embeddingModel,
            dimensions: config.embeddingDimensions,
          }),
        }
      : {}),
  };
  // Document costs follow the ledger through re-rating (`documents` is made below; the hook
  // runs only in a re-rating run, long after).
  // Roll-ups follow it too: the hours a run changed are recomputed in the run's transaction.
  const ledger = createUsageService({
    db,
    clock,
    logger,
    audit,
    rerateHooks: {
      async onVersionCosts(changes, { tx }) {
        await documents.setEmbeddingCosts(changes, { tx });
      },
      async onRerated(windows, { tx }) {
        for (const w of windows) {
          const hours = w.hours.map((h) => new Date(h).getTime());
          if (hours.length === 0) continue;
          const from = new Date(Math.min(...hours));
          const to = new Date(Math.max(...hours) + 3_600_000);
          await rollups.recompute(w.tenantId, from, to, { tx });
        }
        await opts.onRerated?.(windows, { tx });
      },
    },
  });
  const usage = ledger;
  const documents = createDocumentsService({
    db,
    blobs,
    vectors,
    queue,
    usage,
    audit,
    events,
    logger,
  });
  const quotas = createQuotasService({
    db,
    tenants,
    clock,
    logger,
    metrics,
    audit,
    events,
    levels: (tctx, o) => documents.levels(tctx, o),
  });
  const ingestion = createIngestionService({
    db,
    blobs,
    queue,
    tenants,
    quotas,
    audit,
    events,
    allowPrivateUrls: config.allowPrivateUrls,
  });
  const pipeline = createIngestionPipeline({
    db,
    blobs,
    vectors,
    embedders,
    tenants,
    usage,
    quotas,
    audit,
    events,
    logger,
    allowPrivateUrls: config.allowPrivateUrls,
    maxFetchBytes: config.fetchMaxBytes,
    fetchTimeoutMs: config.fetchTimeoutMs,
    extractor,
  });
  const uploads = createUploadsService({ db, blobs, ingestion, clock, audit });
  const search = createSearchService({ db, documents, vectors, embedders, tenants, quotas, usage });
  const knowledge = createKnowledgeService({ db, ingestion, documents, audit, events });
  const chat = createChatService({
    db,
    logger,
    search,
    documents,
    quotas,
    usage,
    events,
    audit,
    model: opts.chatModel ?? createExtractiveModel(),
    maxMessageChars: config.chat.maxMessageChars,
  });
  const recovery = createIngestionRecovery({ db, blobs, queue, logger });
  const rollups = createRollups({ db, clock, documents, logger });
  const usageWithReports = Object.assign(ledger, {
    rollups,
    reports: createReports({ db, clock, rollups, documents, tenants, quotas }),
    exports: createExports({ db, rollups, documents, audit }),
  });
  // Before any request is served: claims held by the requests of a process that died (embedded
  // mode only; on PostgreSQL other processes may be alive, and the claims' short leases expire).
  if (db.kind === "pglite") {
    try {
      await recovery.releaseRequestClaims();
    } catch (err) {
      await close();
      throw err;
    }
  }
  const telemetry = createTelemetry({
    db,
    logger,
    registry: metrics.registry,
    ...config.telemetry,
    writers: db.kind === "postgres" ? config.telemetry.writers : 1,
  });
  // Pushed after the stores: runs before them on close, so the last calls are written while
  // the database is still open (the HTTP server has stopped before the context closes).
  closers.push(() => telemetry.close());
  const retention = createRetention({ db, clock, logger, policy: config.retention });
  const alerts = createAlertsService({ db, clock, audit });
  // The quotas service's status joins here once it exists (QuotaStatusSource).
  const alertEvaluator = createAlertEvaluator({
    alerts,
    signals: createUsageSignals({ db }),
    quotas: {
      // The quotas' figures as the rules read them: a level (documents, storage) has no period
      // of its own, so its alerts count per calendar month.
      async status(tenantId) {
        const month = new Date(clock.now());
        month.setUTCDate(1);
        month.setUTCHours(0, 0, 0, 0);
        return Object.fromEntries(
          Object.entries(await quotas.status(tenantId)).map(([type, q]) => [
            type,
            {
              limit: q.limit,
              used: q.used,
              reserved: q.reserved,
              remaining: q.remaining ?? Number.POSITIVE_INFINITY,
              periodStart: q.periodStart ?? month,
              resetAt: q.resetAt ?? "",
            },
          ]),
        );
      },
    },
    clock,
    logger,
  });
  const reconciliation = createReconciliation({ db, documents, alerts, rollups, clock, logger });
  let working = false;
  const jobMetrics = createJobMetrics();
  return {
    metrics,
    rateLimits,
    config,
    logger,
    clock,
    db,
    redis,
    tenants,
    audit,
    auditTrail,
    events,
    eventsFeed: createEventsFeed({ db, clock }),
    auth,
    blobs,
    queue,
    jobMetrics,
    telemetry,
    retention,
    vectors,
    embedders,
    ingestion,
    documents,
    search,
    knowledge,
    chat,
    usage: usageWithReports,
    quotas,
    recovery,
    uploads,
    withIdempotency: createIdempotency(db, { logger }),
    alerts,
    alertEvaluator,
    reconciliation,
    startWorkers() {
      if (working) return;
      working = true;
      const jobs = [
        ...ingestionJobs({ pipeline, recovery, logger }),
        ...searchJobs({ vectors, logger }),
        ...usageJobs({
          usage,
          clock,
          logger,
          // Every tenant not deleted, with its storage level (zero when it has no documents).
          async levels(page) {
            return documents.storageLevels(await tenants.tenantIds(page));
          },
        }),
        ...telemetryJobs({ retention }),
        ...alertsJobs({ evaluator: alertEvaluator, logger }),
        ...reconciliationJobs({ reconciliation, logger }),
        ...quotaJobs({ quotas, logger }),
        ...rollupJobs({ rollups }),
        ...auditJobs({ trail: auditTrail }),
        ...eventsJobs({ retention: eventsRetention }),
      ];
      queue.work(catalogHandlers(registry, jobs, { logger, metrics: jobMetrics }), {
        concurrency: config.workerConcurrency,
      });
      // Declared by every worker process at start; each due time runs once across them all.
      const scheduling = Promise.all(
        appSchedules.map((s) =>
          queue.schedule(s.key, s.type as keyof AppJobs & string, s.payload as never, s.timing),
        ),
      ).catch((err: unknown) => logger.error({ err }, "scheduled jobs could not be declared"));
      // Start-up repair: on PGlite no other process can be in the middle of anything, so what
      // was recorded before this process started is taken at once, whatever its age.
      const startup =
        db.kind === "pglite"
          ? recovery.runOnce(Date.now() - startedAt).then(
              (done) => {
                if (done.versions + done.discarded + done.uploads > 0)
                  logger.info(done, "recovered lost ingestion work");
              },
              (err: unknown) => logger.warn({ err }, "ingestion recovery pass failed"),
            )
          : Promise.resolve();
      // Runs before the queue and database close (closers run in reverse).
      closers.push(() => Promise.all([scheduling, startup]));
    },
    close,
  };
}

async function openBlobStore(config: Config): Promise<BlobStore> {
  if (!config.blobUrl) return createLocalBlobStore({ root: path.join(config.dataDir, "blobs") });
  // Loaded only when configured: the AWS SDK is large and embedded mode never needs it.
  const { createS3BlobStore, parseBlobUrl } = await import("./platform/blobs/index.js");
  const { bucket, prefix } = parseBlobUrl(config.blobUrl);
  return createS3BlobStore({
    bucket,
    ...(prefix ? { prefix } : {}),
    ...(config.s3.endpoint ? { endpoint: config.s3.endpoint } : {}),
    region: config.s3.region,
    forcePathStyle: config.s3.forcePathStyle,
    ...(config.s3.credentials ? { credentials: config.s3.credentials } : {}),
  });
}
