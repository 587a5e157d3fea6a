import { type JobsOptions, Queue, Worker } from "bullmq";
import type { Logger } from "pino";
import type { Db } from "../db/index.js";
import { type BullmqProcessorDeps, createBullmqProcessor } from "./bullmq-processor.js";
import {
  DEFAULT_CLOSE_GRACE_MS,
  deleteJobs,
  getJob,
  insertJobs,
  type NewJob,
  prepareJob,
} from "./jobs-store.js";
import type { JobHandlers, JobQueue, JobRegistry } from "./queue.js";

export interface BullmqQueueOptions<R extends JobRegistry> {
  db: Db;
  registry: R;
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
}

/**
 * The server-mode job queue: BullMQ on Redis. The `jobs` row is written first (`queued`) and
 * its id is the BullMQ job id; the worker mirrors every status change into it, so the status
 * API reads the same table in both modes. The row is the authority on whether a job should
 * run: a BullMQ job without a live row (enqueue failed half-way, tenant deleted, job already
 * finished) is dropped without running its handler.
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
  // Enqueue fails fast when Redis is unreachable instead of hanging an HTTP request.
  const queue = new Queue(queueName, {
    connection: { url: opts.redisUrl, maxRetriesPerRequest: 3 },
    prefix,
  });
  queue.on("error", (err) => logger.error({ err }, "job queue: redis error"));
  let worker: Worker | undefined;
  let processor: ReturnType<typeof createBullmqProcessor> | undefined;
  let closed = false;
  let closing: Promise<void> | undefined;

  const jobOptions = (job: NewJob): JobsOptions => ({
    jobId: job.id,
    attempts: job.maxAttempts,
    backoff: { type: "exponential", delay: backoffBaseMs },
    priority: 101 - job.priority,
    ...(job.delayMs > 0 ? { delay: job.delayMs } : {}),
    // The jobs table is the record; Redis keeps a bounded tail for BullMQ's own tooling.
    removeOnComplete: { count: 1_000 },
    removeOnFail: { count: 10_000 },
  });

  /** Rows first (so a worker never meets a job without its row), then Redis. */
  async function submit(jobs: NewJob[]): Promise<void> {
    if (closed) throw new Error("The job queue is closed");
    if (jobs.length === 1) await insertJobs(db, jobs);
    else await db.transaction((tx) => insertJobs(tx, jobs));
    try {
      if (jobs.length === 1) {
        const [job] = jobs as [NewJob];
        await queue.add(job.type, job.payload, jobOptions(job));
      } else {
        await queue.addBulk(
          jobs.map((j) => ({ name: j.type, data: j.payload, opts: jobOptions(j) })),
        );
      }
    } catch (err) {
      // Without its row a job that did reach Redis is dropped by the worker: all or nothing.
      await deleteJobs(
        db,
        jobs.map((j) => j.id),
      ).catch((deleteErr) =>
        logger.error(
          { err: deleteErr, jobIds: jobs.map((j) => j.id) },
          "job rows of a failed enqueue could not be removed; they stay queued",
        ),
      );
      throw err;
    }
  }

  return {
    async enqueue(type, payload, enqueueOpts) {
      const job = prepareJob(registry, type, payload, enqueueOpts);
      await submit([job]);
      return { id: job.id };
    },

    async enqueueBatch(items) {
      const jobs = items.map((i) => prepareJob(registry, i.type, i.payload, i.opts));
      if (jobs.length > 0) await submit(jobs);
      return jobs.map((j) => ({ id: j.id }));
    },

    get: (tenantId, jobId) => getJob(db, tenantId, jobId),

    async recover(olderThanMs) {
      if (closed) return 0;
      const rows = await db.query<{
        id: string;
        tenant_id: string;
        type: string;
        payload: unknown;
        priority: number;
        max_attempts: number;
        delay_ms: number;
      }>(
        `select id, tenant_id, type, payload, priority, max_attempts,
                greatest(0, extract(epoch from run_at - now()) * 1000)::int as delay_ms
         from jobs
         where status = 'queued' and run_at < now() - make_interval(secs => $1)
         order by run_at limit 500`,
        [olderThanMs / 1000],
      );
      if (rows.length === 0) return 0;
      // Rows due for a while but still queued: lost, or waiting behind a backlog. BullMQ
      // ignores an add whose job id it already holds, so only lost jobs are added.
      await queue.addBulk(
        rows.map((r) => ({
          name: r.type,
          data: r.payload,
          opts: jobOptions({
            id: r.id,
            tenantId: r.tenant_id,
            type: r.type,
            payload: r.payload,
            priority: r.priority,
            delayMs: r.delay_ms,
            maxAttempts: r.max_attempts,
          }),
        })),
      );
      return rows.length;
    },

    work(handlers: JobHandlers<R>, workOpts = {}) {
      if (closed) throw new Error("The job queue is closed");
      if (worker) throw new Error("work() was already called on this queue");
      const concurrency = workOpts.concurrency ?? 2;
      const deps: BullmqProcessorDeps = {
        db,
        registry,
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
        if (job?.id && job.deferredFailure) processor?.markStalledDead(job.id, err);
      });
    },

    close(graceMs = DEFAULT_CLOSE_GRACE_MS) {
      closed = true;
      closing ??= (async () => {
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
