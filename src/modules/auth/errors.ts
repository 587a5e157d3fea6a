/** The error codes the auth module raises; their HTTP statuses are in `src/http/errors.ts`. */
export type AuthErrorCode =
  | "auth.unauthenticated"
  | "auth.invalid_token"
  | "auth.token_expired"
  | "auth.invalid_api_key"
  | "auth.invalid_credentials"
  | "auth.refresh_token_invalid"
  | "auth.refresh_token_reused"
  | "auth.session_revoked"
  | "auth.ambiguous_credentials"
  | "auth.forbidden"
  | "auth.scope_required"
  | "auth.tenant_required"
  | "auth.platform_admin_required"
  | "auth.email_taken"
  | "auth.too_many_api_keys"
  | "auth.too_many_attempts"
  | "user.last_owner";

declare module "../../errors.js" {
  interface ErrorCodes extends Record<AuthErrorCode, true> {}
}
