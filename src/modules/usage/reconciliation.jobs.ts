import type { Logger } from "pino";
import { z } from "zod";
import { defineJobs, type JobSchedule, type JobTypes } from "../../platform/queue/catalog.js";
import type { Reconciliation } from "./reconciliation.js";

/** The daily reconciliation; it works across tenants (tenantId null). */
export const reconciliationJobTypes = {
  "usage.reconcile": { schema: z.object({ tenantId: z.null() }), maxAttempts: 3 },
} satisfies JobTypes;

/**
 * At 00:30 UTC, for the previous UTC day: late enough for the telemetry buffers and the hourly
 * roll-ups of the day's last hour. A rerun raises nothing new (one alert per tenant and day).
 */
export const reconciliationSchedules: JobSchedule[] = [
  {
    key: "usage.reconcile",
    type: "usage.reconcile",
    payload: { tenantId: null },
    timing: { cron: "30 0 * * *" },
  },
];

export function reconciliationJobs(deps: {
  reconciliation: Pick<Reconciliation, "runDaily">;
  logger: Pick<Logger, "info" | "warn">;
}) {
  return defineJobs(reconciliationJobTypes, {
    async "usage.reconcile"() {
      const r = await deps.reconciliation.runDaily();
      if (r.mismatched.length > 0)
        deps.logger.warn(r, "usage does not reconcile for some tenants; alerts raised");
      else deps.logger.info({ tenants: r.tenants }, "usage reconciled");
    },
  });
}
