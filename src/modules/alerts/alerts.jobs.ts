import type { Logger } from "pino";
import { z } from "zod";
import { defineJobs, type JobSchedule, type JobTypes } from "../../platform/queue/catalog.js";
import type { AlertEvaluator } from "./evaluator.js";

/** Jobs of the alerts module. The evaluation works across tenants (tenantId null). */
export const alertsJobTypes = {
  /** One pass of the alert rules over every active tenant (evaluator.ts). */
  "alerts.evaluate": { schema: z.object({ tenantId: z.null() }), maxAttempts: 1 },
} satisfies JobTypes;

/** Every 5 minutes; a missed run is caught up by the next (alerts are once per period). */
export const alertsSchedules: JobSchedule[] = [
  {
    key: "alerts.evaluate",
    type: "alerts.evaluate",
    payload: { tenantId: null },
    timing: { everyMs: 300_000 },
  },
];

export function alertsJobs(deps: { evaluator: AlertEvaluator; logger: Pick<Logger, "info"> }) {
  return defineJobs(alertsJobTypes, {
    async "alerts.evaluate"() {
      const done = await deps.evaluator.evaluate();
      if (done.raised.length > 0) {
        deps.logger.info(
          { tenants: done.tenants, raised: done.raised.map((a) => a.dedupeKey) },
          "alerts raised",
        );
      }
    },
  });
}
