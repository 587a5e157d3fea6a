import type { Logger } from "pino";
import { z } from "zod";
import type { Clock } from "../../platform/clock.js";
import { defineJobs, type JobSchedule, type JobTypes } from "../../platform/queue/catalog.js";
import { jobContext } from "../../tenancy.js";
import type { UsageRecorder } from "./ledger.js";

/** A tenant's storage level: its documents and their bytes. */
export interface StorageLevel {
  tenantId: string;
  documents: number;
  bytes: number;
}

/**
 * Where the daily snapshot reads levels: a page of tenants (in id order, after `after`) with
 * their levels, zero included. The composition root builds it from the tenants and documents
 * services; the usage module reads no other module's tables.
 */
export type StorageLevelsSource = (page: {
  after: string | null;
  limit: number;
}) => Promise<StorageLevel[]>;

/** Storage is the platform's: priced by the `tenantrag`/`storage` rows (0 unless set). */
export const STORAGE_PRICE_KEY = { provider: "tenantrag", model: "storage" } as const;

/** The two gauge facts of a storage level, about `subject`. */
export function storageFacts(
  level: { documents: number; bytes: number },
  subject: { type: "tenant_day" | "storage_change"; id: string },
  occurredAt?: Date,
) {
  const common = {
    ...STORAGE_PRICE_KEY,
    payer: "platform" as const,
    subject,
    ...(occurredAt ? { occurredAt } : {}),
  };
  return [
    { ...common, metric: "documents_stored" as const, quantity: level.documents },
    { ...common, metric: "storage_bytes" as const, quantity: level.bytes },
  ];
}

export const usageJobTypes = {
  /** The daily snapshot of every tenant's storage gauges (documents stored, bytes). */
  "usage.snapshot": { schema: z.object({ tenantId: z.null() }), maxAttempts: 3 },
} satisfies JobTypes;

export const usageSchedules: JobSchedule[] = [
  {
    key: "usage.snapshot",
    type: "usage.snapshot",
    payload: { tenantId: null },
    // Just after midnight UTC: the snapshot of a day is its level as the day starts.
    timing: { cron: "5 0 * * *" },
  },
];

const PAGE = 200;

/**
 * Records the day's gauge snapshot for every tenant. The event ids are (tenant, metric,
 * `tenant_day`, date), so a retried or repeated run of one day records nothing twice.
 */
export async function snapshotStorage(deps: {
  usage: UsageRecorder;
  levels: StorageLevelsSource;
  clock: Clock;
  job: { id: string; name: string };
}): Promise<number> {
  const at = new Date(deps.clock.now());
  const day = at.toISOString().slice(0, 10);
  let after: string | null = null;
  let tenants = 0;
  for (;;) {
    const page = await deps.levels({ after, limit: PAGE });
    for (const level of page) {
      const ctx = jobContext({ tenantId: level.tenantId, job: deps.job, causedBy: null });
      await deps.usage.record(ctx, storageFacts(level, { type: "tenant_day", id: day }, at));
      tenants += 1;
    }
    const last = page[page.length - 1];
    if (!last || page.length < PAGE) return tenants;
    after = last.tenantId;
  }
}

export function usageJobs(deps: {
  usage: UsageRecorder;
  levels: StorageLevelsSource;
  clock: Clock;
  logger: Pick<Logger, "info">;
}) {
  return defineJobs(usageJobTypes, {
    async "usage.snapshot"(job) {
      const tenants = await snapshotStorage({
        ...deps,
        job: { id: job.id, name: "usage.snapshot" },
      });
      deps.logger.info({ tenants }, "storage usage snapshot recorded");
    },
  });
}
