import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "pino";
import type { Db } from "../db/index.js";
import { type EmbeddedWorker, startEmbeddedWorker } from "./embedded-worker.js";
import { DEFAULT_CLOSE_GRACE_MS, getJob, insertJobs, prepareJob } from "./jobs-store.js";
import type { JobHandlers, JobQueue, JobRegistry } from "./queue.js";

export interface EmbeddedQueueOptions<R extends JobRegistry> {
  db: Db;
  registry: R;
  logger: Logger;
  /** First retry delay; doubles with each attempt. */
  backoffBaseMs?: number;
  /**
   * How long a claimed job stays ours without a renewal. Renewed every third of it while the
   * handler runs; a job whose worker died runs again at most about this long (plus a sweep
   * interval) later.
   */
  leaseMs?: number;
  /** How often an idle worker looks for jobs enqueued elsewhere or whose delay has passed. */
  pollMs?: number;
  /** Recorded as `locked_by`; default host:pid:random. Unique per queue instance. */
  workerId?: string;
  /**
   * No other process can work this table (PGlite opens its files for one process): jobs found
   * running when work starts were left by a process that died, and run again at once instead of
   * after their lease. Default false (PostgreSQL: other processes may be working them).
   */
  singleProcess?: boolean;
}

/**
 * The embedded job queue: jobs are rows of the `jobs` table, worked by in-process workers.
 * Works on PGlite and PostgreSQL alike; on PostgreSQL any number of processes can work the same
 * table (claims use FOR UPDATE SKIP LOCKED). An enqueue in this process wakes the local worker at
 * once; jobs from other processes and delayed jobs are found by polling every `pollMs`.
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
  const workerId =
    opts.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  let worker: EmbeddedWorker | undefined;
  let closed = false;
  let closing: Promise<void> | undefined;

  const assertOpen = () => {
    if (closed) throw new Error("The job queue is closed");
  };

  return {
    async enqueue(type, payload, enqueueOpts) {
      assertOpen();
      const job = prepareJob(registry, type, payload, enqueueOpts);
      await insertJobs(db, [job]);
      if (job.delayMs === 0) worker?.wake();
      return { id: job.id };
    },

    async enqueueBatch(items) {
      assertOpen();
      const jobs = items.map((i) => prepareJob(registry, i.type, i.payload, i.opts));
      if (jobs.length === 0) return [];
      await db.transaction((tx) => insertJobs(tx, jobs));
      worker?.wake();
      return jobs.map((j) => ({ id: j.id }));
    },

    get: (tenantId, jobId) => getJob(db, tenantId, jobId),

    // The rows are the queue: a recorded job is always visible to the workers.
    recover: async () => 0,

    work(handlers: JobHandlers<R>, workOpts = {}) {
      assertOpen();
      if (worker) throw new Error("work() was already called on this queue");
      const concurrency = workOpts.concurrency ?? 2;
      if (!Number.isInteger(concurrency) || concurrency < 1) {
        throw new Error(`concurrency must be a positive integer, got ${concurrency}`);
      }
      worker = startEmbeddedWorker({
        db,
        registry,
        handlers: handlers as unknown as JobHandlers<JobRegistry>,
        logger,
        workerId,
        concurrency,
        leaseMs: opts.leaseMs ?? 30_000,
        pollMs: opts.pollMs ?? 500,
        backoffBaseMs: opts.backoffBaseMs ?? 2_000,
        singleProcess: opts.singleProcess ?? false,
      });
    },

    close(graceMs = DEFAULT_CLOSE_GRACE_MS) {
      closed = true;
      closing ??= worker ? worker.close(graceMs) : Promise.resolve();
      return closing;
    },
  };
}
