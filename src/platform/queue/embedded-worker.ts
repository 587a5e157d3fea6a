import type { Logger } from "pino";
import { assertNever } from "../../errors.js";
import type { Db } from "../db/index.js";
import {
  type ClaimedJob,
  type ClaimPolicy,
  claimFairJob,
  claimJob,
  type Outcome,
  recordOutcome,
  renewLeases,
  requeueAbandoned,
} from "./embedded-store.js";
import { backoffBaseOf, errorText, isNonRetryable, parsePayload } from "./jobs-store.js";
import { backoffMs, type JobHandlers, type JobRegistry, type JobTypeOptions } from "./queue.js";

/**
 * The worker side of the embedded queue: claims ready rows of the `jobs` table one statement at
 * a time (FOR UPDATE SKIP LOCKED, so any number of workers in any number of processes share the
 * table without running a job twice), runs up to `concurrency` handlers, renews the lease of
 * running jobs and puts back jobs whose worker stopped renewing theirs.
 */

export interface EmbeddedWorkerDeps {
  db: Db;
  registry: JobRegistry;
  typeOptions: JobTypeOptions<JobRegistry>;
  handlers: JobHandlers<JobRegistry>;
  logger: Logger;
  workerId: string;
  concurrency: number;
  leaseMs: number;
  pollMs: number;
  backoffBaseMs: number;
  /** Only this process works the table (PGlite): jobs running at start were left by a dead one. */
  singleProcess: boolean;
  /** Round-robin across tenants or FIFO, and the per-tenant cap. */
  claim: ClaimPolicy;
}

export interface EmbeddedWorker {
  /** A job was enqueued in this process: look now instead of at the next poll. */
  wake(): void;
  close(graceMs: number): Promise<void>;
}

interface Running {
  job: ClaimedJob;
  controller: AbortController;
  /** The heartbeat found the job no longer ours: its outcome must not be written. */
  leaseLost: boolean;
  /** The handler has settled and the outcome is being written. */
  settled: boolean;
  done: Promise<void>;
}

const MAX_ERROR_BACKOFF_MS = 30_000;

