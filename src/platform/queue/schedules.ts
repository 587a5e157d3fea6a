import { CronExpressionParser } from "cron-parser";
import { type Db, kysely, type Queryable, sql } from "../db/index.js";
import { deterministicUuid } from "../ids.js";
import { InvalidJobError, insertJobs, type NewJob, typeIn } from "./jobs-store.js";
import type { ScheduleTiming } from "./queue.js";

/**
 * Repeatable jobs on the `job_schedules` table (the embedded queue's; BullMQ keeps its own
 * schedulers in Redis). A due row is claimed with FOR UPDATE SKIP LOCKED; the run's job is
 * inserted and `next_run_at` moved on in the same transaction, and the job's id is derived
 * from (key, due time): two workers can neither both take one due time nor, should anything
 * else go wrong, record it twice.
 */

/** Checks a timing; throws InvalidJobError for a bad cron expression or interval. */
export function validateTiming(timing: ScheduleTiming): void {
  if ("cron" in timing) {
    try {
      CronExpressionParser.parse(timing.cron, { tz: "UTC" });
    } catch (err) {
      throw new InvalidJobError(
        `invalid cron expression "${timing.cron}": ${(err as Error).message}`,
      );
    }
  } else if (!Number.isInteger(timing.everyMs) || timing.everyMs < 1) {
    throw new InvalidJobError(`everyMs must be a positive integer, got ${timing.everyMs}`);
  }
}

/** A schedule's first due time when declared at `now`: at once for an interval. */
function firstDue(timing: { cron: string | null }, now: Date): Date {
  return timing.cron !== null ? cronAfter(timing.cron, now) : now;
}

function cronAfter(cron: string, after: Date): Date {
  return CronExpressionParser.parse(cron, { tz: "UTC", currentDate: after }).next().toDate();
}

/**
 * The due time after `due`, once it has run at `now`: the first one later than `now`, so that
 * due times missed while no worker ran are run once, not each. Intervals keep their phase.
 */
export function nextDue(
  timing: { cron: string | null; every_ms: number | null },
  due: Date,
  now: Date,
): Date {
  const after = due > now ? due : now;
  if (timing.cron !== null) return cronAfter(timing.cron, after);
  const every = timing.every_ms as number;
  const steps = Math.floor((after.getTime() - due.getTime()) / every) + 1;
  return new Date(due.getTime() + steps * every);
}

/** A UUID that is a function of `text` (the shape of a v5 UUID, from SHA-1). */
export function uuidFrom(text: string): string {
  return deterministicUuid("tenantrag.job", text);
}

/**
 * Creates or replaces a schedule. Its next due time is kept when the timing did not change
 * (every process declares its schedules at start; a restart must not move them), else set
 * anew: at once for an interval, the next cron time for a cron expression.
 */
export async function upsertSchedule(
  q: Queryable,
  s: { key: string; type: string; payload: unknown; timing: ScheduleTiming; now: Date },
): Promise<void> {
  const cron = "cron" in s.timing ? s.timing.cron : null;
  const everyMs = "everyMs" in s.timing ? s.timing.everyMs : null;
  const first = firstDue({ cron }, s.now);
  await kysely(q)
    .insertInto("job_schedules")
    .values({
      key: s.key,
      type: s.type,
      payload: JSON.stringify(s.payload),
      cron,
      every_ms: everyMs,
      next_run_at: first,
    })
    .onConflict((oc) =>
      oc.column("key").doUpdateSet((eb) => ({
        type: eb.ref("excluded.type"),
        payload: eb.ref("excluded.payload"),
        cron: eb.ref("excluded.cron"),
        every_ms: eb.ref("excluded.every_ms"),
        updated_at: sql`now()`,
        next_run_at: eb
          .case()
          .when(
            eb.and([
              eb("job_schedules.cron", "is not distinct from", eb.ref("excluded.cron")),
              eb("job_schedules.every_ms", "is not distinct from", eb.ref("excluded.every_ms")),
            ]),
          )
          .then(eb.ref("job_schedules.next_run_at"))
          .else(eb.ref("excluded.next_run_at"))
          .end(),
      })),
    )
    .execute();
}

const DUE_COLUMNS = ["key", "type", "payload", "cron", "every_ms", "next_run_at"] as const;

/**
 * Enqueues the run of one schedule due at `now` (of the given types), in one transaction with
 * the advance of its row; undefined when none is due. `prepare` turns the due schedule into
 * the job to insert (the queue's validation and defaults), or skips the due time with
 * undefined; if it throws, nothing is written.
 */
export async function enqueueDueRun(
  db: Db,
  opts: {
    now: Date;
    types: string[];
    prepare(row: {
      key: string;
      type: string;
      payload: unknown;
      jobId: string;
    }): NewJob | undefined;
  },
): Promise<{ job: NewJob | undefined } | undefined> {
  // A look first, outside a transaction: nearly always nothing is due, and on PGlite a
  // transaction every poll would hold the one connection from everything else.
  const due = await kysely(db)
    .selectFrom("job_schedules")
    .select("key")
    .where("next_run_at", "<=", opts.now)
    .where(typeIn(opts.types))
    .limit(1)
    .executeTakeFirst();
  if (!due) return undefined;
  return db.transaction(async (tx) => {
    const k = kysely(tx);
    const row = await k
      .selectFrom("job_schedules")
      .select(DUE_COLUMNS)
      .where("next_run_at", "<=", opts.now)
      .where(typeIn(opts.types))
      .orderBy("next_run_at")
      .limit(1)
      .forUpdate()
      .skipLocked()
      .executeTakeFirst();
    if (!row) return undefined;
    const job = opts.prepare({
      key: row.key,
      type: row.type,
      payload: row.payload,
      jobId: uuidFrom(`${row.key}@${row.next_run_at.toISOString()}`),
    });
    await k
      .updateTable("job_schedules")
      .set({
        next_run_at: nextDue(row, row.next_run_at, opts.now),
        last_run_at: row.next_run_at,
        updated_at: sql`now()`,
      })
      .where("key", "=", row.key)
      .execute();
    if (job) await insertJobs(tx, [job]);
    return { job };
  });
}
