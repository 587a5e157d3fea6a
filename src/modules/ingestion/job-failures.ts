import { AppError, assertNever, type ErrorCode } from "../../errors.js";
import { EmbeddingError } from "../../platform/embeddings/embedder.js";
import { FetchError, type FetchErrorCode } from "../../platform/fetch/safe-fetch.js";
import { NonRetryableError } from "../../platform/queue/queue.js";
import { ExtractionError, type ExtractionErrorCode } from "./extract.js";

/**
 * Why processing a version failed, as recorded on the version and its document (`error.code`)
 * and on the job. Each code has one retry decision, in `retryable` below.
 */
export type JobFailureCode =
  | FetchErrorCode
  | ExtractionErrorCode
  /** The stored bytes of the version are gone from the blob store. */
  | "ingestion.content_missing"
  /** A URL version whose document has no URL (any more). */
  | "ingestion.no_url"
  /** The URL answered with a type the tenant does not ingest. */
  | "ingestion.unsupported_type"
  | "ingestion.embedding_failed"
  /** The version's embedding tokens do not fit in the tenant's tokens quota (nothing was embedded). */
  | "quota.exceeded"
  /** Anything unforeseen: retried, since it may pass. */
  | "ingestion.internal";

/**
 * What a failure records: a job failure code, or the code of an AppError raised by a service
 * the job called (e.g. `embedding.not_configured`), which keeps its own.
 */
export type RecordedFailureCode = JobFailureCode | ErrorCode;

/** A failure of the pipeline's own that no retry can fix. */
export class IngestionJobError extends NonRetryableError {
  override name = "IngestionJobError";
  constructor(
    message: string,
    override readonly code: JobFailureCode,
  ) {
    super(message, code);
  }
}

export interface FailureDecision {
  retry: boolean;
  code: RecordedFailureCode;
  message: string;
}

/** Maps an error to a retry decision: failures that a retry cannot fix stop at once. */
export function classify(err: unknown): FailureDecision {
  const message = (err as Error)?.message ?? String(err);
  // A service refused (a setting, a missing tenant): it would answer the same next time. The
  // quota store not answering is the exception: fail closed now, and try again later.
  if (err instanceof AppError)
    return { retry: err.code === "quota.unavailable", code: err.code, message };
  const code = failureCode(err);
  return { retry: retryable(code, err), code, message };
}

function failureCode(err: unknown): JobFailureCode {
  if (err instanceof IngestionJobError) return err.code;
  if (err instanceof ExtractionError || err instanceof FetchError) return err.code;
  if (err instanceof EmbeddingError) return "ingestion.embedding_failed";
  return "ingestion.internal";
}

function retryable(code: JobFailureCode, err: unknown): boolean {
  switch (code) {
    case "ingestion.url_timeout":
    case "ingestion.url_unreachable":
    case "ingestion.internal":
      return true;
    case "ingestion.url_http_error": {
      // A server error or a 429 may pass; any other answer is the server's last word.
      const status = err instanceof FetchError ? (err.status ?? 500) : 500;
      return status >= 500 || status === 429;
    }
    case "ingestion.embedding_failed":
      // The embedder tells: 429 and 5xx pass, a bad key or an unknown model do not.
      return err instanceof EmbeddingError && err.retryable;
    case "ingestion.url_forbidden":
    case "ingestion.url_too_large":
    case "ingestion.type_mismatch":
    case "ingestion.pdf_encrypted":
    case "ingestion.pdf_corrupt":
    case "ingestion.no_text":
    case "ingestion.extraction_timeout":
    case "ingestion.extraction_failed":
    case "ingestion.content_missing":
    case "ingestion.no_url":
    case "ingestion.unsupported_type":
    case "quota.exceeded":
      return false;
    default:
      return assertNever(code);
  }
}
