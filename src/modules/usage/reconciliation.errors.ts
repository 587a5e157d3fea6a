/** The error codes of usage reconciliation; their HTTP statuses are in `src/http/errors.ts`. */
export type ReconciliationErrorCode = "reconciliation.invalid_window";

declare module "../../errors.js" {
  interface ErrorCodes extends Record<ReconciliationErrorCode, true> {}
}
