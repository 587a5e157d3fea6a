import { isUuid } from "../ids.js";
import type { CatalogRow, ChunkRow, SearchFilters } from "./vectors.js";

/**
 * Input the vector index refuses: a malformed id, a vector of the wrong size, a bad limit. It
 * is a caller's bug (ids come from Postgres, vectors from the embedder), never retryable, and
 * nothing has been written when it is thrown.
 */
export class VectorInputError extends Error {
  override name = "VectorInputError";
}

/** Most results one search may ask for. */
export const MAX_SEARCH_LIMIT = 1000;
const INT32_MAX = 2 ** 31 - 1;

/**
 * The tenant id, lower-cased. It names a directory, so it must be a UUID: never `..`, a slash or
 * a different spelling of the same tenant (on a case-sensitive file system `A…` and `a…` would
 * be two directories).
 */
export function tenantKey(tenantId: string): string {
  if (!isUuid(tenantId)) throw new VectorInputError("tenant id must be a UUID");
  return tenantId.toLowerCase();
}

/** A document id, lower-cased (the form Postgres prints), safe to put in a filter literal. */
export function documentKey(documentId: string): string {
  if (!isUuid(documentId)) throw new VectorInputError("document id must be a UUID");
  return documentId.toLowerCase();
}

function int32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > INT32_MAX) {
    throw new VectorInputError(`${what} must be an integer between 0 and ${INT32_MAX}`);
  }
  return value;
}

export function assertVersion(version: number): number {
  return int32(version, "version");
}

export function assertLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SEARCH_LIMIT) {
    throw new VectorInputError(`limit must be an integer between 1 and ${MAX_SEARCH_LIMIT}`);
  }
  return limit;
}

export function assertVector(vector: number[], dimensions: number): number[] {
  if (!Array.isArray(vector) || vector.length !== dimensions) {
    throw new VectorInputError(`vector must have ${dimensions} dimensions`);
  }
  if (!vector.every((x) => typeof x === "number" && Number.isFinite(x))) {
    throw new VectorInputError("vector must hold finite numbers");
  }
  return vector;
}

function assertStringMap(value: unknown, what: string): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new VectorInputError(`${what} must be an object of strings`);
  }
  for (const v of Object.values(value)) {
    if (typeof v !== "string") throw new VectorInputError(`${what} values must be strings`);
  }
  return value as Record<string, string>;
}

function assertString(value: unknown, what: string): string {
  if (typeof value !== "string") throw new VectorInputError(`${what} must be a string`);
  return value;
}

/**
 * Checks a batch of chunks and returns it normalised (lower-case ids). The id must be
 * `<documentId>:<version>:<chunkIndex>` of the row itself — that is what makes re-writing a
 * version idempotent — and appear once in the batch.
 */
export function validChunks(rows: ChunkRow[], dimensions: number): ChunkRow[] {
  if (!Array.isArray(rows)) throw new VectorInputError("rows must be an array");
  const seen = new Set<string>();
  return rows.map((row) => {
    const documentId = documentKey(row.documentId);
    const version = assertVersion(row.version);
    const chunkIndex = int32(row.chunkIndex, "chunkIndex");
    const id = `${documentId}:${version}:${chunkIndex}`;
    if (typeof row.id !== "string" || row.id.toLowerCase() !== id) {
      throw new VectorInputError("chunk id must be <documentId>:<version>:<chunkIndex>");
    }
    if (seen.has(id)) throw new VectorInputError(`chunk ${id} appears twice in one batch`);
    seen.add(id);
    return {
      id,
      documentId,
      version,
      chunkIndex,
      text: assertString(row.text, "text"),
      vector: assertVector(row.vector, dimensions),
      title: assertString(row.title, "title"),
      docType: assertString(row.docType, "docType"),
      metadata: assertStringMap(row.metadata, "metadata"),
    };
  });
}

export function validCatalogRow(row: CatalogRow): CatalogRow {
  return {
    documentId: documentKey(row.documentId),
    version: assertVersion(row.version),
    title: assertString(row.title, "title"),
    docType: assertString(row.docType, "docType"),
    summary: assertString(row.summary, "summary"),
    chunkCount: int32(row.chunkCount, "chunkCount"),
  };
}

/** Filters checked and normalised: document ids lower-cased UUIDs, the rest strings. */
export function validFilters(filters: SearchFilters | undefined): SearchFilters {
  if (filters === undefined) return {};
  const out: SearchFilters = {};
  if (filters.documentIds !== undefined) out.documentIds = filters.documentIds.map(documentKey);
  if (filters.docTypes !== undefined) {
    out.docTypes = filters.docTypes.map((t) => assertString(t, "docTypes"));
  }
  if (filters.metadata !== undefined) out.metadata = assertStringMap(filters.metadata, "metadata");
  return out;
}
