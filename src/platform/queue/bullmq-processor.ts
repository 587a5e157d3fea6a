import { type Job, UnrecoverableError, WaitingError } from "bullmq";
import type { Logger } from "pino";
import { type Db, kysely, sql } from "../db/index.js";
import { backoffBaseOf, errorText, isNonRetryable, msFromNow, parsePayload } from "./jobs-store.js";
import { backoffMs, type JobHandlers, type JobRegistry, type JobTypeOptions } from "./queue.js";
import { uuidFrom } from "./schedules.js";

/**
 * The BullMQ processor of the queue: runs a handler and mirrors the job's progress into its
 * `jobs` row. BullMQ decides retries; the mirror computes the same decision to record it.
 *
 * Writes after the start are fenced on `locked_by` = BullMQ's lock token of this run: a worker
 * that lost the job (its lock expired, another worker runs it) cannot overwrite the new run's
 * record. `attempts` in the row counts runs started, as BullMQ's `attemptsStarted` does.
 *
 * A run of a job scheduler has no row until it starts: it gets one then, under a UUID derived
 * from BullMQ's job id (`repeat:<key>:<due time>`), so its retries find the same row.
 */

export interface BullmqProcessorDeps {
  db: Db;
  registry: JobRegistry;
  typeOptions: JobTypeOptions<JobRegistry>;
  handlers: JobHandlers<JobRegistry>;
  logger: Logger;
  backoffBaseMs: number;
  isClosing: () => boolean;
  /** Called when a run ends, however it ended (the fair relay hands over the next job). */
  onSettled?: () => void;
}

/** The `jobs` row id of a BullMQ job: its own id, or one derived for a scheduler's run. */
function rowIdOf(job: Job): string {
  return job.repeatJobKey ? uuidFrom(`bullmq:${job.id}`) : (job.id as string);
}

