export type { LanceVectorIndex, LanceVectorIndexOptions, VectorLogger } from "./lancedb.js";
export { createLanceVectorIndex } from "./lancedb.js";
export type { TenantLock } from "./lock.js";
export { createInProcessTenantLock, createPgTenantLock } from "./lock.js";
export type {
  AnnIndexSettings,
  AnnIndexType,
  AnnSearchSettings,
  FullTextSettings,
} from "./tenant-tables.js";
export {
  ANN_INDEX_TYPES,
  annIndexConfig,
  DEFAULT_ANN_INDEX,
  DEFAULT_ANN_SEARCH,
  DEFAULT_FULL_TEXT,
} from "./tenant-tables.js";
export { MAX_SEARCH_LIMIT, VectorInputError } from "./validate.js";
export type { CatalogRow, ChunkRow, SearchFilters, VectorHit, VectorIndex } from "./vectors.js";
