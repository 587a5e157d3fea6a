import { describe, expect, it } from "vitest";
import {
  checkWindow,
  normalizeDecimal,
  previousDay,
} from "../../src/modules/usage/reconciliation.js";

describe("reconciliation values and windows", () => {
  it("compares decimals by value, not spelling", () => {
    expect(normalizeDecimal("1.5000000000")).toBe("1.5");
    expect(normalizeDecimal("0001.50")).toBe("1.5");
    expect(normalizeDecimal("0.0000000000")).toBe("0");
    expect(normalizeDecimal("-0.000")).toBe("0");
    expect(normalizeDecimal(42)).toBe("42");
    expect(normalizeDecimal("120")).toBe("120");
    expect(normalizeDecimal("0.000002")).toBe("0.000002");
  });

  it("takes the previous UTC day, across month and year ends", () => {
    expect(previousDay(Date.parse("2027-01-01T00:30:00Z"))).toEqual({
      from: new Date("2026-12-31T00:00:00Z"),
      to: new Date("2027-01-01T00:00:00Z"),
    });
    expect(previousDay(Date.parse("2026-03-01T23:59:59Z")).from).toEqual(
      new Date("2026-02-28T00:00:00Z"),
    );
  });

  it("accepts whole-hour windows up to 31 days and nothing else", () => {
    const d = (s: string) => new Date(s);
    expect(() => checkWindow(d("2026-12-01T00:00:00Z"), d("2026-12-01T01:00:00Z"))).not.toThrow();
    expect(() => checkWindow(d("2026-12-01T00:00:00Z"), d("2027-01-01T00:00:00Z"))).not.toThrow();
    for (const [from, to] of [
      ["2026-12-01T00:00:01Z", "2026-12-02T00:00:00Z"],
      ["2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z"],
      ["2026-12-01T00:00:00Z", "2027-01-01T01:00:00Z"],
    ] as const) {
      expect(() => checkWindow(d(from), d(to))).toThrow(
        expect.objectContaining({ code: "reconciliation.invalid_window" }),
      );
    }
  });
});
