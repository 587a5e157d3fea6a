export type { LanceVectorIndex, LanceVectorIndexOptions, VectorLogger } from "./lancedb.js";
export { createLanceVectorIndex } from "./lancedb.js";
export type { TenantLock } from "./lock.js";
export { createInProcessTenantLock, createPgTenantLock } from "./lock.js";
export { MAX_SEARCH_LIMIT, VectorInputError } from "./validate.js";
export type { CatalogRow, ChunkRow, SearchFilters, VectorHit, VectorIndex } from "./vectors.js";
