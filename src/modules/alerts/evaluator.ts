import type { Logger } from "pino";
import type { Clock } from "../../platform/clock.js";
import type { AlertView } from "./alerts.schemas.js";
import type { AlertsService } from "./alerts.service.js";
import {
  type AlertCandidate,
  BASELINE_HOURS,
  type CallCounts,
  costAlert,
  errorRateAlert,
  HOUR_MS,
  hourStart,
  monthStart,
  type QuotaStatus,
  quotaAlerts,
  runawayAlert,
} from "./rules.js";

/**
 * The usage figures the rules need, read from the usage module's raw tables (api_calls,
 * usage_events) by its `usage-signals.ts`; the composition root passes them in, so this module
 * reads no other module's table.
 */
export interface UsageSignals {
  /** Tenants with an API call or a billable event at or after `since`. */
  activeTenants(since: Date): Promise<string[]>;
  /** The tenant's calls in [from, to): all, and failed (status ≥ 400 except 429). */
  callCounts(tenantId: string, from: Date, to: Date): Promise<CallCounts>;
  /** The tenant's calls per UTC hour in [from, to) (both on the hour), zeros included, oldest first. */
  hourlyCalls(tenantId: string, from: Date, to: Date): Promise<number[]>;
  /** The tenant's billable cost in [from, to), USD as an exact decimal string. */
  costUsd(tenantId: string, from: Date, to: Date): Promise<string>;
}

/** The quotas service's status (`ctx.quotas.status(tenantId)`): per quota type. */
export interface QuotaStatusSource {
  status(tenantId: string): Promise<QuotaStatus>;
}

export interface EvaluationResult {
  tenants: number;
  raised: AlertView[];
}

/**
 * One evaluation pass over every tenant with recent activity (an API call in the last 25 hours
 * or a billable event this month: a tenant with neither cannot newly cross a threshold, a level
 * quota included, since reaching it takes billable work). Run by the `alerts.evaluate` schedule
 * every 5 minutes; any number of passes may run at once (each alert is raised once per key).
 * A tenant whose figures cannot be read is logged and the pass fails after the others ran.
 */
export function createAlertEvaluator(deps: {
  alerts: Pick<AlertsService, "raise" | "thresholdsOf">;
  signals: UsageSignals;
  /** Absent until the quotas module is wired: quota rules then raise nothing. */
  quotas?: QuotaStatusSource | undefined;
  clock: Clock;
  logger: Pick<Logger, "error">;
}) {
  async function candidates(tenantId: string, now: number): Promise<AlertCandidate[]> {
    const th = await deps.alerts.thresholdsOf(tenantId);
    const nowDate = new Date(now);
    const hourAgo = new Date(now - HOUR_MS);
    const h0 = hourStart(now);
    const [calls, hours, cost, quota] = await Promise.all([
      deps.signals.callCounts(tenantId, hourAgo, nowDate),
      deps.signals.hourlyCalls(tenantId, new Date(h0 - BASELINE_HOURS * HOUR_MS), new Date(h0)),
      deps.signals.costUsd(tenantId, new Date(monthStart(now)), nowDate),
      deps.quotas ? deps.quotas.status(tenantId) : Promise.resolve({}),
    ]);
    const out = quotaAlerts(quota);
    const maybe = [
      errorRateAlert(calls, th.errorRate, now),
      costAlert(cost, th.costUsdMonthly, now),
      runawayAlert(calls.total, hours, th.runaway, now),
    ];
    for (const c of maybe) if (c) out.push(c);
    return out;
  }

  return {
    async evaluate(): Promise<EvaluationResult> {
      const now = deps.clock.now();
      const since = new Date(Math.min(monthStart(now), now - 25 * HOUR_MS));
      const tenants = await deps.signals.activeTenants(since);
      const raised: AlertView[] = [];
      const failed: string[] = [];
      for (const tenantId of tenants) {
        try {
          for (const c of await candidates(tenantId, now)) {
            const r = await deps.alerts.raise(tenantId, c);
            if (r.raised && r.alert) raised.push(r.alert);
          }
        } catch (err) {
          deps.logger.error({ err, tenantId }, "alert rules could not be evaluated for a tenant");
          failed.push(tenantId);
        }
      }
      if (failed.length > 0) {
        throw new Error(
          `alert evaluation failed for ${failed.length} tenant(s): ${failed.join(", ")}`,
        );
      }
      return { tenants: tenants.length, raised };
    },
  };
}

export type AlertEvaluator = ReturnType<typeof createAlertEvaluator>;
