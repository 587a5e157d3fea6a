import { type Job, UnrecoverableError, WaitingError } from "bullmq";
import type { Logger } from "pino";
import type { Db } from "../db/index.js";
import { backoffBaseOf, errorText, isNonRetryable, parsePayload } from "./jobs-store.js";
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
}

const START_SQL = `
  update jobs set status = 'running', attempts = $2, started_at = now(), locked_by = $3,
    locked_until = null, finished_at = null, updated_at = now()
  where id = $1 and status in ('queued', 'running')
  returning id`;

const FENCE = "where id = $1 and locked_by = $2 and status = 'running'";

const SCHEDULED_ROW_SQL = `
  insert into jobs (id, tenant_id, type, payload, max_attempts, relayed_at)
  values ($1::uuid, $2::uuid, $3, $4::jsonb, $5::int, now())
  on conflict (id) do nothing`;

/** The `jobs` row id of a BullMQ job: its own id, or one derived for a scheduler's run. */
function rowIdOf(job: Job): string {
  return job.repeatJobKey ? uuidFrom(`bullmq:${job.id}`) : (job.id as string);
}

export function createBullmqProcessor(deps: BullmqProcessorDeps) {
  const { db, logger } = deps;
  /** Runs in progress by lock token (one job id may appear under an old and a new token). */
  const running = new Map<string, { jobId: string; done: Promise<unknown> }>();
  const neverAborted = new AbortController().signal;

  async function finish(fence: unknown[], status: string, error: string | null) {
    return db.query(
      `update jobs set status = $3, last_error = coalesce($4, last_error), finished_at = now(),
         updated_at = now() ${FENCE} returning id`,
      [...fence, status, error],
    );
  }

  async function requeue(fence: unknown[], error: string, delayMs: number) {
    return db.query(
      `update jobs set status = 'queued', last_error = $3, locked_by = null,
         run_at = now() + $4::int * interval '1 millisecond', updated_at = now() ${FENCE}
       returning id`,
      [...fence, error, delayMs],
    );
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
    if (job.repeatJobKey) {
      const tenantId = (job.data as { tenantId?: unknown } | null)?.tenantId ?? null;
      await db.query(SCHEDULED_ROW_SQL, [
        id,
        typeof tenantId === "string" ? tenantId : null,
        job.name,
        JSON.stringify(job.data),
        job.opts.attempts ?? 1,
      ]);
    }
    const started = await db.query(START_SQL, [id, attempt, token]);
    if (started.length === 0) {
      log.warn("job has no live row (enqueue failed, tenant deleted or already done); skipped");
      return;
    }
    const fence = [id, token];
    const parsed = parsePayload(deps.registry, job.name, job.data);
    const handler = deps.handlers[job.name];
    if (!parsed.ok || !handler) {
      const error = parsed.ok ? `No handler for "${job.name}"` : parsed.error;
      log.error({ err: error }, "job failed for good");
      await mirror(log, finish(fence, "failed", error));
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
        await mirror(log, requeue(fence, error, 0));
        await job.moveToWait(token);
        throw new WaitingError();
      }
      if (isNonRetryable(err)) {
        log.error({ err: error, status: "failed" }, "job failed for good");
        await mirror(log, finish(fence, "failed", error));
        throw new UnrecoverableError(error);
      }
      // BullMQ retries while attemptsMade + 1 < attempts, waiting base · 2^(attemptsMade).
      const made = job.attemptsMade + 1;
      if (made < (job.opts.attempts ?? 1)) {
        const baseMs = backoffBaseOf(deps.typeOptions, job.name, deps.backoffBaseMs);
        const delayMs = backoffMs(made, baseMs);
        log.warn({ err: error, delayMs }, "job failed; retry");
        await mirror(log, requeue(fence, error, delayMs));
      } else {
        log.error({ err: error, status: "dead" }, "job failed for good");
        await mirror(log, finish(fence, "dead", error));
      }
      throw err;
    }
    // Not swallowed: if the success cannot be recorded, BullMQ runs the job again.
    const done = await finish(fence, "completed", null);
    if (done.length === 0) log.warn("job was taken over by another run; success not recorded");
  }

  return {
    /** BullMQ's processor; three parameters, so BullMQ hands it an abort signal. */
    process(job: Job, token?: string, signal?: AbortSignal): Promise<void> {
      const key = token ?? `${job.id}`;
      const p = run(job, key, signal ?? neverAborted);
      running.set(key, { jobId: `${job.id}`, done: p });
      p.catch(() => {}).finally(() => running.delete(key));
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
      db.query(
        `update jobs set status = 'dead', last_error = $2, finished_at = now(),
           locked_until = null, updated_at = now()
         where id = $1 and status in ('queued', 'running')`,
        [id, errorText(err)],
      ).catch((dbErr) => logger.error({ err: dbErr, jobId: id }, "job status not recorded"));
    },
  };
}
