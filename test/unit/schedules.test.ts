import { describe, expect, it } from "vitest";
import { nextDue, uuidFrom, validateTiming } from "../../src/platform/queue/schedules.js";

const at = (iso: string) => new Date(iso);

describe("schedule due times", () => {
  it("an interval keeps its phase, and due times missed while nothing ran come once", () => {
    const every = { cron: null, every_ms: 60_000 };
    const due = at("2031-01-01T00:00:00Z");
    expect(nextDue(every, due, at("2031-01-01T00:00:00.200Z")).toISOString()).toBe(
      "2031-01-01T00:01:00.000Z",
    );
    expect(nextDue(every, due, at("2031-01-01T00:03:30Z")).toISOString()).toBe(
      "2031-01-01T00:04:00.000Z",
    );
  });

  it("a cron expression goes to its first time after the later of due time and now (UTC)", () => {
    const cron = { cron: "0 3 * * *", every_ms: null };
    const due = at("2031-01-01T03:00:00Z");
    expect(nextDue(cron, due, at("2031-01-01T03:00:01Z")).toISOString()).toBe(
      "2031-01-02T03:00:00.000Z",
    );
    expect(nextDue(cron, due, at("2031-01-05T12:00:00Z")).toISOString()).toBe(
      "2031-01-06T03:00:00.000Z",
    );
  });

  it("refuses a bad timing; a run's id is a UUID fixed by key and due time", () => {
    expect(() => validateTiming({ cron: "61 * * * *" })).toThrow(/cron/);
    expect(() => validateTiming({ everyMs: 1.5 })).toThrow(/everyMs/);
    const id = uuidFrom("k@2031-01-01T00:00:00.000Z");
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(uuidFrom("k@2031-01-01T00:00:00.000Z")).toBe(id);
    expect(uuidFrom("k@2031-01-01T00:01:00.000Z")).not.toBe(id);
  });
});
