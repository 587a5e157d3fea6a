/**
 * The usage module (the parts of this branch: the alert signals and reconciliation; the
 * ledger, telemetry and roll-up parts add theirs). The only file other modules and the root import.
 */
export { createUsageSignals, type UsageSignalsReader } from "./usage-signals.js";
