import type { Logger } from "pino";
import { z } from "zod";
import type { Queryable } from "../../platform/db/index.js";
import {
  defineJobs,
  type JobSchedule,
  type JobTypes,
  type RegistryOf,
} from "../../platform/queue/catalog.js";
import type { JobQueue } from "../../platform/queue/queue.js";
import { type Cause, causeSchema } from "../../tenancy.js";
import type { IngestSourceType } from "./ingest-events.js";
import type { createIngestionPipeline } from "./ingestion.pipeline.js";
import type { IngestionRecovery } from "./recovery.js";

/** Attempts for an ingestion job; the pipeline marks the version failed on the last one. */
export const INGEST_MAX_ATTEMPTS = 3;

/**
 * How old lost work must be before the repair pass touches it: a version younger than that
 * may belong to a request of another process that is still storing its file.
 */
export const REPAIR_AGE_MS = 120_000;

/** A platform job's payload: it works across tenants. */
const platformPayload = z.object({ tenantId: z.null() });

/** Jobs of the ingestion module. Every payload carries the tenant id (null: all tenants). */
export const ingestionJobTypes = {
  /** Parse, chunk, embed and index one version of a document, then make it the active one. */
  "ingest.process": {
    schema: z.object({
      tenantId: z.uuid(),
      documentId: z.uuid(),
      version: z.number().int().min(1),
      /** Who asked for the version; absent in jobs queued before causes were recorded. */
      causedBy: causeSchema.optional(),
      /** How the content came in, for the version's events; absent in older jobs and repairs. */
      sourceType: z
        .enum(["text", "batch", "url", "file", "upload", "content_update", "knowledge"])
        .optional(),
    }),
    maxAttempts: INGEST_MAX_ATTEMPTS,
  },
  /** Crash repair (recovery.ts): versions whose job was lost, jobs Redis never received. */
  "ingest.repair": { schema: platformPayload, maxAttempts: 1 },
  /** Removes direct uploads never completed, an hour after their URL expired. */
  "uploads.sweep": { schema: platformPayload, maxAttempts: 1 },
} satisfies JobTypes;

export type IngestionJobs = RegistryOf<typeof ingestionJobTypes>;

/** The module's repeatable jobs; each run is one pass, and the next one catches up. */
export const ingestionSchedules: JobSchedule[] = [
  {
    key: "ingest.repair",
    type: "ingest.repair",
    payload: { tenantId: null },
    timing: { everyMs: 60_000 },
  },
  {
    key: "uploads.sweep",
    type: "uploads.sweep",
    payload: { tenantId: null },
    timing: { everyMs: 300_000 },
  },
];

/** The module's jobs with their handlers. */
export function ingestionJobs(deps: {
  pipeline: Pick<ReturnType<typeof createIngestionPipeline>, "process">;
  recovery: IngestionRecovery;
  logger: Pick<Logger, "info">;
}) {
  return defineJobs(ingestionJobTypes, {
    "ingest.process": (job) => deps.pipeline.process(job.payload, job),
    async "ingest.repair"() {
      const done = await deps.recovery.repair(REPAIR_AGE_MS);
      if (done.versions + done.discarded > 0)
        deps.logger.info(done, "repaired lost ingestion work");
    },
    async "uploads.sweep"() {
      const uploads = await deps.recovery.sweepUploads();
      if (uploads > 0) deps.logger.info({ uploads }, "removed abandoned uploads");
    },
  });
}

/**
 * Enqueues the processing of one document version under the job id recorded on it, in `tx`
 * when given (the job then commits, or not, with what the transaction wrote).
 */
export function enqueueProcessing(
  queue: Pick<JobQueue<IngestionJobs>, "enqueue">,
  job: {
    tenantId: string;
    documentId: string;
    version: number;
    jobId: string;
    causedBy: Cause | null;
    sourceType?: IngestSourceType | undefined;
  },
  tx?: Queryable,
): Promise<{ id: string }> {
  return queue.enqueue(
    "ingest.process",
    {
      tenantId: job.tenantId,
      documentId: job.documentId,
      version: job.version,
      ...(job.causedBy ? { causedBy: job.causedBy } : {}),
      ...(job.sourceType ? { sourceType: job.sourceType } : {}),
    },
    { jobId: job.jobId, ...(tx ? { tx } : {}) },
  );
}

/** `enqueueProcessing` for many versions at once: one multi-row insert of their jobs, in `tx`. */
export function enqueueProcessingMany(
  queue: Pick<JobQueue<IngestionJobs>, "enqueueBatch">,
  jobs: ReadonlyArray<Parameters<typeof enqueueProcessing>[1]>,
  tx: Queryable,
): Promise<Array<{ id: string }>> {
  return queue.enqueueBatch(
    jobs.map((job) => ({
      type: "ingest.process" as const,
      payload: {
        tenantId: job.tenantId,
        documentId: job.documentId,
        version: job.version,
        ...(job.causedBy ? { causedBy: job.causedBy } : {}),
        ...(job.sourceType ? { sourceType: job.sourceType } : {}),
      },
      opts: { jobId: job.jobId },
    })),
    { tx },
  );
}
