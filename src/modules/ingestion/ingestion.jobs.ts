import { z } from "zod";
import type { JobQueue } from "../../platform/queue/queue.js";
import { type Cause, causeSchema } from "../../tenancy.js";

/** Jobs of the ingestion module. Every payload carries the tenant id. */
export const ingestionJobs = {
  /** Parse, chunk, embed and index one version of a document, then make it the active one. */
  "ingest.process": z.object({
    tenantId: z.uuid(),
    documentId: z.uuid(),
    version: z.number().int().min(1),
    /** Who asked for the version; absent in jobs queued before causes were recorded. */
    causedBy: causeSchema.optional(),
  }),
  /**
   * Compact the tenant's vector tables and build or rebuild its ANN index when due. Slow on
   * big tables, so never on the ingestion path; asked for by the vector index when a tenant
   * passes the ANN threshold, when its index has too many pieces, and a few minutes after a
   * compaction to remove the table versions it left. Search keeps working meanwhile.
   */
  "index.optimize": z.object({ tenantId: z.uuid() }),
};

export type IngestionJobs = typeof ingestionJobs;

/** Attempts for an ingestion job; the pipeline marks the version failed on the last one. */
export const INGEST_MAX_ATTEMPTS = 3;

/** Enqueues the processing of one document version under the job id recorded on it. */
export function enqueueProcessing(
  queue: JobQueue<IngestionJobs>,
  job: {
    tenantId: string;
    documentId: string;
    version: number;
    jobId: string;
    causedBy: Cause | null;
  },
): Promise<{ id: string }> {
  return queue.enqueue(
    "ingest.process",
    {
      tenantId: job.tenantId,
      documentId: job.documentId,
      version: job.version,
      ...(job.causedBy ? { causedBy: job.causedBy } : {}),
    },
    { maxAttempts: INGEST_MAX_ATTEMPTS, jobId: job.jobId },
  );
}
