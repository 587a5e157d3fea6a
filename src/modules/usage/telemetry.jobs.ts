import { z } from "zod";
import {
  defineJobs,
  type JobSchedule,
  type JobTypes,
  type RegistryOf,
} from "../../platform/queue/catalog.js";
import type { Retention } from "./retention.js";

/** Jobs of API-call telemetry and retention; platform jobs (across tenants). */
export const telemetryJobTypes = {
  /** Deletes raw API calls and billable events past their retention, in bounded batches. */
  "usage.retention": { schema: z.object({ tenantId: z.null() }), maxAttempts: 3 },
} satisfies JobTypes;

export type TelemetryJobs = RegistryOf<typeof telemetryJobTypes>;

/** Once a day at 03:17 UTC (off the hour, away from the roll-ups' and other operators' jobs). */
export const telemetrySchedules: JobSchedule[] = [
  {
    key: "usage.retention",
    type: "usage.retention",
    payload: { tenantId: null },
    timing: { cron: "17 3 * * *" },
  },
];

export function telemetryJobs(deps: { retention: Pick<Retention, "run"> }) {
  return defineJobs(telemetryJobTypes, {
    async "usage.retention"() {
      await deps.retention.run();
    },
  });
}
