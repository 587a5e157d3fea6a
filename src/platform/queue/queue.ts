import type { z } from "zod";
import type { InTransaction, Queryable } from "../db/index.js";

/**
 * The job queue port. Two adapters: `embedded` (rows in the `jobs` table, claimed with
 * FOR UPDATE SKIP LOCKED by in-process workers) and `bullmq` (Redis). Both mirror every job's
 * status, attempts and last error into the `jobs` table, which is the record the status API
 * and the admin read, whichever adapter runs the work.
 */

/**
 * Maps each job type to the zod schema of its payload. Every payload carries `tenantId`: the
 * tenant the job works for, or `null` for a platform job (crash repair, sweeps) that works
 * across tenants and is visible to none.
 */
export type JobRegistry = Record<string, z.ZodType<{ tenantId: string | null }>>;

/** Per job type: attempts and the first retry delay, when they differ from the queue's. */
export type JobTypeOptions<R extends JobRegistry> = {
  [K in keyof R]?: { maxAttempts?: number; backoffBaseMs?: number };
};

/** Where "now" comes from for schedules: the real clock, or one a test moves by hand. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** When a scheduled job is due: a cron expression (UTC), or a fixed interval. */
export type ScheduleTiming = { cron: string } | { everyMs: number };

export type JobStatus = "queued" | "running" | "completed" | "failed" | "dead";

export interface EnqueueOptions {
  /** Higher runs sooner among ready jobs; default 0. Range -100..100. */
  priority?: number;
  /** Do not start before this many milliseconds from now. */
  delayMs?: number;
  /** Attempts in all, the first included; default 3. */
  maxAttempts?: number;
  /**
   * The job's id (a UUID), when the caller records it before enqueueing (so that a crash in
   * between can be told from a job that exists). Enqueueing an id that exists fails.
   */
  jobId?: string;
  /**
   * Write the job in the caller's transaction (the handle `Db.transaction` gave): it exists,
   * and workers see it, only if that transaction commits. Without it the job is written on its
   * own and is durable once `enqueue` resolves.
   */
  tx?: Queryable;
}

export interface BatchOptions {
  /** As `EnqueueOptions.tx`, for the whole batch. */
  tx?: Queryable;
}

export interface JobRecord {
  id: string;
  tenantId: string;
  type: string;
  status: JobStatus;
  attempts: number;
  maxAttempts: number;
  lastError: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

export interface JobContext<P> {
  id: string;
  payload: P;
  /** 1 for the first attempt. */
  attempt: number;
  /** Attempts in all; the job is `dead` if attempt `maxAttempts` fails. */
  maxAttempts: number;
  /** Aborted when the queue shuts down; long work should stop and let the job run again. */
  signal: AbortSignal;
}

export type JobHandlers<R extends JobRegistry> = {
  [K in keyof R]: (job: JobContext<z.infer<R[K]>>) => Promise<void>;
};

export interface WorkOptions {
  /** Jobs run at once by this process; default 2. */
  concurrency?: number;
}

export interface JobQueue<R extends JobRegistry> {
  /**
   * Validates the payload against the registry (a bad payload throws before anything is
   * written), records the job as `queued` and makes it available to workers. Durable once the
   * promise resolves (with `opts.tx`: once that transaction commits): a crash afterwards,
   * even before a broker received the job, does not lose it. A rolled-back transaction leaves
   * no job.
   */
  enqueue<K extends keyof R & string>(
    type: K,
    payload: z.infer<R[K]>,
    opts?: EnqueueOptions,
  ): Promise<{ id: string }>;
  /**
   * Enqueues many jobs at once, all or none (in `opts.tx` when given; a `tx` in an item's
   * options is ignored). Ids come back in input order.
   */
  enqueueBatch<K extends keyof R & string>(
    items: Array<{ type: K; payload: z.infer<R[K]>; opts?: EnqueueOptions }>,
    opts?: BatchOptions,
  ): Promise<Array<{ id: string }>>;
  /**
   * Declares a repeatable job under `key` (created, or its type, payload and timing replaced;
   * unchanged timing keeps its next due time). Each due time runs exactly once across all
   * processes working the queue, as an ordinary job (attempts, backoff and status included).
   * `everyMs` runs first at once, then every interval; `cron` at its next time. A due time
   * missed while no worker ran is run once when one starts, not once per missed time.
   * Due runs are enqueued by processes that called `work()`.
   */
  schedule<K extends keyof R & string>(
    key: string,
    type: K,
    payload: z.infer<R[K]>,
    timing: ScheduleTiming,
  ): Promise<void>;
  /**
   * A job of the tenant; undefined for another tenant's job or an unknown id. With `tx`, read
   * in that transaction: a job it enqueued is seen before the commit.
   */
  get(tenantId: string, jobId: string, opts?: InTransaction): Promise<JobRecord | undefined>;
  /**
   * Starts processing with these handlers. A handler that throws `NonRetryableError` fails the
   * job at once (`failed`); any other error retries with exponential backoff (2 s, 4 s, 8 s by
   * default) until `maxAttempts`, then the job is `dead`. A job whose worker died (crash, kill)
   * is picked up again after its lease expires. Handlers must be idempotent.
   */
  work(handlers: JobHandlers<R>, opts?: WorkOptions): void;
  /**
   * Makes sure every job recorded as `queued` and due for longer than `olderThanMs` can be
   * picked up (the 500 longest overdue per call):
   * the BullMQ adapter re-submits such rows to Redis (a no-op for those already there), which
   * repairs what the relay cannot see: rows marked handed over that Redis lost since (a
   * flushed or failed-over Redis). Nothing to do for the embedded queue, whose rows are the
   * queue. Returns how many rows it looked at.
   */
  recover(olderThanMs: number): Promise<number>;
  /**
   * Stops taking new jobs, aborts the signal of running ones and waits up to `graceMs` for
   * them to finish; jobs still running then are left to be picked up again. Idempotent.
   */
  close(graceMs?: number): Promise<void>;
}

/** Thrown by a handler when retrying cannot help (bad input, unsupported file, …). */
export class NonRetryableError extends Error {
  override name = "NonRetryableError";
  constructor(
    message: string,
    /** A machine-readable reason, e.g. `ingestion.pdf_encrypted`. */
    readonly code: string = "job.failed",
  ) {
    super(message);
  }
}

/** Delay before attempt `attempt + 1` after attempt `attempt` failed: base · 2^(attempt−1). */
export function backoffMs(attempt: number, baseMs: number): number {
  return baseMs * 2 ** (attempt - 1);
}
