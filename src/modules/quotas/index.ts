export type { LimitsPatch, PlanQuotas } from "./quota-admin.js";
export { quotaHeadersHook } from "./quota-headers.js";
export { QUOTA_PERIOD, QUOTA_TYPES, type QuotaType } from "./quota-types.js";
export { quotaJobs, quotaJobTypes, quotaSchedules } from "./quotas.jobs.js";
export { quotasRoutes } from "./quotas.routes.js";
export {
  createQuotasService,
  type LevelSource,
  type QuotaStatus,
  type QuotaStatuses,
  type QuotasService,
  quotaExceeded,
  type Reservation,
} from "./quotas.service.js";
