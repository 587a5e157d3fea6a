/**
 * The vector index port: each tenant's chunks with their vectors and text, searchable by
 * vector, by full text, or both. LanceDB, one database per tenant.
 */
export interface ChunkRow {
  /** `<documentId>:<version>:<chunkIndex>` — stable, so re-writing a version is idempotent. */
  id: string;
  documentId: string;
  version: number;
  chunkIndex: number;
  text: string;
  vector: number[];
  /** Document title and type, copied for filtering and display. */
  title: string;
  docType: string;
  /** Flat string map for metadata filters. */
  metadata: Record<string, string>;
}

export interface CatalogRow {
  documentId: string;
  version: number;
  title: string;
  docType: string;
  summary: string;
  chunkCount: number;
}

export interface SearchFilters {
  documentIds?: string[];
  docTypes?: string[];
  /** Every key must equal the value. */
  metadata?: Record<string, string>;
}

export interface VectorHit {
  id: string;
  documentId: string;
  version: number;
  chunkIndex: number;
  text: string;
  title: string;
  docType: string;
  metadata: Record<string, string>;
  /** Higher is better; comparable only within one mode. */
  score: number;
}

export interface VectorIndex {
  /**
   * Writes the chunks of one document version (replacing rows with the same ids). Writes for
   * one tenant are serialized across workers and processes; tenants proceed in parallel.
   */
  upsertChunks(tenantId: string, rows: ChunkRow[]): Promise<void>;
  /**
   * Records a document version's catalog summary, replacing the document's row unless that
   * row is of a newer version (versions may finish out of order).
   */
  upsertCatalog(tenantId: string, row: CatalogRow): Promise<void>;
  /** Removes a document: the chunks of all its versions, and its catalog row. */
  deleteDocument(tenantId: string, documentId: string): Promise<void>;
  /**
   * Removes chunks of some of a document's versions: those older than `olderThan` (what an
   * activation replaced; newer versions, perhaps still being written, stay), or exactly
   * `version` (a version that was out of date when it finished).
   */
  deleteVersions(
    tenantId: string,
    documentId: string,
    which: { olderThan: number } | { version: number },
  ): Promise<void>;
  /** Nearest neighbours of `vector`: exact below the ANN threshold, ANN above it. */
  searchVector(
    tenantId: string,
    vector: number[],
    limit: number,
    filters?: SearchFilters,
  ): Promise<VectorHit[]>;
  /** Full-text (BM25) search over chunk text. */
  searchText(
    tenantId: string,
    query: string,
    limit: number,
    filters?: SearchFilters,
  ): Promise<VectorHit[]>;
  /** Chunks in the tenant's index. */
  count(tenantId: string): Promise<number>;
  /**
   * Builds or refreshes the ANN and full-text indexes when the table has grown past the
   * threshold. Slow on large tables: run it from a background job, never on the request path;
   * searches keep working on the previous state while it runs.
   */
  optimize(tenantId: string): Promise<{ annIndexed: boolean }>;
  /** Removes everything of the tenant. */
  dropTenant(tenantId: string): Promise<void>;
  close(): Promise<void>;
}
