import { z } from "zod";

/** Jobs of the ingestion module. Every payload carries the tenant id. */
export const ingestionJobs = {
  /** Parse, chunk, embed and index one version of a document, then make it the active one. */
  "ingest.process": z.object({
    tenantId: z.uuid(),
    documentId: z.uuid(),
    version: z.number().int().min(1),
  }),
  /**
   * Build or refresh the tenant's ANN and full-text indexes. Slow on big tables, so never on
   * the ingestion path; enqueued when a tenant's chunk count crosses a multiple of the ANN
   * threshold. Search keeps working on the previous state meanwhile.
   */
  "index.optimize": z.object({ tenantId: z.uuid() }),
};

export type IngestionJobs = typeof ingestionJobs;

/** Attempts for an ingestion job; the pipeline marks the version failed on the last one. */
export const INGEST_MAX_ATTEMPTS = 3;
