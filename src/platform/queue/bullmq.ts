import { type JobsOptions, Queue, Worker } from "bullmq";
import type { InferResult } from "kysely";
import type { Logger } from "pino";
import { type Db, kysely, type Queryable, sql } from "../db/index.js";
import { type BullmqProcessorDeps, createBullmqProcessor } from "./bullmq-processor.js";
import {
  backoffBaseOf,
  DEFAULT_CLOSE_GRACE_MS,
  getJob,
  insertJobs,
  type NewJob,
  prepareJob,
} from "./jobs-store.js";
import type { JobHandlers, JobQueue, JobRegistry, JobTypeOptions } from "./queue.js";
import { validateTiming } from "./schedules.js";
import { startTicker, type Ticker } from "./ticker.js";

export interface BullmqQueueOptions<R extends JobRegistry> {
  db: Db;
  registry: R;
  /** Attempts and first retry delay of particular job types. */
  typeOptions?: JobTypeOptions<R>;
  logger: Logger;
  redisUrl: string;
  queueName?: string;
  /** Namespace of the queue's Redis keys. */
  prefix?: string;
  /** First retry delay; doubles with each attempt. */
  backoffBaseMs?: number;
  /**
   * How long a running job's lock lasts without renewal (renewed every half of it). A job
   * whose worker died is found stalled once its lock has expired.
   */
  lockDurationMs?: number;
  /** How often each worker looks for stalled jobs. */
  stalledIntervalMs?: number;
  /** Times a job may stall (its worker dies) and be run again before it is `dead`. */
  maxStalledCount?: number;
  /** How often a working queue looks for committed jobs not yet handed to Redis. */
  relayIntervalMs?: number;
}

/**
 * A queued row of `jobs` as the relay and `recover` read it to hand it to Redis: what is left
 * of its delay is computed by the database, whose clock set `run_at`.
 */
function queuedRows(q: Queryable) {
  return kysely(q)
    .selectFrom("jobs")
    .select([
      "id",
      "tenant_id",
      "type",
      "payload",
      "priority",
      "max_attempts",
      sql<number>`greatest(0, extract(epoch from run_at - now()) * 1000)::int`.as("delay_ms"),
    ])
    .where("status", "=", "queued");
}

type QueuedRow = InferResult<ReturnType<typeof queuedRows>>[number];

/**
 * The server-mode job queue: BullMQ on Redis. The `jobs` row is written first (`queued`, in
 * the caller's transaction with `tx`) and its id is the BullMQ job id; the worker mirrors
 * every status change into it, so the status API reads the same table in both modes. The row
 * is the authority on whether a job should run: a BullMQ job without a live row (tenant
 * deleted, job already finished) is dropped without running its handler.
 *
 * The rows are an outbox. Once the row is committed the job is handed to Redis (at once by
 * `enqueue`, or after the caller's commit with `tx`) and the row marked `relayed_at`. If the
 * process dies in between, or Redis refuses, the row stays unmarked and the relay of every
 * working queue (FOR UPDATE SKIP LOCKED, every `relayIntervalMs`) hands it over. A hand-over
 * twice is harmless: BullMQ ignores an add whose job id it holds, and the processor skips a
 * job whose row is no longer live.
 *
 * Schedules are BullMQ job schedulers (one run per due time, whichever worker takes it); a
 * run gets its `jobs` row when it starts, under an id derived from BullMQ's.
 *
 * Priorities map to BullMQ's (1 = first): 101 − priority, so every job is prioritized and
 * equal priorities keep FIFO order. Retries use BullMQ's exponential backoff with the same
 * delays as the embedded queue; a handler's `NonRetryableError` becomes BullMQ's
 * `UnrecoverableError`. A job whose worker died is BullMQ's "stalled" job: put back once its
 * lock expires, `maxStalledCount` times at most.
 *
 * `close(graceMs)` stops fetching, aborts the handlers' signals and waits up to `graceMs`; a
 * handler that then throws sends its job back to waiting (not a failure). Jobs still running
 * after the grace are abandoned (force close): their lock expires and another worker runs them.
 */
