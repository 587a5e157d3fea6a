/**
 * The HTTP face of the domain's errors (`src/errors.ts`): each code's status, and the body of
 * every error response (DESIGN.md §4). A code without a status here does not compile.
 */
import type { ErrorCode } from "../errors.js";

export const ERROR_STATUS = {
  "validation.failed": 400,
  "request.malformed_json": 400,
  "request.body_too_large": 413,
  "request.unsupported_media_type": 415,
  /** Percent-encoding in the path that does not decode (e.g. `%E0%A4%A`). */
  "request.malformed_url": 400,
  /** Not valid HTTP: conflicting framing headers, a bad chunk size, control characters. */
  "request.malformed": 400,
  /** The client went away (or reset the connection) before its request was read. */
  "request.aborted": 400,
  "request.timeout": 408,
  "request.uri_too_long": 414,
  "request.headers_too_large": 431,
  "auth.unauthenticated": 401,
  "auth.invalid_token": 401,
  "auth.token_expired": 401,
  "auth.invalid_api_key": 401,
  "auth.invalid_credentials": 401,
  "auth.refresh_token_invalid": 401,
  "auth.refresh_token_reused": 401,
  "auth.session_revoked": 401,
  "auth.ambiguous_credentials": 401,
  "auth.forbidden": 403,
  "auth.scope_required": 403,
  "auth.tenant_required": 403,
  "auth.platform_admin_required": 403,
  "tenant.suspended": 403,
  not_found: 404,
  "route.not_found": 404,
  "route.method_not_allowed": 405,
  "auth.email_taken": 409,
  "user.last_owner": 409,
  "auth.too_many_api_keys": 409,
  "config.exceeds_plan": 422,
  "ingestion.max_documents": 422,
  "idempotency.key_reused": 422,
  "idempotency.in_progress": 409,
  "ingestion.unsupported_type": 415,
  "ingestion.type_not_allowed": 422,
  "ingestion.file_too_large": 413,
  "ingestion.batch_too_large": 413,
  "ingestion.url_forbidden": 422,
  "ingestion.url_unreachable": 422,
  "ingestion.empty_content": 400,
  "ingestion.presign_unavailable": 409,
  "ingestion.upload_missing": 409,
  "ingestion.upload_in_progress": 409,
  "ingestion.upload_size_mismatch": 422,
  "ingestion.too_many_files": 413,
  "ingestion.invalid_text": 400,
  /** A file whose bytes are not of its declared type: a PDF named .txt, a .pdf that is not. */
  "ingestion.type_mismatch": 415,
  "request.malformed_multipart": 400,
  "document.managed_by_knowledge": 409,
  "auth.too_many_attempts": 429,
  /** Over the tenant's per-minute or per-day limit of a route group (Retry-After says when). */
  "rate_limit.exceeded": 429,
  internal: 500,
  "service.unavailable": 503,
  "embedding.not_configured": 409,
  "price.duplicate": 409,
  "usage.invalid_window": 400,
  /** A reconciliation window not on whole hours, reversed, or longer than 31 days. */
  "reconciliation.invalid_window": 400,
  "quota.exceeded": 429,
  "quota.unavailable": 503,
  "plan.trial_expired": 402,
  "plan.not_found": 404,
  /** Faults of the code that emits an event (no client creates one): server errors. */
  "events.invalid_payload": 500,
  "events.payload_too_large": 500,
  /** A chat message over CHAT_MAX_MESSAGE_CHARS. */
  "chat.message_too_long": 413,
  /** The answering model failed: nothing of the turn was saved or billed. */
  "chat.model_failed": 502,
} as const satisfies Record<ErrorCode, number>;

/** The status an error code is answered with. */
export function statusFor(code: ErrorCode): number {
  return ERROR_STATUS[code];
}

/** The body of every error response. */
export interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
  requestId: string;
}
