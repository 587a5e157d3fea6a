import { z } from "zod";
import {
  defineJobs,
  type JobSchedule,
  type JobTypes,
  type RegistryOf,
} from "../../platform/queue/catalog.js";
import type { Rollups } from "./rollups.js";

/** A platform job: it works across tenants, and no tenant sees it. */
const platformPayload = z.object({ tenantId: z.null() });

export const rollupJobTypes = {
  /**
   * One roll-up pass (rollups.ts `run`): recomputes the windows that received raw rows since
   * the watermark. One attempt: a failed pass leaves the watermark, and the next run redoes it.
   */
  "usage.rollup": { schema: platformPayload, maxAttempts: 1 },
} satisfies JobTypes;

export type RollupJobs = RegistryOf<typeof rollupJobTypes>;

/** Every minute: reports lag the raw data by at most about a minute (plus the buffer's flush). */
export const rollupSchedules: JobSchedule[] = [
  {
    key: "usage.rollup",
    type: "usage.rollup",
    payload: { tenantId: null },
    timing: { everyMs: 60_000 },
  },
];

export function rollupJobs(deps: { rollups: Pick<Rollups, "run"> }) {
  return defineJobs(rollupJobTypes, {
    async "usage.rollup"() {
      await deps.rollups.run();
    },
  });
}
