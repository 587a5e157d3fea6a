/**
 * The audit module: the append-only, hash-chained audit log (seed 000 §3). `record` appends a
 * row to a tenant's chain in the caller's transaction. The only file other modules and the
 * composition root import.
 */

export { auditJobs, auditJobTypes, auditSchedules } from "./audit.jobs.js";
export { auditRoutes } from "./audit.routes.js";
export { auditActorOf, createAuditLog, MAX_VALUES_BYTES } from "./audit.service.js";
export { type AuditTrail, createAuditTrail } from "./audit.trail.js";
export {
  type AnonymousAuditContext,
  AUDIT_ACTIONS,
  AUDIT_ACTOR_TYPES,
  AUDIT_RESULTS,
  type AuditAction,
  type AuditActorType,
  type AuditContext,
  type AuditEntityType,
  type AuditEntry,
  type AuditLog,
  type AuditResult,
} from "./audit.types.js";
export {
  canonicalJson,
  GENESIS_HASH,
  isSecretKey,
  NIL_UUID,
  REDACTED,
  rowHash,
} from "./canonical.js";
export {
  describeResult,
  OfflineVerifyError,
  verifyExportFile,
} from "./offline.js";
export {
  createChainVerifier,
  type DigestInput,
  RETENTION_EVENT,
  type RowInput,
  type VerifyResult,
} from "./verify.js";
