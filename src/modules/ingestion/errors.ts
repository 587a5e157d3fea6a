/** The error codes the ingestion module raises; their HTTP statuses are in `src/http/errors.ts`. */
export type IngestionErrorCode =
  | "document.managed_by_knowledge"
  | "ingestion.max_documents"
  | "idempotency.key_reused"
  | "idempotency.in_progress"
  | "ingestion.unsupported_type"
  | "ingestion.type_not_allowed"
  | "ingestion.file_too_large"
  | "ingestion.batch_too_large"
  | "ingestion.url_forbidden"
  | "ingestion.url_unreachable"
  | "ingestion.empty_content"
  | "ingestion.presign_unavailable"
  | "ingestion.upload_missing"
  | "ingestion.upload_in_progress"
  | "ingestion.upload_size_mismatch"
  | "ingestion.too_many_files"
  | "ingestion.invalid_text"
  | "ingestion.type_mismatch";

declare module "../../errors.js" {
  interface ErrorCodes extends Record<IngestionErrorCode, true> {}
}
