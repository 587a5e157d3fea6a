import { z } from "zod";

/**
 * Response schemas of the documents routes, and through `z.infer` the types the documents
 * service returns: one definition, so the route's schema and the service cannot drift apart.
 */

export const errorSchema = z.object({ code: z.string(), message: z.string() }).nullable();

export const documentStatusSchema = z.enum(["processing", "completed", "failed"]);

export const documentSchema = z.object({
  id: z.uuid(),
  externalId: z.string().nullable(),
  title: z.string(),
  docType: z.string(),
  sourceUrl: z.string().nullable(),
  metadata: z.record(z.string(), z.string()),
  status: documentStatusSchema,
  error: errorSchema,
  activeVersion: z.number().int().nullable(),
  latestVersion: z.number().int(),
  contentHash: z.string().nullable(),
  fileSizeBytes: z.number().nullable(),
  pageCount: z.number().int().nullable(),
  chunkCount: z.number().int(),
  characterCount: z.number().int(),
  embeddingTokens: z.number().int(),
  embeddingCostUsd: z.string(),
  processingTimeMs: z.number().int().nullable(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});
export type DocumentView = z.infer<typeof documentSchema>;

export const documentPageSchema = z.object({
  items: z.array(documentSchema),
  nextCursor: z.string().nullable(),
});
export type DocumentPage = z.infer<typeof documentPageSchema>;

export const versionSchema = z.object({
  version: z.number().int(),
  status: z.enum(["pending", "processing", "active", "superseded", "duplicate", "failed"]),
  isActive: z.boolean(),
  contentHash: z.string().nullable(),
  chunkCount: z.number().int(),
  characterCount: z.number().int(),
  pageCount: z.number().int().nullable(),
  embeddingTokens: z.number().int(),
  embeddingModel: z.string().nullable(),
  /** The ledger's cost of this version's embedding (an exact decimal). */
  embeddingCostUsd: z.string(),
  jobId: z.uuid().nullable(),
  error: errorSchema,
  createdAt: z.iso.datetime(),
  activatedAt: z.iso.datetime().nullable(),
});
export type VersionView = z.infer<typeof versionSchema>;

/** The processing job of a version, as the status routes show it. */
export const jobStateSchema = z
  .object({
    id: z.uuid(),
    status: z.enum(["queued", "running", "completed", "failed", "dead"]),
    attempts: z.number().int(),
    maxAttempts: z.number().int(),
    lastError: z.string().nullable(),
  })
  .nullable();
export type JobState = z.infer<typeof jobStateSchema>;

export const documentProcessingSchema = z.object({
  documentId: z.uuid(),
  status: documentStatusSchema,
  activeVersion: z.number().int().nullable(),
  latestVersion: z.number().int(),
  error: errorSchema,
  job: jobStateSchema,
});
export type DocumentProcessing = z.infer<typeof documentProcessingSchema>;
