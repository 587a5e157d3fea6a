import { assertNever } from "../../errors.js";
import type { Queryable } from "../db/index.js";

/**
 * The statements of the embedded worker on the `jobs` table: claim, lease renewal, sweep of
 * expired leases and the recording of an outcome.
 *
 * A running job belongs to the worker whose `locked_by` it carries, for the attempt it claimed:
 * every write about a running job is fenced on (id, locked_by, attempts, status = 'running'),
 * so a worker that lost its lease (it froze past it, and another worker took the job over) can
 * no longer write over the new owner's record.
 */

export interface ClaimedJob {
  id: string;
  type: string;
  payload: unknown;
  /** Attempts including this one. */
  attempts: number;
  max_attempts: number;
}

export type Outcome =
  | { kind: "completed" }
  | { kind: "retry"; error: string; delayMs: number }
  /** Stopped because the queue is closing: queued again at once. */
  | { kind: "interrupted"; error: string }
  /** Claimed as the queue was closing and never started: the claim does not count. */
  | { kind: "released" }
  | { kind: "failed" | "dead"; error: string }
  /** Another worker owns the job now: nothing is written. */
  | { kind: "lost" };

const CLAIM_SQL = `
  update jobs set status = 'running', attempts = attempts + 1, started_at = now(),
    updated_at = now(), locked_by = $1, locked_until = now() + $2::int * interval '1 millisecond'
  where id = (
    select id from jobs
    where status = 'queued' and run_at <= now() and type = any($3::text[])
    order by priority desc, run_at, created_at
    limit 1
    for update skip locked
  )
  returning id, type, payload, attempts, max_attempts`;

/**
 * Takes the first ready job of the given types, or none. One statement: the row lock taken by
 * FOR UPDATE SKIP LOCKED makes concurrent claimers (other processes too) take different rows.
 */
export async function claimJob(
  q: Queryable,
  opts: { workerId: string; leaseMs: number; types: string[] },
): Promise<ClaimedJob | undefined> {
  const [job] = await q.query<ClaimedJob>(CLAIM_SQL, [opts.workerId, opts.leaseMs, opts.types]);
  return job;
}

/**
 * Puts back running jobs whose worker is gone: `expired`, those whose lease ran out (their
 * worker died or froze); `all`, every running job, whatever its lease — for a worker starting
 * on a database that only its own process can open (PGlite), where any job recorded as running
 * was left by a process that died. The lost run counts as an attempt, so a job that kills its
 * worker every time ends up `dead` instead of looping.
 */
export async function requeueAbandoned(
  q: Queryable,
  which: "expired" | "all",
): Promise<Array<{ id: string; status: string }>> {
  const [reason, where] =
    which === "expired"
      ? ["' stopped renewing its lease'", "and locked_until < now()"]
      : ["' died (process restarted)'", ""];
  return q.query(`
    update jobs set
      status = case when attempts >= max_attempts then 'dead' else 'queued' end,
      finished_at = case when attempts >= max_attempts then now() end,
      last_error = 'worker ' || coalesce(locked_by, '?') || ${reason},
      run_at = now(), locked_by = null, locked_until = null, updated_at = now()
    where status = 'running' ${where}
    returning id, status`);
}

/** Extends the leases of jobs still ours; returns the ids renewed (the others were lost). */
export async function renewLeases(
  q: Queryable,
  opts: { workerId: string; leaseMs: number; jobs: ClaimedJob[] },
): Promise<Set<string>> {
  const rows = await q.query<{ id: string }>(
    `update jobs j set locked_until = now() + $3::int * interval '1 millisecond'
     from unnest($1::uuid[], $2::int[]) as r(id, attempts)
     where j.id = r.id and j.attempts = r.attempts and j.locked_by = $4 and j.status = 'running'
     returning j.id`,
    [opts.jobs.map((j) => j.id), opts.jobs.map((j) => j.attempts), opts.leaseMs, opts.workerId],
  );
  return new Set(rows.map((r) => r.id));
}

const FENCE = "where id = $1 and locked_by = $2 and attempts = $3 and status = 'running'";

/** Records how a run ended; false when the job was no longer ours (nothing written). */
export async function recordOutcome(
  q: Queryable,
  job: ClaimedJob,
  workerId: string,
  outcome: Outcome,
): Promise<boolean> {
  const fence = [job.id, workerId, job.attempts];
  let rows: unknown[];
  switch (outcome.kind) {
    case "lost":
      return false;
    case "released":
      rows = await q.query(
        `update jobs set status = 'queued', attempts = attempts - 1, locked_by = null,
           locked_until = null, updated_at = now() ${FENCE} returning id`,
        fence,
      );
      break;
    case "completed":
      rows = await q.query(
        `update jobs set status = 'completed', finished_at = now(), locked_until = null,
           updated_at = now() ${FENCE} returning id`,
        fence,
      );
      break;
    case "retry":
    case "interrupted":
      rows = await q.query(
        `update jobs set status = 'queued', last_error = $4, locked_by = null,
           locked_until = null, run_at = now() + $5::int * interval '1 millisecond',
           updated_at = now() ${FENCE} returning id`,
        [...fence, outcome.error, outcome.kind === "retry" ? outcome.delayMs : 0],
      );
      break;
    case "failed":
    case "dead":
      rows = await q.query(
        `update jobs set status = $4, last_error = $5, finished_at = now(),
           locked_until = null, updated_at = now() ${FENCE} returning id`,
        [...fence, outcome.kind, outcome.error],
      );
      break;
    default:
      return assertNever(outcome);
  }
  return rows.length > 0;
}
