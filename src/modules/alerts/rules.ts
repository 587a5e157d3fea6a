import type { Thresholds } from "./thresholds.js";

/**
 * The alert rules, as pure functions of the figures the evaluator gathers and of the time: each
 * returns what to raise, with the dedupe key that makes it once per period. The evaluator
 * (evaluator.ts) reads the figures and raises; nothing here touches a store.
 */

export const ALERT_KINDS = [
  "quota_80",
  "quota_100",
  "error_rate",
  "cost_threshold",
  "runaway_usage",
  "reconciliation_mismatch",
] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];
export const SEVERITIES = ["info", "warning", "critical"] as const;
export type Severity = (typeof SEVERITIES)[number];

/** An alert to raise; raising it twice with one `dedupeKey` keeps the first. */
export interface AlertCandidate {
  kind: AlertKind;
  severity: Severity;
  dedupeKey: string;
  message: string;
  details: Record<string, unknown>;
}

/** One quota as the quotas service reports it (`ctx.quotas.status`). */
export interface QuotaFigure {
  limit: number | null;
  used: number;
  reserved: number;
  remaining: number;
  periodStart: Date | string;
  resetAt: Date | string;
}
export type QuotaStatus = Record<string, QuotaFigure>;

const iso = (t: Date | string | number) => new Date(t).toISOString();
/** `2026-12`: the UTC month of `t`. */
export const utcMonth = (t: Date | string | number) => iso(t).slice(0, 7);
/** `2026-12-02T04`: the UTC hour of `t`. */
export const utcHour = (t: Date | string | number) => iso(t).slice(0, 13);

export const HOUR_MS = 3_600_000;

/** Start of the UTC hour holding `now` (epoch ms). */
export const hourStart = (now: number) => Math.floor(now / HOUR_MS) * HOUR_MS;

/** Start of the UTC month holding `now` (epoch ms). */
export function monthStart(now: number): number {
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

/**
 * Quota at 80 % and 100 % of its limit, once per quota period (the key names the period's
 * month: `quota_80:tokens:2026-12`). Only the highest level crossed is raised: a quota that
 * jumps past 100 % at once raises `quota_100` alone. Unlimited quotas (`limit` null) and zero
 * limits (nothing allowed: every use is refused, nothing to warn about) raise nothing. `used`
 * counts, not `reserved`: a reservation may be released.
 */
export function quotaAlerts(status: QuotaStatus): AlertCandidate[] {
  const out: AlertCandidate[] = [];
  for (const [quota, q] of Object.entries(status)) {
    if (q.limit === null || q.limit <= 0) continue;
    const ratio = q.used / q.limit;
    const level = ratio >= 1 ? 100 : ratio >= 0.8 ? 80 : undefined;
    if (level === undefined) continue;
    const period = utcMonth(q.periodStart);
    out.push({
      kind: level === 100 ? "quota_100" : "quota_80",
      severity: level === 100 ? "critical" : "warning",
      dedupeKey: `quota_${level}:${quota}:${period}`,
      message: `${quota} quota at ${Math.floor(ratio * 100)} % (${q.used} of ${q.limit})`,
      details: {
        quota,
        limit: q.limit,
        used: q.used,
        reserved: q.reserved,
        percent: Math.floor(ratio * 1000) / 10,
        periodStart: iso(q.periodStart),
        resetAt: iso(q.resetAt),
      },
    });
  }
  return out;
}

/** Calls of the last hour: all, and failed (status ≥ 400 except 429). */
export interface CallCounts {
  total: number;
  failed: number;
}

/** Error rate over the threshold with at least `minCalls` calls; once per UTC hour. */
export function errorRateAlert(
  calls: CallCounts,
  th: Thresholds["errorRate"],
  now: number,
): AlertCandidate | undefined {
  if (calls.total < th.minCalls) return undefined;
  const rate = calls.failed / calls.total;
  if (rate <= th.threshold) return undefined;
  return {
    kind: "error_rate",
    severity: "warning",
    dedupeKey: `error_rate:${utcHour(now)}`,
    message: `${(rate * 100).toFixed(1)} % of the last hour's ${calls.total} calls failed (threshold ${(th.threshold * 100).toFixed(1)} %)`,
    details: {
      calls: calls.total,
      failed: calls.failed,
      rate,
      threshold: th.threshold,
      minCalls: th.minCalls,
      windowStart: iso(now - HOUR_MS),
      windowEnd: iso(now),
    },
  };
}

/** The month's cost (a decimal string, exact) above the threshold; once per UTC month. */
export function costAlert(
  costUsd: string,
  threshold: number | null,
  now: number,
): AlertCandidate | undefined {
  if (threshold === null) return undefined;
  if (!(Number(costUsd) > threshold)) return undefined;
  return {
    kind: "cost_threshold",
    severity: "warning",
    dedupeKey: `cost_threshold:${utcMonth(now)}`,
    message: `usage cost this month is ${costUsd} USD, above the ${threshold} USD threshold`,
    details: { costUsd, thresholdUsd: threshold, month: utcMonth(now) },
  };
}

/** The median of `values` (the mean of the middle two for an even count); 0 for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1
    ? (s[mid] as number)
    : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** How many complete hours the runaway baseline looks back over. */
export const BASELINE_HOURS = 24;

/**
 * Runaway usage (seed 000's abuse detection): the calls of the last 60 minutes above
 * `max(factor × median, floor)`, the median taken over the call counts of the
 * `BASELINE_HOURS` complete UTC hours before the current one (`baselineHours`, zeros
 * included). Relative to the tenant's own habit, so a large tenant's normal day is not runaway
 * and a small tenant's sudden thousand calls are; the floor keeps a quiet tenant's first busy
 * hour from counting. Once per UTC hour.
 */
export function runawayAlert(
  lastHourCalls: number,
  baselineHours: readonly number[],
  th: Thresholds["runaway"],
  now: number,
): AlertCandidate | undefined {
  const med = median(baselineHours);
  const limit = Math.max(th.factor * med, th.floor);
  if (lastHourCalls <= limit) return undefined;
  return {
    kind: "runaway_usage",
    severity: "critical",
    dedupeKey: `runaway_usage:${utcHour(now)}`,
    message: `${lastHourCalls} calls in the last hour, above ${limit} (${th.factor} × the median hour of the previous ${BASELINE_HOURS} h, ${med}; floor ${th.floor})`,
    details: {
      lastHourCalls,
      baselineMedian: med,
      factor: th.factor,
      floor: th.floor,
      limit,
      baselineHours: baselineHours.length,
      windowStart: iso(now - HOUR_MS),
      windowEnd: iso(now),
    },
  };
}
