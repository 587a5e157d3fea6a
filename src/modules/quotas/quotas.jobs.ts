import type { Logger } from "pino";
import { z } from "zod";
import {
  defineJobs,
  type JobSchedule,
  type JobTypes,
  type RegistryOf,
} from "../../platform/queue/catalog.js";
import type { QuotasService } from "./quotas.service.js";

/** Jobs of the quotas module (platform jobs: they work across tenants). */
export const quotaJobTypes = {
  /** Gives back what expired reservations held (work a crash left), purges finished ones. */
  "quotas.sweep": { schema: z.object({ tenantId: z.null() }), maxAttempts: 1 },
} satisfies JobTypes;

export type QuotaJobs = RegistryOf<typeof quotaJobTypes>;

/** Every minute: a crashed request's reservation is back at most a minute after it expired. */
export const quotaSchedules: JobSchedule[] = [
  {
    key: "quotas.sweep",
    type: "quotas.sweep",
    payload: { tenantId: null },
    timing: { everyMs: 60_000 },
  },
];

export function quotaJobs(deps: {
  quotas: Pick<QuotasService, "sweep">;
  logger: Pick<Logger, "info">;
}) {
  return defineJobs(quotaJobTypes, {
    async "quotas.sweep"() {
      const done = await deps.quotas.sweep();
      if (done.expired + done.purged > 0) deps.logger.info(done, "swept quota reservations");
    },
  });
}
