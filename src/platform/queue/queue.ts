import type { z } from "zod";

/**
 * The job queue port. Two adapters: `embedded` (rows in the `jobs` table, claimed with
 * FOR UPDATE SKIP LOCKED by in-process workers) and `bullmq` (Redis). Both mirror every job's
 * status, attempts and last error into the `jobs` table, which is the record the status API
 * and the admin read, whichever adapter runs the work.
 */

/** Maps each job type to the zod schema of its payload; every payload carries `tenantId`. */
export type JobRegistry = Record<string, z.ZodType<{ tenantId: string }>>;

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
   * promise resolves: a crash afterwards does not lose the job.
   */
  enqueue<K extends keyof R & string>(
    type: K,
    payload: z.infer<R[K]>,
    opts?: EnqueueOptions,
  ): Promise<{ id: string }>;
  /** Enqueues many jobs at once, all or none. Ids come back in input order. */
  enqueueBatch<K extends keyof R & string>(
    items: Array<{ type: K; payload: z.infer<R[K]>; opts?: EnqueueOptions }>,
  ): Promise<Array<{ id: string }>>;
  /** A job of the tenant; undefined for another tenant's job or an unknown id. */
  get(tenantId: string, jobId: string): Promise<JobRecord | undefined>;
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
   * repairs a crash between writing a job's row and handing it to Redis. Nothing to do for the
   * embedded queue, whose rows are the queue. Returns how many rows it looked at.
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
