import type { Logger } from "pino";
import type { z } from "zod";
import { errorText, isNonRetryable } from "./jobs-store.js";
import type { JobMetrics } from "./metrics.js";
import type {
  JobContext,
  JobHandlers,
  JobRegistry,
  JobTypeOptions,
  ScheduleTiming,
} from "./queue.js";

/**
 * The job catalog: how modules declare their jobs and the composition root merges them.
 *
 * A module declares its job types statically (`JobTypes`: payload schema and retry policy;
 * the queue needs them to validate enqueues before any handler exists) and exports a factory
 * that, given its dependencies, returns the jobs with their handlers (`defineJobs`). The root
 * merges every module's types into the queue's registry (`registryOf`, `typeOptionsOf`) and
 * every module's jobs into one set of handlers (`catalogHandlers`), wrapped once with metrics
 * and timing, and calls `work()` once. Two modules declaring one name show up there: the
 * name then has two handlers.
 */

type Schema = z.ZodType<{ tenantId: string | null }>;

/** A job type as a module declares it. */
export interface JobType<S extends Schema = Schema> {
  schema: S;
  /** Attempts in all, the first included; the queue's default (3) otherwise. */
  maxAttempts?: number;
  /** First retry delay, doubling with each attempt; the queue's otherwise. */
  backoff?: { baseMs: number };
}

export type JobTypes = Record<string, JobType>;

/** The queue registry (name → payload schema) of some job types. */
export type RegistryOf<T extends JobTypes> = { [K in keyof T]: T[K]["schema"] };

/** A job as a module exports it: `{ name, schema, maxAttempts, backoff, handler }`. */
export interface JobDefinition extends JobType {
  name: string;
  handler: (job: JobContext<{ tenantId: string | null }>) => Promise<void>;
}

/** A repeatable job a module wants run (declared by worker processes at start). */
export interface JobSchedule {
  /** Unique across the application; names the schedule in the store. */
  key: string;
  type: string;
  payload: { tenantId: string | null };
  timing: ScheduleTiming;
}

/** Pairs a module's job types with their handlers, type by type. */
export function defineJobs<T extends JobTypes>(
  types: T,
  handlers: { [K in keyof T]: (job: JobContext<z.infer<T[K]["schema"]>>) => Promise<void> },
): JobDefinition[] {
  return Object.entries(types).map(([name, type]) => ({
    name,
    ...type,
    handler: handlers[name] as JobDefinition["handler"],
  }));
}

/** The queue registry of some job types (merge modules' types with a spread). */
export function registryOf<T extends JobTypes>(types: T): RegistryOf<T> {
  return Object.fromEntries(Object.entries(types).map(([n, t]) => [n, t.schema])) as RegistryOf<T>;
}

export function typeOptionsOf<T extends JobTypes>(types: T): JobTypeOptions<RegistryOf<T>> {
  return Object.fromEntries(
    Object.entries(types).map(([n, t]) => [
      n,
      {
        ...(t.maxAttempts !== undefined ? { maxAttempts: t.maxAttempts } : {}),
        ...(t.backoff ? { backoffBaseMs: t.backoff.baseMs } : {}),
      },
    ]),
  ) as JobTypeOptions<RegistryOf<T>>;
}

/**
 * The handlers of every job, each wrapped once: the time it took and how it ended are
 * recorded in `metrics` (per job name) and logged with the job's id; a failure's recording in
 * the `jobs` row, its retry and its log line are the queue's. A job without a handler, or a
 * name given twice, is a programming error and throws.
 */
export function catalogHandlers<R extends JobRegistry>(
  registry: R,
  jobs: readonly JobDefinition[],
  deps: { logger: Logger; metrics: JobMetrics },
): JobHandlers<R> {
  const handlers: Record<string, JobDefinition["handler"]> = {};
  for (const job of jobs) {
    if (Object.hasOwn(handlers, job.name)) throw new Error(`job "${job.name}" has two handlers`);
    if (!Object.hasOwn(registry, job.name)) throw new Error(`job "${job.name}" is not registered`);
    handlers[job.name] = observed(job, deps);
  }
  const missing = Object.keys(registry).filter((name) => !Object.hasOwn(handlers, name));
  if (missing.length > 0) throw new Error(`no handler for job(s) ${missing.join(", ")}`);
  return handlers as unknown as JobHandlers<R>;
}

function observed(
  job: JobDefinition,
  deps: { logger: Logger; metrics: JobMetrics },
): JobDefinition["handler"] {
  return async (ctx) => {
    const startedAt = performance.now();
    const log = deps.logger.child({ jobId: ctx.id, jobType: job.name, attempt: ctx.attempt });
    try {
      await job.handler(ctx);
    } catch (err) {
      const outcome =
        ctx.signal.aborted && !isNonRetryable(err)
          ? "interrupted"
          : isNonRetryable(err) || ctx.attempt >= ctx.maxAttempts
            ? "failed"
            : "retried";
      const durationMs = performance.now() - startedAt;
      deps.metrics.record(job.name, { outcome, durationMs, attempt: ctx.attempt });
      log.debug({ outcome, durationMs, err: errorText(err) }, "job handler threw");
      throw err;
    }
    const durationMs = performance.now() - startedAt;
    deps.metrics.record(job.name, { outcome: "completed", durationMs, attempt: ctx.attempt });
    log.debug({ durationMs }, "job handler done");
  };
}
