export { type Embedders, embedderFor, tenantEmbedder } from "./embedding.js";
export { tenantsRoutes } from "./tenants.routes.js";
export * as tenantSchemas from "./tenants.schemas.js";
export { DOCUMENT_TYPES } from "./tenants.schemas.js";
export type {
  EmbeddingSettings,
  EmbeddingSettingsCache,
  Tenant,
  TenantRateLimits,
  TenantsService,
} from "./tenants.service.js";
export { createTenantsService, toTenant } from "./tenants.service.js";
export type { TenantStatus } from "./tenants.store.js";
