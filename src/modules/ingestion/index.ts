/**
 * The documents-and-ingestion module: the catalog of a tenant's documents and their versions,
 * and every way content comes in (JSON, URL, file, direct upload) up to the processing job
 * that makes a version active. The only file other modules and the composition root import.
 */

export { changedKeys } from "./audit-entries.js";
export type { ContentInput } from "./content.js";
export { documentsRoutes } from "./documents.routes.js";
export {
  type DocumentProcessing,
  type DocumentView,
  type JobState,
  jobStateSchema,
  type VersionView,
} from "./documents.schemas.js";
export {
  createDocumentsService,
  type DocumentsService,
  type EmbeddingFigures,
} from "./documents.service.js";
export { createThreadExtractor } from "./extract-pool.js";
export { createIdempotency } from "./idempotency.js";
export {
  type IngestionJobs,
  ingestionJobs,
  ingestionJobTypes,
  ingestionSchedules,
} from "./ingestion.jobs.js";
export { createIngestionPipeline } from "./ingestion.pipeline.js";
export { ingestionRoutes } from "./ingestion.routes.js";
export { type IngestResult, ingestResultSchema, metadataSchema } from "./ingestion.schemas.js";
export {
  createIngestionService,
  type DocumentInput,
  type IngestionService,
} from "./ingestion.service.js";
export { createIngestionRecovery, type IngestionRecovery } from "./recovery.js";
export { createUploadsService, type UploadsService } from "./uploads.js";
export { uploadsRoutes } from "./uploads.routes.js";
export type { DocumentStats, DocumentSummary, VersionHourCounts } from "./usage-stats.js";
