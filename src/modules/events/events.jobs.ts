import { z } from "zod";
import {
  defineJobs,
  type JobSchedule,
  type JobTypes,
  type RegistryOf,
} from "../../platform/queue/catalog.js";
import type { EventsRetention } from "./retention.js";

/** The events feed's jobs; platform jobs (across every tenant). */
export const eventsJobTypes = {
  /** Deletes events past EVENTS_RETENTION_DAYS, or their name's EVENTS_RETENTION override. */
  "events.retention": { schema: z.object({ tenantId: z.null() }), maxAttempts: 3 },
} satisfies JobTypes;

export type EventsJobs = RegistryOf<typeof eventsJobTypes>;

/** Daily at 04:17 UTC, off the other retention jobs' minutes. */
export const eventsSchedules: JobSchedule[] = [
  {
    key: "events.retention",
    type: "events.retention",
    payload: { tenantId: null },
    timing: { cron: "17 4 * * *" },
  },
];

export function eventsJobs(deps: { retention: Pick<EventsRetention, "run"> }) {
  return defineJobs(eventsJobTypes, {
    async "events.retention"() {
      await deps.retention.run();
    },
  });
}