export function createBullmqQueue<R extends JobRegistry>(opts: BullmqQueueOptions<R>): JobQueue<R> {
  const { db, registry, logger } = opts;
  const queueName = opts.queueName ?? "tenantrag";
  const prefix = opts.prefix ?? "tenantrag";
  const backoffBaseMs = opts.backoffBaseMs ?? 2_000;
  const typeOptions = (opts.typeOptions ?? {}) as JobTypeOptions<JobRegistry>;
  // Enqueue fails fast when Redis is unreachable instead of hanging an HTTP request.
  const queue = new Queue(queueName, {
    connection: { url: opts.redisUrl, maxRetriesPerRequest: 3 },
    prefix,
  });
  queue.on("error", (err) => logger.error({ err }, "job queue: redis error"));
  let worker: Worker | undefined;
  let relay: Ticker | undefined;
  let processor: ReturnType<typeof createBullmqProcessor> | undefined;
  let closed = false;
  let closing: Promise<void> | undefined;

  const jobOptions = (job: NewJob): JobsOptions => ({
    jobId: job.id,
    attempts: job.maxAttempts,
    backoff: { type: "exponential", delay: backoffBaseOf(typeOptions, job.type, backoffBaseMs) },
    priority: 101 - job.priority,
    ...(job.delayMs > 0 ? { delay: job.delayMs } : {}),
    // The jobs table is the record; Redis keeps a bounded tail for BullMQ's own tooling.
    removeOnComplete: { count: 1_000 },
    removeOnFail: { count: 10_000 },
  });

  const fromRow = (r: QueuedRow): NewJob => ({
    id: r.id,
    tenantId: r.tenant_id,
    type: r.type,
    payload: r.payload,
    priority: r.priority,
    delayMs: r.delay_ms,
    maxAttempts: r.max_attempts,
  });

  async function addToRedis(jobs: readonly NewJob[]): Promise<void> {
    if (jobs.length === 1) {
      const [job] = jobs as [NewJob];
      await queue.add(job.type, job.payload, jobOptions(job));
    } else {
      await queue.addBulk(
        jobs.map((j) => ({ name: j.type, data: j.payload, opts: jobOptions(j) })),
      );
    }
  }

  async function markRelayed(q: Queryable, ids: readonly string[]): Promise<void> {
    await kysely(q)
      .updateTable("jobs")
      .set({ relayed_at: sql`now()` })
      .where(sql<boolean>`id = any(${ids}::uuid[])`)
      .where("relayed_at", "is", null)
      .execute();
  }

  /**
   * The fast path, for committed rows: hands them to Redis now. A failure is not the
   * caller's: the jobs are durable, and the relay hands them over later.
   */
  async function handOver(jobs: readonly NewJob[]): Promise<void> {
    try {
      await addToRedis(jobs);
      await markRelayed(
        db,
        jobs.map((j) => j.id),
      );
    } catch (err) {
      logger.warn(
        { err, jobIds: jobs.map((j) => j.id) },
        "jobs recorded but not yet handed to redis; the relay will",
      );
    }
  }

  async function submit(jobs: NewJob[], tx: Queryable | undefined): Promise<void> {
    if (closed) throw new Error("The job queue is closed");
    if (jobs.length === 0) return;
    if (tx && tx !== db) {
      await insertJobs(tx, jobs);
      // Without a commit hook (a wrapped handle) the relay hands them over.
      tx.afterCommit?.(() => void handOver(jobs));
      return;
    }
    if (jobs.length === 1) await insertJobs(db, jobs);
    else await db.transaction((t) => insertJobs(t, jobs));
    await handOver(jobs);
  }

  /** One relay pass: committed rows not yet handed over, oldest first, 500 at most. */
  async function relayOnce(): Promise<number> {
    return db.transaction(async (tx) => {
      const rows = await queuedRows(tx)
        .where("relayed_at", "is", null)
        .orderBy("created_at")
        .limit(500)
        .forUpdate()
        .skipLocked()
        .execute();
      if (rows.length === 0) return 0;
      await addToRedis(rows.map(fromRow));
      await markRelayed(
        tx,
        rows.map((r) => r.id),
      );
      return rows.length;
    });
  }

  return {
    async enqueue(type, payload, enqueueOpts) {
      const job = prepareJob(registry, type, payload, enqueueOpts, typeOptions);
      await submit([job], enqueueOpts?.tx);
      return { id: job.id };
    },

    async enqueueBatch(items, batchOpts) {
      const jobs = items.map((i) => prepareJob(registry, i.type, i.payload, i.opts, typeOptions));
      await submit(jobs, batchOpts?.tx);
      return jobs.map((j) => ({ id: j.id }));
    },

    async schedule(key, type, payload, timing) {
      if (closed) throw new Error("The job queue is closed");
      const job = prepareJob(registry, type, payload, {}, typeOptions);
      validateTiming(timing);
      const { jobId: _, ...template } = jobOptions(job);
      await queue.upsertJobScheduler(
        key,
        "cron" in timing ? { pattern: timing.cron, tz: "UTC" } : { every: timing.everyMs },
        { name: type, data: payload, opts: template },
      );
    },

    get: (tenantId, jobId, getOpts) => getJob(getOpts?.tx ?? db, tenantId, jobId),

    async recover(olderThanMs) {
      if (closed) return 0;
      const rows = await queuedRows(db)
        .where("run_at", "<", sql<Date>`now() - make_interval(secs => ${olderThanMs / 1000})`)
        .orderBy("run_at")
        .limit(500)
        .execute();
      if (rows.length === 0) return 0;
      // Rows due for a while but still queued: lost, or waiting behind a backlog. BullMQ
      // ignores an add whose job id it already holds, so only lost jobs are added.
      await addToRedis(rows.map(fromRow));
      return rows.length;
    },

    work(handlers: JobHandlers<R>, workOpts = {}) {
      if (closed) throw new Error("The job queue is closed");
      if (worker) throw new Error("work() was already called on this queue");
      const concurrency = workOpts.concurrency ?? 2;
      const deps: BullmqProcessorDeps = {
        db,
        registry,
        typeOptions,
        handlers: handlers as unknown as JobHandlers<JobRegistry>,
        logger,
        backoffBaseMs,
        isClosing: () => closed,
      };
      processor = createBullmqProcessor(deps);
      worker = new Worker(queueName, processor.process, {
        connection: { url: opts.redisUrl, maxRetriesPerRequest: null },
        prefix,
        concurrency,
        lockDuration: opts.lockDurationMs ?? 30_000,
        stalledInterval: opts.stalledIntervalMs ?? 30_000,
        maxStalledCount: opts.maxStalledCount ?? 1,
      });
      worker.on("error", (err) => logger.error({ err }, "job worker: redis error"));
      // A job that stalled too often is failed by BullMQ without reaching the processor.
      worker.on("failed", (job, err) => {
        if (job?.id && job.deferredFailure) processor?.markStalledDead(job, err);
      });
      relay = startTicker({
        everyMs: opts.relayIntervalMs ?? 1_000,
        logger,
        what: "relaying recorded jobs to redis",
        async tick() {
          while ((await relayOnce()) === 500) {}
        },
      });
    },

    close(graceMs = DEFAULT_CLOSE_GRACE_MS) {
      closed = true;
      closing ??= (async () => {
        await relay?.stop(graceMs);
        if (worker && processor) {
          worker.cancelAllJobs("job queue closing");
          // Stop fetching now; jobs fetched meanwhile are handed back by the processor.
          await worker.pause(true).catch((err) => logger.error({ err }, "job worker pause"));
          const finished = await processor.drain(graceMs);
          if (!finished) {
            logger.warn(
              { jobIds: processor.runningIds() },
              "jobs still running at close: they run again once their lock expires",
            );
          }
          // Forced: skip waiting for the abandoned jobs and stop renewing their locks.
          await worker.close(!finished).catch((err) => logger.error({ err }, "job worker close"));
        }
        await queue.close().catch((err) => logger.error({ err }, "job queue close"));
      })();
      return closing;
    },
  };
}
