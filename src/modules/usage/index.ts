/**
 * The usage module: the billable usage ledger, the price book and re-rating; API-call
 * telemetry and retention; roll-ups, reports and exports; reconciliation. The only file other
 * modules and the composition root import.
 */

export { type ApiCallRow, apiCallsStore, type InsertMethod } from "./api-calls.store.js";
export { createExports, csvField, csvLine, type Exports } from "./export.js";
export {
  type BillableFact,
  createUsageService,
  GAUGE_METRICS,
  type Metric,
  type Payer,
  type RecordedFact,
  type SubjectType,
  type UsageRecorder,
  type UsageService,
  unitOf,
  usageEventId,
} from "./ledger.js";
export { metricsRoutes } from "./metrics.routes.js";
export type { UsagePoint } from "./metrics.schemas.js";
export { ANY_MODEL, priceAt } from "./prices.js";
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
export { createReports, type Reports } from "./reports.js";
export type { RerateHooks, VersionCost } from "./rerate.js";
export {
  createRetention,
  type Retention,
  type RetentionPolicy,
  type RetentionResult,
} from "./retention.js";
export { type RollupJobs, rollupJobs, rollupJobTypes, rollupSchedules } from "./rollups.jobs.js";
export { createRollups, type Rollups, type VersionCountSource } from "./rollups.js";
export type { Period, RollupRow } from "./rollups.store.js";
export {
  type TelemetryJobs,
  telemetryJobs,
  telemetryJobTypes,
  telemetrySchedules,
} from "./telemetry.jobs.js";
export {
  type ApiCall,
  createTelemetry,
  type Telemetry,
  type TelemetryOptions,
} from "./telemetry.js";
export {
  type StorageLevel,
  type StorageLevelsSource,
  snapshotStorage,
  storageFacts,
  usageJobs,
  usageJobTypes,
  usageSchedules,
} from "./usage.jobs.js";
export { usageAdminRoutes } from "./usage.routes.js";
export type { AffectedWindows, Price, RerateRun } from "./usage.schemas.js";
export { createUsageSignals, type UsageSignalsReader } from "./usage-signals.js";
