export { authRoutes } from "./auth.routes.js";
export type { ApiKeyInfo, AuthService, User } from "./auth.service.js";
export { API_KEY_PREFIX, createAuthService, normalizeEmail } from "./auth.service.js";
export { createTokenSigner, type TokenSigner } from "./tokens.js";
