/** The error codes the tenants module raises; their HTTP statuses are in `src/http/errors.ts`. */
export type TenantErrorCode =
  | "tenant.suspended"
  | "config.exceeds_plan"
  | "embedding.not_configured";

declare module "../../errors.js" {
  interface ErrorCodes extends Record<TenantErrorCode, true> {}
}
