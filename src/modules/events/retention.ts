import type { Logger } from "pino";
import type { Clock } from "../../platform/clock.js";
import type { Db } from "../../platform/db/index.js";
import { eventsStore } from "./events.store.js";
import { EVENT_NAMES, isEventName } from "./taxonomy.js";

const DAY_MS = 86_400_000;

export interface EventsRetentionPolicy {
  /** Events of a name without an override are kept this many days. */
  defaultDays: number;
  /** Days per event name, replacing `defaultDays` for that name (longer or shorter). */
  byName: Record<string, number>;
  /** Rows deleted per statement. */
  batchSize: number;
}

/** Thrown at start when EVENTS_RETENTION names an event the taxonomy does not have. */
export class EventsRetentionConfigError extends Error {
  override name = "EventsRetentionConfigError";
}

/**
 * Deletes events past their retention: each overridden name by its own age, every other name
 * by the default. Each statement deletes one bounded batch and commits on its own (as the usage
 * retention does), so a large backlog holds no long transaction and a run stopped half-way
 * keeps what it deleted. Ages are measured on the app clock, which stamped the rows.
 */
export function createEventsRetention(deps: {
  db: Db;
  clock: Clock;
  logger: Pick<Logger, "info">;
  policy: EventsRetentionPolicy;
}) {
  const { policy } = deps;
  const unknown = Object.keys(policy.byName).filter((n) => !isEventName(n));
  if (unknown.length > 0) {
    throw new EventsRetentionConfigError(
      `EVENTS_RETENTION names ${unknown.join(", ")}, not event(s) of the taxonomy (${EVENT_NAMES.join(", ")})`,
    );
  }
  const overridden = Object.keys(policy.byName);

  async function sweep(cutoff: Date, which: { name: string } | { except: readonly string[] }) {
    let rows = 0;
    let statements = 0;
    for (;;) {
      const n = await eventsStore.deleteBefore(deps.db, cutoff, policy.batchSize, which);
      statements += 1;
      rows += n;
      if (n < policy.batchSize) return { rows, statements };
    }
  }

  return {
    /** One pass; returns the rows deleted per name (`*`: the names without an override). */
    async run(): Promise<{ deleted: Record<string, number>; statements: number }> {
      const now = deps.clock.now();
      const deleted: Record<string, number> = {};
      let statements = 0;
      for (const [name, days] of Object.entries(policy.byName)) {
        const r = await sweep(new Date(now - days * DAY_MS), { name });
        deleted[name] = r.rows;
        statements += r.statements;
      }
      const rest = await sweep(new Date(now - policy.defaultDays * DAY_MS), { except: overridden });
      deleted["*"] = rest.rows;
      statements += rest.statements;
      const total = Object.values(deleted).reduce((a, b) => a + b, 0);
      if (total > 0) deps.logger.info({ deleted }, "events past retention deleted");
      return { deleted, statements };
    },
  };
}

export type EventsRetention = ReturnType<typeof createEventsRetention>;
