export { type ApiCallRow, apiCallsStore, type InsertMethod } from "./api-calls.store.js";
export {
  createRetention,
  type Retention,
  type RetentionPolicy,
  type RetentionResult,
} from "./retention.js";
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
