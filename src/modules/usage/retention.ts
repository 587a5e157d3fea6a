import type { Logger } from "pino";
import type { Clock } from "../../platform/clock.js";
import { type Db, kysely, type Queryable } from "../../platform/db/index.js";
import { apiCallsStore } from "./api-calls.store.js";

const DAY_MS = 86_400_000;

export interface RetentionPolicy {
  /** Raw API calls (telemetry) are kept this many days. */
  apiCallsDays: number;
  /** Billable usage events, the invoice basis, are kept this many days. */
  usageEventsDays: number;
  /** Rows deleted per statement. */
  batchSize: number;
}

export interface RetentionResult {
  apiCalls: number;
  usageEvents: number;
  /** Statements run (each deleted at most `batchSize` rows). */
  statements: number;
}

/**
 * Deletes at most `limit` billable events that occurred before `cutoff` in one statement.
 * Roll-ups keep their own rows: removing raw events never changes a reported period.
 */
async function deleteUsageEventsBefore(q: Queryable, cutoff: Date, limit: number): Promise<number> {
  const db = kysely(q);
  const result = await db
    .deleteFrom("usage_events")
    .where(
      "id",
      "in",
      db.selectFrom("usage_events").select("id").where("occurred_at", "<", cutoff).limit(limit),
    )
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}

/**
 * Retention (issue 9 §9): raw API calls older than `apiCallsDays`, billable events older than
 * `usageEventsDays`. Each statement deletes one bounded batch and commits on its own, so a
 * large backlog never holds one long transaction or lock, and a run that stops half-way has
 * kept what it deleted; the next run continues. Ages are measured on the app clock, which
 * stamped the rows.
 */
export function createRetention(deps: {
  db: Db;
  clock: Clock;
  logger: Pick<Logger, "info">;
  policy: RetentionPolicy;
}) {
  const { db, policy } = deps;
  async function sweep(
    del: (q: Queryable, cutoff: Date, limit: number) => Promise<number>,
    cutoff: Date,
  ): Promise<{ rows: number; statements: number }> {
    let rows = 0;
    let statements = 0;
    for (;;) {
      const n = await del(db, cutoff, policy.batchSize);
      statements += 1;
      rows += n;
      if (n < policy.batchSize) return { rows, statements };
    }
  }
  return {
    /** One pass over both tables; returns what it deleted. */
    async run(): Promise<RetentionResult> {
      const now = deps.clock.now();
      const calls = await sweep(
        apiCallsStore.deleteBefore,
        new Date(now - policy.apiCallsDays * DAY_MS),
      );
      const events = await sweep(
        deleteUsageEventsBefore,
        new Date(now - policy.usageEventsDays * DAY_MS),
      );
      const result = {
        apiCalls: calls.rows,
        usageEvents: events.rows,
        statements: calls.statements + events.statements,
      };
      if (result.apiCalls + result.usageEvents > 0) deps.logger.info(result, "retention pass");
      return result;
    },
  };
}

export type Retention = ReturnType<typeof createRetention>;
