/**
 * In-process counters of job runs per job name (prom-client is not a dependency; `/metrics`
 * can render `snapshot()` once it exists). Per process: each worker counts its own runs.
 */

export type RunOutcome = "completed" | "retried" | "failed" | "interrupted";

export interface JobRunStats {
  /** Runs started, by how they ended. */
  outcomes: Record<RunOutcome, number>;
  /** Runs that were a retry (attempt > 1). */
  retries: number;
  /** Total and largest handler time, in milliseconds. */
  durationMsTotal: number;
  durationMsMax: number;
}

export interface JobMetrics {
  record(jobName: string, run: { outcome: RunOutcome; durationMs: number; attempt: number }): void;
  /** A copy of the counters, by job name. */
  snapshot(): Record<string, JobRunStats>;
}

export function createJobMetrics(): JobMetrics {
  const stats = new Map<string, JobRunStats>();
  return {
    record(jobName, run) {
      let s = stats.get(jobName);
      if (!s) {
        s = {
          outcomes: { completed: 0, retried: 0, failed: 0, interrupted: 0 },
          retries: 0,
          durationMsTotal: 0,
          durationMsMax: 0,
        };
        stats.set(jobName, s);
      }
      s.outcomes[run.outcome]++;
      if (run.attempt > 1) s.retries++;
      s.durationMsTotal += run.durationMs;
      s.durationMsMax = Math.max(s.durationMsMax, run.durationMs);
    },
    snapshot() {
      return Object.fromEntries(
        [...stats].map(([name, s]) => [name, { ...s, outcomes: { ...s.outcomes } }]),
      );
    },
  };
}
