import { z } from "zod";

/**
 * A tenant's alert thresholds. Stored per tenant in `alert_settings.thresholds` (migration
 * 0016) as a partial object; every key left out takes the default below, so a tenant that never
 * set anything is alerted with exactly these values:
 *
 * - `errorRate`: at least `minCalls` calls in the last hour, and failed calls (status ≥ 400
 *   except 429, which counts as rate limited) more than `threshold` of them. Default 5 % of at
 *   least 20 calls.
 * - `costUsdMonthly`: the tenant's usage cost (every billable event, both payers) in the current
 *   UTC month above this many USD. Default 100; `null` turns the rule off.
 * - `runaway`: the calls of the last 60 minutes above `max(factor × median, floor)`, where the
 *   median is of the tenant's call counts in each of the 24 complete UTC hours before the
 *   current one (hours without calls count as 0). Default factor 10, floor 600 (ten calls a
 *   minute: below that a burst is never runaway, whatever the baseline).
 * - Quotas have no threshold to set: 80 % and 100 % of every limited quota, always.
 */
export const thresholdsSchema = z.strictObject({
  errorRate: z
    .strictObject({
      threshold: z.number().min(0).max(1),
      minCalls: z.number().int().min(1).max(1_000_000),
    })
    .optional(),
  costUsdMonthly: z.number().min(0).max(1e12).nullable().optional(),
  runaway: z
    .strictObject({
      factor: z.number().min(1).max(1000),
      floor: z.number().int().min(1).max(1e9),
    })
    .optional(),
});

export type ThresholdSettings = z.infer<typeof thresholdsSchema>;

export interface Thresholds {
  errorRate: { threshold: number; minCalls: number };
  costUsdMonthly: number | null;
  runaway: { factor: number; floor: number };
}

export const DEFAULT_THRESHOLDS: Thresholds = {
  errorRate: { threshold: 0.05, minCalls: 20 },
  costUsdMonthly: 100,
  runaway: { factor: 10, floor: 600 },
};

/** The thresholds in force: the tenant's settings over the defaults. */
export function effectiveThresholds(settings: ThresholdSettings | undefined): Thresholds {
  return {
    errorRate: settings?.errorRate ?? DEFAULT_THRESHOLDS.errorRate,
    costUsdMonthly:
      settings?.costUsdMonthly === undefined
        ? DEFAULT_THRESHOLDS.costUsdMonthly
        : settings.costUsdMonthly,
    runaway: settings?.runaway ?? DEFAULT_THRESHOLDS.runaway,
  };
}
