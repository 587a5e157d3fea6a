/** The error codes of the usage ledger and price book; their statuses are in `src/http/errors.ts`. */
export type UsageErrorCode =
  /** A price for the same (provider, model, unit, effectiveFrom) is already in the book. */
  | "price.duplicate"
  /** A re-rating window whose start is not before its end. */
  | "usage.invalid_window";

declare module "../../errors.js" {
  interface ErrorCodes extends Record<UsageErrorCode, true> {}
}
