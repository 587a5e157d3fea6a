/**
 * Application errors: a code that names the problem, a message for people, optional details.
 * Domain code throws them; the HTTP layer (`src/http/errors.ts`) maps each code to a status and
 * renders the one error shape of DESIGN.md §4. Anything thrown that is not an AppError is a bug
 * and becomes a 500.
 *
 * The codes are declared by the module that raises them: each module's `errors.ts` adds its
 * union to `ErrorCodes` below by declaration merging, so this file imports no module, and the
 * HTTP layer's status map, typed `Record<ErrorCode, number>`, fails to compile when a module adds
 * a code without a status.
 */

/** Codes any layer may raise: malformed requests, validation, lookups, faults. */
export type CommonErrorCode =
  | "validation.failed"
  | "request.malformed_json"
  | "request.body_too_large"
  | "request.unsupported_media_type"
  | "request.malformed_url"
  | "request.malformed"
  | "request.malformed_multipart"
  | "request.aborted"
  | "request.timeout"
  | "request.uri_too_long"
  | "request.headers_too_large"
  | "route.not_found"
  | "route.method_not_allowed"
  | "not_found"
  | "internal"
  | "service.unavailable";

/**
 * Every code, as the keys of one interface. A module adds its own with
 * `declare module "../../errors.js" { interface ErrorCodes extends Record<MyCode, true> {} }`.
 */
export interface ErrorCodes extends Record<CommonErrorCode, true> {}

export type ErrorCode = keyof ErrorCodes;

export class AppError extends Error {
  override name = "AppError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    /** Extra response headers, e.g. Retry-After. */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }
}

export function notFound(what: string): AppError {
  return new AppError("not_found", `${what} not found`);
}

/** The compile-time proof that a `switch` covers a union; reaching it at run time is a bug. */
export function assertNever(value: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(value)}`);
}