export function startEmbeddedWorker(deps: EmbeddedWorkerDeps): EmbeddedWorker {
  const { db, logger, workerId, concurrency, leaseMs, pollMs } = deps;
  const types = Object.keys(deps.handlers);
  const running = new Map<string, Running>();
  // Expired leases are looked for at most every half lease (and not more often than the poll).
  const sweepEveryMs = Math.max(pollMs, Math.min(leaseMs / 2, 5_000));
  let lastSweep = 0;
  let closing = false;
  let woken = false;
  let wakeUp: (() => void) | undefined;
  let beating = false;

  const wake = () => {
    woken = true;
    wakeUp?.();
  };

  /** Waits `ms`, or less when woken; a wake-up that came while busy is not lost. */
  const idle = (ms: number) =>
    new Promise<void>((resolve) => {
      if (woken || closing) {
        woken = false;
        resolve();
        return;
      }
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeUp = undefined;
        woken = false;
        resolve();
      }
      wakeUp = done;
    });

  async function sweep() {
    lastSweep = Date.now();
    for (const r of await requeueAbandoned(db, "expired")) {
      logger.warn({ jobId: r.id, status: r.status }, "job lease expired; worker presumed dead");
    }
  }

  async function loop() {
    let errors = 0;
    // Before the first claim, and again after an error until done.
    let orphansRequeued = !deps.singleProcess;
    while (!closing) {
      let claimed = false;
      if (running.size < concurrency) {
        try {
          if (!orphansRequeued) {
            // At once rather than when their lease runs out: nobody else can be running them.
            for (const r of await requeueAbandoned(db, "all")) {
              logger.warn(
                { jobId: r.id, status: r.status },
                "job interrupted by a restart; queued again",
              );
            }
            orphansRequeued = true;
          }
          if (Date.now() - lastSweep >= sweepEveryMs) await sweep();
          const job = deps.claim.fair
            ? await claimFairJob(db, {
                workerId,
                leaseMs,
                types,
                tenantConcurrency: deps.claim.tenantConcurrency,
              })
            : await claimJob(db, { workerId, leaseMs, types });
          errors = 0;
          if (job && closing) {
            await write(job, { kind: "released" });
          } else if (job) {
            start(job);
            claimed = true;
          }
        } catch (err) {
          errors++;
          logger.error({ err, workerId }, "job queue: claiming failed");
        }
      }
      // After a claim, look again at once: there may be more ready jobs.
      if (!claimed) await idle(Math.min(pollMs * 2 ** errors, MAX_ERROR_BACKOFF_MS));
    }
  }

  function start(job: ClaimedJob) {
    const entry: Running = {
      job,
      controller: new AbortController(),
      leaseLost: false,
      settled: false,
      done: Promise.resolve(),
    };
    running.set(job.id, entry);
    entry.done = execute(entry)
      .catch((err) => logger.error({ err, jobId: job.id }, "job outcome could not be recorded"))
      .finally(() => {
        running.delete(job.id);
        wake();
      });
  }

  async function execute(entry: Running) {
    const { job, controller } = entry;
    const handler = deps.handlers[job.type];
    const parsed = parsePayload(deps.registry, job.type, job.payload);
    let outcome: Outcome;
    if (!parsed.ok || !handler) {
      outcome = {
        kind: "failed",
        error: parsed.ok ? `No handler for "${job.type}"` : parsed.error,
      };
    } else {
      try {
        await handler({
          id: job.id,
          payload: parsed.value,
          attempt: job.attempts,
          maxAttempts: job.max_attempts,
          signal: controller.signal,
        });
        outcome = { kind: "completed" };
      } catch (err) {
        outcome = classify(entry, err);
      }
    }
    entry.settled = true;
    if (entry.leaseLost) outcome = { kind: "lost" };
    await write(job, outcome);
  }

  function classify(entry: Running, err: unknown): Outcome {
    const { job } = entry;
    const error = errorText(err);
    // Stopped because we asked it to: not the job's fault, so it runs again at once.
    if (closing && entry.controller.signal.aborted) return { kind: "interrupted", error };
    if (isNonRetryable(err)) return { kind: "failed", error };
    if (job.attempts < job.max_attempts) {
      const baseMs = backoffBaseOf(deps.typeOptions, job.type, deps.backoffBaseMs);
      return { kind: "retry", error, delayMs: backoffMs(job.attempts, baseMs) };
    }
    return { kind: "dead", error };
  }

  async function write(job: ClaimedJob, outcome: Outcome) {
    const log = logger.child({ jobId: job.id, jobType: job.type, attempt: job.attempts });
    switch (outcome.kind) {
      case "lost":
        log.warn("job lease was lost while it ran; its outcome is left to the new owner");
        return;
      case "retry":
        log.warn({ err: outcome.error, delayMs: outcome.delayMs }, "job failed; retry");
        break;
      case "interrupted":
        log.info({ err: outcome.error }, "job interrupted by shutdown; queued again");
        break;
      case "failed":
      case "dead":
        log.error({ err: outcome.error, status: outcome.kind }, "job failed for good");
        break;
      case "completed":
        log.debug("job completed");
        break;
      case "released":
        break;
      default:
        assertNever(outcome);
    }
    if (!(await recordOutcome(db, job, workerId, outcome))) {
      log.warn({ outcome: outcome.kind }, "job was taken over by another worker; outcome dropped");
    }
  }

  async function heartbeat() {
    if (beating || running.size === 0) return;
    beating = true;
    const entries = [...running.values()];
    try {
      const renewed = await renewLeases(db, {
        workerId,
        leaseMs,
        jobs: entries.map((e) => e.job),
      });
      for (const e of entries) {
        if (renewed.has(e.job.id) || e.settled || e.leaseLost) continue;
        e.leaseLost = true;
        e.controller.abort(new Error("job lease lost"));
        logger.warn({ jobId: e.job.id }, "job lease lost (another worker took it over)");
      }
    } catch (err) {
      logger.error({ err, jobIds: entries.map((e) => e.job.id) }, "job lease renewal failed");
    } finally {
      beating = false;
    }
  }

  const heartbeatTimer = setInterval(() => void heartbeat(), Math.max(10, leaseMs / 3));
  const loopDone = loop().catch((err) => logger.error({ err, workerId }, "job loop crashed"));
  let closed: Promise<void> | undefined;

  return {
    wake,
    close(graceMs) {
      closed ??= (async () => {
        closing = true;
        wake();
        for (const e of running.values()) e.controller.abort(new Error("job queue closing"));
        let timer: NodeJS.Timeout | undefined;
        const grace = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
        });
        // Leases are renewed during the grace period: a job finishing late is still ours.
        const settled = Promise.allSettled([loopDone, ...[...running.values()].map((e) => e.done)]);
        await Promise.race([settled, grace]);
        clearTimeout(timer);
        clearInterval(heartbeatTimer);
        if (running.size > 0) {
          logger.warn(
            { jobIds: [...running.keys()] },
            "jobs still running at close: they run again once their lease expires",
          );
        }
      })();
      return closed;
    },
  };
}
