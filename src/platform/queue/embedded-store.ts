import type { UpdateObject } from "kysely";
import { assertNever } from "../../errors.js";
import { type Database, kysely, type Queryable, type Row, sql } from "../db/index.js";
import { msFromNow, typeIn } from "./jobs-store.js";

/**
 * The statements of the embedded worker on the `jobs` table: claim, lease renewal, sweep of
 * expired leases and the recording of an outcome.
 *
 * A running job belongs to the worker whose `locked_by` it carries, for the attempt it claimed:
 * every write about a running job is fenced on (id, locked_by, attempts, status = 'running'),
 * so a worker that lost its lease (it froze past it, and another worker took the job over) can
 * no longer write over the new owner's record.
 */

const CLAIMED_COLUMNS = ["id", "type", "payload", "attempts", "max_attempts"] as const;

/** A job as claimed; `attempts` includes this run. */
export type ClaimedJob = Row<"jobs", (typeof CLAIMED_COLUMNS)[number]>;

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

/**
 * Takes the first ready job of the given types, or none. One statement: the row lock taken by
 * FOR UPDATE SKIP LOCKED makes concurrent claimers (other processes too) take different rows.
 */
export async function claimJob(
  q: Queryable,
  opts: { workerId: string; leaseMs: number; types: string[] },
): Promise<ClaimedJob | undefined> {
  const k = kysely(q);
  const next = k
    .selectFrom("jobs")
    .select("id")
    .where("status", "=", "queued")
    .where("run_at", "<=", sql<Date>`now()`)
    .where(typeIn(opts.types))
    .orderBy("priority", "desc")
    .orderBy("run_at")
    .orderBy("created_at")
    .limit(1)
    .forUpdate()
    .skipLocked();
  return k
    .updateTable("jobs")
    .set((eb) => ({
      status: "running",
      attempts: eb("attempts", "+", 1),
      started_at: sql`now()`,
      updated_at: sql`now()`,
      locked_by: opts.workerId,
      locked_until: msFromNow(opts.leaseMs),
    }))
    .where("id", "=", next)
    .returning(CLAIMED_COLUMNS)
    .executeTakeFirst();
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
): Promise<Array<Row<"jobs", "id" | "status">>> {
  const reason = which === "expired" ? " stopped renewing its lease" : " died (process restarted)";
  return kysely(q)
    .updateTable("jobs")
    .set((eb) => {
      const spent = eb("attempts", ">=", eb.ref("max_attempts"));
      return {
        status: eb
          .case()
          .when(spent)
          .then("dead" as const)
          .else("queued" as const)
          .end(),
        finished_at: eb.case().when(spent).then(sql<Date>`now()`).end(),
        last_error: sql<string>`'worker ' || coalesce(locked_by, '?') || ${reason}`,
        run_at: sql`now()`,
        locked_by: null,
        locked_until: null,
        updated_at: sql`now()`,
      };
    })
    .where("status", "=", "running")
    .$if(which === "expired", (qb) => qb.where("locked_until", "<", sql<Date>`now()`))
    .returning(["id", "status"])
    .execute();
}

/** Extends the leases of jobs still ours; returns the ids renewed (the others were lost). */
export async function renewLeases(
  q: Queryable,
  opts: { workerId: string; leaseMs: number; jobs: ClaimedJob[] },
): Promise<Set<string>> {
  const ids = opts.jobs.map((j) => j.id);
  const attempts = opts.jobs.map((j) => j.attempts);
  const ours = sql<{ id: string; attempts: number }>`unnest(${ids}::uuid[], ${attempts}::int[])`;
  const rows = await kysely(q)
    .updateTable("jobs as j")
    .from(ours.as<"r">(sql`r(id, attempts)`))
    .set({ locked_until: msFromNow(opts.leaseMs) })
    .whereRef("j.id", "=", "r.id")
    .whereRef("j.attempts", "=", "r.attempts")
    .where("j.locked_by", "=", opts.workerId)
    .where("j.status", "=", "running")
    .returning("j.id")
    .execute();
  return new Set(rows.map((r) => r.id));
}

/**
 * Writes `set` on the job if it is still this worker's run (the fence above); false when it is
 * not, and nothing was written.
 */
async function updateOwnRun(
  q: Queryable,
  job: ClaimedJob,
  workerId: string,
  set: UpdateObject<Database, "jobs">,
): Promise<boolean> {
  const row = await kysely(q)
    .updateTable("jobs")
    .set({ ...set, updated_at: sql`now()` })
    .where("id", "=", job.id)
    .where("locked_by", "=", workerId)
    .where("attempts", "=", job.attempts)
    .where("status", "=", "running")
    .returning("id")
    .executeTakeFirst();
  return row !== undefined;
}

/** Records how a run ended; false when the job was no longer ours (nothing written). */
export async function recordOutcome(
  q: Queryable,
  job: ClaimedJob,
  workerId: string,
  outcome: Outcome,
): Promise<boolean> {
  switch (outcome.kind) {
    case "lost":
      return false;
    case "released":
      return updateOwnRun(q, job, workerId, {
        status: "queued",
        attempts: sql`attempts - 1`,
        locked_by: null,
        locked_until: null,
      });
    case "completed":
      return updateOwnRun(q, job, workerId, {
        status: "completed",
        finished_at: sql`now()`,
        locked_until: null,
      });
    case "retry":
    case "interrupted":
      return updateOwnRun(q, job, workerId, {
        status: "queued",
        last_error: outcome.error,
        locked_by: null,
        locked_until: null,
        run_at: msFromNow(outcome.kind === "retry" ? outcome.delayMs : 0),
      });
    case "failed":
    case "dead":
      return updateOwnRun(q, job, workerId, {
        status: outcome.kind,
        last_error: outcome.error,
        finished_at: sql`now()`,
        locked_until: null,
      });
    default:
      return assertNever(outcome);
  }
}