export function createBullmqProcessor(deps: BullmqProcessorDeps) {
  const { db, logger } = deps;
  /** Runs in progress by lock token (one job id may appear under an old and a new token). */
  const running = new Map<string, { jobId: string; done: Promise<unknown> }>();
  const neverAborted = new AbortController().signal;

  /** An update of this run's row, fenced on its lock token: a no-op for a lost run. */
  const ownRun = (id: string, token: string) =>
    kysely(db)
      .updateTable("jobs")
      .where("id", "=", id)
      .where("locked_by", "=", token)
      .where("status", "=", "running");

  /** Moves this run's row to `status`; its last error is kept unless a new one is given. */
  function finish(
    id: string,
    token: string,
    status: "completed" | "failed" | "dead",
    error: string | null,
  ) {
    return ownRun(id, token)
      .set({
        status,
        ...(error !== null ? { last_error: error } : {}),
        finished_at: sql`now()`,
        updated_at: sql`now()`,
      })
      .returning("id")
      .execute();
  }

  /** Queues this run's row again, due in `delayMs`. */
  function requeue(id: string, token: string, error: string, delayMs: number) {
    return ownRun(id, token)
      .set({
        status: "queued",
        last_error: error,
        locked_by: null,
        run_at: msFromNow(delayMs),
        updated_at: sql`now()`,
      })
      .returning("id")
      .execute();
  }

  /**
   * Marks the row running for this attempt, under this run's lock token; false when it is no
   * longer live (never committed, its tenant deleted, or already finished).
   */
  async function start(id: string, attempt: number, token: string): Promise<boolean> {
    const row = await kysely(db)
      .updateTable("jobs")
      .set({
        status: "running",
        attempts: attempt,
        started_at: sql`now()`,
        locked_by: token,
        locked_until: null,
        finished_at: null,
        updated_at: sql`now()`,
      })
      .where("id", "=", id)
      .where("status", "in", ["queued", "running"])
      .returning("id")
      .executeTakeFirst();
    return row !== undefined;
  }

  /** A scheduler's run gets its row when it first starts; a retry finds it there. */
  async function insertScheduledRow(id: string, job: Job): Promise<void> {
    const tenantId = (job.data as { tenantId?: unknown } | null)?.tenantId ?? null;
    await kysely(db)
      .insertInto("jobs")
      .values({
        id,
        tenant_id: typeof tenantId === "string" ? tenantId : null,
        type: job.name,
        payload: JSON.stringify(job.data),
        max_attempts: job.opts.attempts ?? 1,
        relayed_at: sql`now()`,
      })
      .onConflict((oc) => oc.column("id").doNothing())
      .execute();
  }

  /** Records a failure; the handler's own error is what BullMQ must see, not a mirror error. */
  async function mirror(log: Logger, write: Promise<unknown[]>) {
    try {
      if ((await write).length === 0) log.warn("job was taken over by another run; not recorded");
    } catch (err) {
      log.error({ err }, "job status could not be recorded");
    }
  }

  async function run(job: Job, token: string, signal: AbortSignal) {
    const id = rowIdOf(job);
    const attempt = Math.max(1, job.attemptsStarted);
    const log = logger.child({ jobId: id, jobType: job.name, attempt });
    if (deps.isClosing()) {
      // Fetched as the queue was closing: hand it back untouched.
      await job.moveToWait(token);
      throw new WaitingError();
    }
    if (job.repeatJobKey) await insertScheduledRow(id, job);
    if (!(await start(id, attempt, token))) {
      log.warn("job has no live row (enqueue failed, tenant deleted or already done); skipped");
      return;
    }
    const parsed = parsePayload(deps.registry, job.name, job.data);
    const handler = deps.handlers[job.name];
    if (!parsed.ok || !handler) {
      const error = parsed.ok ? `No handler for "${job.name}"` : parsed.error;
      log.error({ err: error }, "job failed for good");
      await mirror(log, finish(id, token, "failed", error));
      throw new UnrecoverableError(error);
    }
    try {
      await handler({
        id,
        payload: parsed.value,
        attempt,
        maxAttempts: job.opts.attempts ?? 1,
        signal,
      });
    } catch (err) {
      const error = errorText(err);
      if (deps.isClosing() && signal.aborted) {
        // Stopped because we asked it to: not the job's fault, so it runs again at once.
        log.info({ err: error }, "job interrupted by shutdown; queued again");
        await mirror(log, requeue(id, token, error, 0));
        await job.moveToWait(token);
        throw new WaitingError();
      }
      if (isNonRetryable(err)) {
        log.error({ err: error, status: "failed" }, "job failed for good");
        await mirror(log, finish(id, token, "failed", error));
        throw new UnrecoverableError(error);
      }
      // BullMQ retries while attemptsMade + 1 < attempts, waiting base · 2^(attemptsMade).
      const made = job.attemptsMade + 1;
      if (made < (job.opts.attempts ?? 1)) {
        const baseMs = backoffBaseOf(deps.typeOptions, job.name, deps.backoffBaseMs);
        const delayMs = backoffMs(made, baseMs);
        log.warn({ err: error, delayMs }, "job failed; retry");
        await mirror(log, requeue(id, token, error, delayMs));
      } else {
        log.error({ err: error, status: "dead" }, "job failed for good");
        await mirror(log, finish(id, token, "dead", error));
      }
      throw err;
    }
    // Not swallowed: if the success cannot be recorded, BullMQ runs the job again.
    const done = await finish(id, token, "completed", null);
    if (done.length === 0) log.warn("job was taken over by another run; success not recorded");
  }

  return {
    /** BullMQ's processor; three parameters, so BullMQ hands it an abort signal. */
    process(job: Job, token?: string, signal?: AbortSignal): Promise<void> {
      const key = token ?? `${job.id}`;
      const p = run(job, key, signal ?? neverAborted);
      running.set(key, { jobId: `${job.id}`, done: p });
      p.catch(() => {}).finally(() => {
        running.delete(key);
        deps.onSettled?.();
      });
      return p;
    },

    /** Waits up to `graceMs` for the running handlers; true when none is left. */
    async drain(graceMs: number): Promise<boolean> {
      if (running.size === 0) return true;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), graceMs);
      });
      const all = Promise.allSettled([...running.values()].map((r) => r.done)).then(() => true);
      const result = await Promise.race([all, timeout]);
      clearTimeout(timer);
      return result;
    },

    runningIds: () => [...running.values()].map((r) => r.jobId),

    /** Records a job BullMQ failed for stalling too often (its handler never ran this time). */
    markStalledDead(job: Job, err: Error) {
      const id = rowIdOf(job);
      kysely(db)
        .updateTable("jobs")
        .set({
          status: "dead",
          last_error: errorText(err),
          finished_at: sql`now()`,
          locked_until: null,
          updated_at: sql`now()`,
        })
        .where("id", "=", id)
        .where("status", "in", ["queued", "running"])
        .execute()
        .catch((dbErr) => logger.error({ err: dbErr, jobId: id }, "job status not recorded"));
    },
  };
}
