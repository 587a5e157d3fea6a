import { z } from "zod";
import {
  defineJobs,
  type JobSchedule,
  type JobTypes,
  type RegistryOf,
} from "../../platform/queue/catalog.js";
import type { AuditTrail } from "./audit.trail.js";

/** The audit log's jobs; platform jobs (across every chain). */
export const auditJobTypes = {
  /** Signs a digest of every chain that advanced, for the hour just ended. */
  "audit.digest": { schema: z.object({ tenantId: z.null() }), maxAttempts: 5 },
  /** Deletes audit rows past AUDIT_RETENTION_DAYS, anchoring each chain's new start. */
  "audit.retention": { schema: z.object({ tenantId: z.null() }), maxAttempts: 3 },
} satisfies JobTypes;

export type AuditJobs = RegistryOf<typeof auditJobTypes>;

/**
 * Digests at 2 minutes past every hour (the hour just ended); retention daily at 03:41 UTC, off
 * the other retention jobs' minute.
 */
export const auditSchedules: JobSchedule[] = [
  {
    key: "audit.digest",
    type: "audit.digest",
    payload: { tenantId: null },
    timing: { cron: "2 * * * *" },
  },
  {
    key: "audit.retention",
    type: "audit.retention",
    payload: { tenantId: null },
    timing: { cron: "41 3 * * *" },
  },
];

export function auditJobs(deps: { trail: Pick<AuditTrail, "digestAll" | "retention"> }) {
  return defineJobs(auditJobTypes, {
    async "audit.digest"() {
      await deps.trail.digestAll();
    },
    async "audit.retention"(job) {
      await deps.trail.retention({ id: job.id, name: "audit.retention" });
    },
  });
}
