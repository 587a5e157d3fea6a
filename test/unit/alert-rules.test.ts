import { describe, expect, it } from "vitest";
import {
  costAlert,
  errorRateAlert,
  median,
  type QuotaFigure,
  quotaAlerts,
  runawayAlert,
} from "../../src/modules/alerts/rules.js";
import { DEFAULT_THRESHOLDS, effectiveThresholds } from "../../src/modules/alerts/thresholds.js";

const NOW = Date.parse("2026-12-31T23:40:00Z");
const quota = (used: number, limit: number | null, periodStart = "2026-12-01T00:00:00Z") =>
  ({
    limit,
    used,
    reserved: 0,
    remaining: limit === null ? 0 : Math.max(limit - used, 0),
    periodStart,
    resetAt: "2027-01-01T00:00:00Z",
  }) satisfies QuotaFigure;

describe("alert rules", () => {
  it("raises quota_80 from 80 % and quota_100 from 100 %, keyed by the quota's month", () => {
    expect(quotaAlerts({ tokens: quota(799, 1000) })).toEqual([]);
    const at80 = quotaAlerts({ tokens: quota(800, 1000) });
    expect(at80.map((a) => [a.kind, a.dedupeKey, a.severity])).toEqual([
      ["quota_80", "quota_80:tokens:2026-12", "warning"],
    ]);
    const at100 = quotaAlerts({ tokens: quota(1000, 1000), searches: quota(850, 1000) });
    expect(at100.map((a) => a.dedupeKey)).toEqual([
      "quota_100:tokens:2026-12",
      "quota_80:searches:2026-12",
    ]);
    // A new period is a new key (year boundary included).
    expect(quotaAlerts({ tokens: quota(900, 1000, "2027-01-01T00:00:00Z") })[0]?.dedupeKey).toBe(
      "quota_80:tokens:2027-01",
    );
    expect(quotaAlerts({ tokens: quota(10 ** 9, null), documents: quota(5, 0) })).toEqual([]);
  });

  it("raises error_rate above the threshold with at least minCalls calls, keyed by hour", () => {
    const th = { threshold: 0.05, minCalls: 20 };
    expect(errorRateAlert({ total: 19, failed: 19 }, th, NOW)).toBeUndefined();
    expect(errorRateAlert({ total: 20, failed: 1 }, th, NOW)).toBeUndefined(); // exactly 5 %
    const a = errorRateAlert({ total: 20, failed: 2 }, th, NOW);
    expect(a?.dedupeKey).toBe("error_rate:2026-12-31T23");
    expect(a?.details).toMatchObject({ calls: 20, failed: 2, rate: 0.1 });
  });

  it("raises cost_threshold above the month's threshold, keyed by month; null is off", () => {
    expect(costAlert("100.0000000000", 100, NOW)).toBeUndefined();
    expect(costAlert("100.0000000001", 100, NOW)?.dedupeKey).toBe("cost_threshold:2026-12");
    expect(costAlert("1000000", null, NOW)).toBeUndefined();
  });

  it("takes the median of the baseline hours, zeros included", () => {
    expect(median([])).toBe(0);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([...Array(20).fill(0), 1000, 1000, 1000, 1000])).toBe(0);
  });

  it("raises runaway_usage above max(factor × median of the 24 previous hours, floor)", () => {
    const th = { factor: 10, floor: 50 };
    const steady = Array(24).fill(10);
    expect(runawayAlert(100, steady, th, NOW)).toBeUndefined(); // 10 × 10 is the limit itself
    const a = runawayAlert(101, steady, th, NOW);
    expect(a?.dedupeKey).toBe("runaway_usage:2026-12-31T23");
    expect(a?.details).toMatchObject({ baselineMedian: 10, limit: 100, lastHourCalls: 101 });
    // A quiet tenant: the floor decides, so its first busy hour is not runaway…
    const quiet = Array(24).fill(0);
    expect(runawayAlert(50, quiet, th, NOW)).toBeUndefined();
    expect(runawayAlert(51, quiet, th, NOW)?.details).toMatchObject({ limit: 50 });
    // …and a few busy hours in the baseline do not move the median.
    const spiky = [...Array(20).fill(2), 500, 500, 500, 500];
    expect(runawayAlert(60, spiky, th, NOW)?.details).toMatchObject({ baselineMedian: 2 });
  });

  it("fills thresholds a tenant did not set with the documented defaults", () => {
    expect(effectiveThresholds({})).toEqual(DEFAULT_THRESHOLDS);
    expect(DEFAULT_THRESHOLDS).toEqual({
      errorRate: { threshold: 0.05, minCalls: 20 },
      costUsdMonthly: 100,
      runaway: { factor: 10, floor: 600 },
    });
    expect(effectiveThresholds({ costUsdMonthly: null }).costUsdMonthly).toBeNull();
    expect(effectiveThresholds({ runaway: { factor: 3, floor: 10 } }).runaway).toEqual({
      factor: 3,
      floor: 10,
    });
  });
});
