/**
 * The usage module (the parts of this branch: the alert signals and reconciliation; the
 * ledger, telemetry and roll-up parts add theirs). The only file other modules and the root import.
 */

export {
  reconciliationJobs,
  reconciliationJobTypes,
  reconciliationSchedules,
} from "./reconciliation.jobs.js";
export {
  createReconciliation,
  type EmbeddingFiguresSource,
  type MismatchAlerts,
  type Reconciliation,
  type RollupSource,
} from "./reconciliation.js";
export { reconciliationRoutes } from "./reconciliation.routes.js";
export type {
  PlatformReport,
  ReconciliationLine,
  TenantReport,
} from "./reconciliation.schemas.js";
export { createUsageSignals, type UsageSignalsReader } from "./usage-signals.js";
