/**
 * The usage module: roll-ups, reports and exports (this file's part; the ledger's exports join
 * here). The only file other modules and the composition root import.
 */

export { createExports, csvField, csvLine, type Exports } from "./export.js";
export { metricsRoutes } from "./metrics.routes.js";
export type { UsagePoint } from "./metrics.schemas.js";
export { createReports, type Reports } from "./reports.js";
export { type RollupJobs, rollupJobs, rollupJobTypes, rollupSchedules } from "./rollups.jobs.js";
export { createRollups, type Rollups, type VersionCountSource } from "./rollups.js";
export type { Period, RollupRow } from "./rollups.store.js";
