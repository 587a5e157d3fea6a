/**
 * The alerts module: the `alerts` rows (raised once per condition and period, acknowledged by
 * tenant admins, the source outbound webhooks will deliver), the rules, their scheduled
 * evaluation and the tenant's thresholds. The only file other modules and the root import.
 */
export { alertsJobs, alertsJobTypes, alertsSchedules } from "./alerts.jobs.js";
export { alertsRoutes } from "./alerts.routes.js";
export { type AlertPage, type AlertView, alertSchema } from "./alerts.schemas.js";
export { type AlertsService, createAlertsService } from "./alerts.service.js";
export {
  type AlertEvaluator,
  createAlertEvaluator,
  type EvaluationResult,
  type QuotaStatusSource,
  type UsageSignals,
} from "./evaluator.js";
export {
  ALERT_KINDS,
  type AlertCandidate,
  type AlertKind,
  type QuotaFigure,
  type QuotaStatus,
} from "./rules.js";
export { DEFAULT_THRESHOLDS, type Thresholds } from "./thresholds.js";
