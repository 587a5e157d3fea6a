import type { UpdateObject } from "kysely";
import { assertNever } from "../../errors.js";
import { type Database, type Db, kysely, type Queryable, type Row, sql } from "../db/index.js";
import { msFromNow, PLATFORM_TENANT_KEY, typeIn } from "./jobs-store.js";

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

/** How claims choose among ready jobs. */
export interface ClaimPolicy {
  /** Round-robin across tenants (true), or one FIFO across all (false, the old order). */
  fair: boolean;
  /** Most running jobs of one tenant across all workers; 0 for no cap. Fair claims only. */
  tenantConcurrency: number;
}

/** Capped claims on PostgreSQL take turns under this transaction-scoped advisory lock. */
const CLAIM_LOCK = 0x6a6f6273; // "jobs"

/**
 * Takes the next ready job round-robin across tenants: among the tenants that have a ready
 * job (and fewer than `tenantConcurrency` running, when capped), the one whose last claim is
 * oldest (a tenant never served first) — by claim order, a number from a sequence, not by the
 * clock, which can step back; within a tenant, priority, then run_at, then enqueue
 * order, as the FIFO claim. Priority still comes first across tenants.
 *
 * The tenants with queued jobs are found by a skip scan over `jobs_fair_idx` (one probe per
 * tenant, not one row per job), so a tenant's backlog of thousands costs a claim no more than
 * one job does. One statement: on PGlite, which runs one statement at a time, that alone makes
 * the cap exact. On PostgreSQL a capped claim runs in a transaction that first takes an
 * advisory lock, so claims of every worker and process take turns and read committed running
 * counts: two claimers cannot both take a tenant's last free slot. The transaction sets an
 * idle-in-transaction timeout, so a process frozen while holding the lock (SIGSTOP, a long GC)
 * is cut off by the server after seconds instead of stopping every capped claim.
 */
export async function claimFairJob(
  db: Db,
  opts: { workerId: string; leaseMs: number; types: string[]; tenantConcurrency: number },
): Promise<ClaimedJob | undefined> {
  if (opts.tenantConcurrency === 0 || db.kind !== "postgres") return fairClaim(db, opts);
  return db.transaction(async (tx) => {
    await sql`select set_config('idle_in_transaction_session_timeout', '5000', true),
                     pg_advisory_xact_lock(${CLAIM_LOCK})`.execute(kysely(tx));
    return fairClaim(tx, opts);
  });
}

async function fairClaim(
  q: Queryable,
  opts: { workerId: string; leaseMs: number; types: string[]; tenantConcurrency: number },
): Promise<ClaimedJob | undefined> {
  const nil = sql.lit(PLATFORM_TENANT_KEY);
  const key = sql`coalesce(tenant_id, ${nil}::uuid)`;
  const cap = opts.tenantConcurrency;
  const { rows } = await sql<ClaimedJob>`
    with recursive tenants(t) as (
      (select ${key} from jobs where status = 'queued' order by 1 limit 1)
      union all
      select (select ${key} from jobs
              where status = 'queued' and ${key} > tenants.t order by 1 limit 1)
      from tenants where tenants.t is not null
    ),
    busy as (
      select ${key} as t, count(*)::int as n from jobs where status = 'running' group by 1
    ),
    heads as (
      select h.id, tenants.t, h.priority, h.run_at, h.created_at, turns.turn
      from tenants
      left join busy on busy.t = tenants.t
      left join job_tenant_turns turns on turns.tenant_key = tenants.t
      cross join lateral (
        select j.id, j.priority, j.run_at, j.created_at from jobs j
        where j.status = 'queued' and coalesce(j.tenant_id, ${nil}::uuid) = tenants.t
          and j.run_at <= now() and j.type = any(${opts.types}::text[])
        order by j.priority desc, j.run_at, j.created_at
        limit 1
        for update skip locked
      ) h
      where tenants.t is not null
        and (${cap}::int = 0 or coalesce(busy.n, 0) < ${cap}::int)
    ),
    pick as (
      select id, t from heads
      order by priority desc, turn nulls first, run_at, created_at
      limit 1
    ),
    turn as (
      insert into job_tenant_turns (tenant_key, last_claimed_at, turn)
      select t, clock_timestamp(), nextval('job_tenant_turn_seq') from pick
      on conflict (tenant_key) do update
        set last_claimed_at = excluded.last_claimed_at, turn = excluded.turn
    )
    update jobs set
      status = 'running',
      attempts = attempts + 1,
      started_at = now(),
      updated_at = now(),
      locked_by = ${opts.workerId},
      locked_until = ${msFromNow(opts.leaseMs)}
    from pick
    where jobs.id = pick.id
    returning jobs.id, jobs.type, jobs.payload, jobs.attempts, jobs.max_attempts`.execute(
    kysely(q),
  );
  return rows[0];
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
