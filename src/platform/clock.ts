/**
 * The time application code decides with: token expiry, session and trial ends, upload URL
 * lifetimes, periods. Services receive it in their dependencies, so a test moves time instead
 * of sleeping.
 *
 * `now()` answers milliseconds since the epoch, as `Date.now()` does: arithmetic on durations
 * needs no conversion, and `new Date(clock.now())` gives a Date where one is wanted.
 *
 * What it does not cover: timestamps the database takes itself (`now()` in SQL: the database
 * decides, and stays the one clock rows agree on); time kept inside libraries that take no
 * clock (rate-limiter-flexible's windows, Redis key expiry, BullMQ's delays and locks); timers
 * (`setTimeout`, intervals) and measured durations, which are about elapsed time, not dates.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/** The real clock. */
export const systemClock: Clock = { now: () => Date.now() };

/** A clock that moves only when told to. */
export interface TestClock extends Clock {
  /** Moves time forward (or back, with a negative `ms`). */
  advance(ms: number): void;
  set(time: Date | number): void;
}

/** A controllable clock starting at `start`. */
export function createTestClock(start: Date | number): TestClock {
  let now = typeof start === "number" ? start : start.getTime();
  return {
    now: () => now,
    advance(ms) {
      now += ms;
    },
    set(time) {
      now = typeof time === "number" ? time : time.getTime();
    },
  };
}
