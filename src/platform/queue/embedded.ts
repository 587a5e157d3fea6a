import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "pino";
import type { Db, Queryable } from "../db/index.js";
import { type EmbeddedWorker, startEmbeddedWorker } from "./embedded-worker.js";
import {
  DEFAULT_CLOSE_GRACE_MS,
  getJob,
  InvalidJobError,
  insertJobs,
  type NewJob,
  prepareJob,
} from "./jobs-store.js";
import {
  type Clock,
  type JobHandlers,
  type JobQueue,
  type JobRegistry,
  type JobTypeOptions,
  systemClock,
} from "./queue.js";
import { enqueueDueRun, upsertSchedule, validateTiming } from "./schedules.js";
import { startTicker, type Ticker } from "./ticker.js";

export interface EmbeddedQueueOptions<R extends JobRegistry> {
  db: Db;
  registry: R;
  /** Attempts and first retry delay of particular job types. */
  typeOptions?: JobTypeOptions<R>;
  logger: Logger;
  /** What schedules compare their due times with; the system clock by default. */
  clock?: Clock;
  /** First retry delay; doubles with each attempt. */
  backoffBaseMs?: number;
  /**
   * How long a claimed job stays ours without a renewal. Renewed every third of it while the
   * handler runs; a job whose worker died runs again at most about this long (plus a sweep
   * interval) later.
   */
  leaseMs?: number;
  /**
   * How often an idle worker looks for jobs enqueued elsewhere or whose delay has passed, for
   * jobs enqueued in a transaction here whose commit it could not observe, and for due
   * schedules.
   */
  pollMs?: number;
  /** Recorded as `locked_by`; default host:pid:random. Unique per queue instance. */
  workerId?: string;
  /**
   * No other process can work this table (PGlite opens its files for one process): jobs found
   * running when work starts were left by a process that died, and run again at once instead of
   * after their lease. Default false (PostgreSQL: other processes may be working them).
   */
  singleProcess?: boolean;
  /**
   * Claim round-robin across tenants (default): the next job is the next one of the ready
   * tenant served least recently, so one tenant's backlog does not delay another's job. False
   * restores one FIFO (priority, due time, enqueue order) across all tenants.
   */
  fair?: boolean;
  /**
   * Most jobs of one tenant running at once, across every worker on the table; 0 (default) for
   * no cap. With a cap below the concurrency, a tenant whose jobs are slow or waiting (a
   * provider's rate limit) cannot occupy every slot. Applies to fair claims only.
   */
  tenantConcurrency?: number;
}

/**
 * The embedded job queue: jobs are rows of the `jobs` table, worked by in-process workers.
 * Works on PGlite and PostgreSQL alike; on PostgreSQL any number of processes can work the same
 * table (claims use FOR UPDATE SKIP LOCKED). An enqueue in this process wakes the local worker at
 * once (one in a transaction, once it commits); jobs from other processes and delayed jobs are
 * found by polling every `pollMs`. A job enqueued with `tx` is a row of that transaction.
 *
 * Schedules are rows of `job_schedules`; a working queue looks for due ones every `pollMs`
 * and enqueues each run in one transaction with the advance of its schedule (schedules.ts).
 *
 * `close(graceMs)` stops claiming, aborts the handlers' signals and waits up to `graceMs`. A job
 * whose handler throws after its signal was aborted by close goes straight back to `queued`
 * (not a failure: it was asked to stop). Jobs still running after the grace keep their row as
 * `running`; as their lease is no longer renewed, another worker runs them again once it
 * expires. A handler that finishes after that records its outcome only if no other worker has
 * taken the job over.
 */
