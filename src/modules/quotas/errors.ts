/** The error codes the quotas module raises; their HTTP statuses are in `src/http/errors.ts`. */
export type QuotaErrorCode =
  /** 429: the work does not fit in what the quota has left; details say which and until when. */
  | "quota.exceeded"
  /** 503: the reservation could not be made (database error): the work is refused, not done unmetered. */
  | "quota.unavailable"
  /** 402: the tenant's trial ended; billable work needs a paid plan. */
  | "plan.trial_expired"
  /** 404: no plan of that id. */
  | "plan.not_found";

declare module "../../errors.js" {
  interface ErrorCodes extends Record<QuotaErrorCode, true> {}
}
