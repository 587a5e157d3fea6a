export { API_KEY_PREFIX, MAX_ACTIVE_API_KEYS } from "./api-keys.js";
export { cliAuditContext } from "./audit-contexts.js";
export { authRoutes } from "./auth.routes.js";
export type { ApiKeyInfo, TokenPair, User } from "./auth.schemas.js";
export * as authSchemas from "./auth.schemas.js";
export type { AuthenticateOptions, AuthService, IdentifiedCaller } from "./auth.service.js";
export { createAuthService } from "./auth.service.js";
export { createTokenSigner, type TokenSigner } from "./tokens.js";
export { normalizeEmail } from "./users.js";