export function createEmbeddedQueue<R extends JobRegistry>(
  opts: EmbeddedQueueOptions<R>,
): JobQueue<R> {
  const { db, registry, logger } = opts;
  const typeOptions = (opts.typeOptions ?? {}) as JobTypeOptions<JobRegistry>;
  const clock = opts.clock ?? systemClock;
  const pollMs = opts.pollMs ?? 500;
  const workerId =
    opts.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  let worker: EmbeddedWorker | undefined;
  let scheduler: Ticker | undefined;
  let closed = false;
  let closing: Promise<void> | undefined;

  const assertOpen = () => {
    if (closed) throw new Error("The job queue is closed");
  };

  /** Writes the jobs in `tx` (committed with it) or on their own, then wakes the worker. */
  async function write(jobs: NewJob[], tx: Queryable | undefined) {
    assertOpen();
    if (jobs.length === 0) return;
    const ready = jobs.some((j) => j.delayMs === 0);
    if (tx && tx !== db) {
      await insertJobs(tx, jobs);
      // Without a commit hook (a wrapped handle) the worker's next poll finds them.
      if (ready) tx.afterCommit?.(() => worker?.wake());
      return;
    }
    if (jobs.length === 1) await insertJobs(db, jobs);
    else await db.transaction((t) => insertJobs(t, jobs));
    if (ready) worker?.wake();
  }

  return {
    async enqueue(type, payload, enqueueOpts) {
      const job = prepareJob(registry, type, payload, enqueueOpts, typeOptions);
      await write([job], enqueueOpts?.tx);
      return { id: job.id };
    },

    async enqueueBatch(items, batchOpts) {
      const jobs = items.map((i) => prepareJob(registry, i.type, i.payload, i.opts, typeOptions));
      await write(jobs, batchOpts?.tx);
      return jobs.map((j) => ({ id: j.id }));
    },

    async schedule(key, type, payload, timing) {
      assertOpen();
      // The payload is checked now, as an enqueue would, and again at every run.
      prepareJob(registry, type, payload, {}, typeOptions);
      validateTiming(timing);
      await upsertSchedule(db, { key, type, payload, timing, now: clock.now() });
    },

    get: (tenantId, jobId, getOpts) => getJob(getOpts?.tx ?? db, tenantId, jobId),

    // The rows are the queue: a recorded job is always visible to the workers.
    recover: async () => 0,

    work(handlers: JobHandlers<R>, workOpts = {}) {
      assertOpen();
      if (worker) throw new Error("work() was already called on this queue");
      const concurrency = workOpts.concurrency ?? 2;
      if (!Number.isInteger(concurrency) || concurrency < 1) {
        throw new Error(`concurrency must be a positive integer, got ${concurrency}`);
      }
      const tenantConcurrency = opts.tenantConcurrency ?? 0;
      if (!Number.isInteger(tenantConcurrency) || tenantConcurrency < 0) {
        throw new Error(
          `tenantConcurrency must be a non-negative integer, got ${tenantConcurrency}`,
        );
      }
      const types = Object.keys(handlers);
      worker = startEmbeddedWorker({
        db,
        registry,
        typeOptions,
        handlers: handlers as unknown as JobHandlers<JobRegistry>,
        logger,
        workerId,
        concurrency,
        leaseMs: opts.leaseMs ?? 30_000,
        pollMs,
        backoffBaseMs: opts.backoffBaseMs ?? 2_000,
        singleProcess: opts.singleProcess ?? false,
        claim: { fair: opts.fair ?? true, tenantConcurrency },
      });
      scheduler = startTicker({
        everyMs: pollMs,
        logger,
        what: "enqueueing due scheduled jobs",
        async tick() {
          for (;;) {
            const run = await enqueueDueRun(db, {
              now: clock.now(),
              types,
              prepare: ({ key, type, payload, jobId }) => {
                try {
                  return prepareJob(registry, type, payload, { jobId }, typeOptions);
                } catch (err) {
                  // Its payload no longer validates (the schema changed): the due time is
                  // skipped, loudly, rather than blocking the schedules behind it.
                  if (!(err instanceof InvalidJobError)) throw err;
                  logger.error({ err, scheduleKey: key }, "scheduled job skipped: invalid payload");
                  return undefined;
                }
              },
            });
            if (!run) return;
            if (run.job) worker?.wake();
          }
        },
      });
    },

    close(graceMs = DEFAULT_CLOSE_GRACE_MS) {
      closed = true;
      closing ??= Promise.all([scheduler?.stop(graceMs), worker?.close(graceMs)]).then(() => {});
      return closing;
    },
  };
}
