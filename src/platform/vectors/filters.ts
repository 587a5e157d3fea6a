import { VectorInputError } from "./validate.js";
import type { SearchFilters } from "./vectors.js";

/**
 * Metadata filters run inside LanceDB, as a prefilter, so a filtered search still returns
 * `limit` hits whenever that many rows match (filtering in JS after over-fetching cannot
 * promise that when matches are rare). The JSON column cannot be filtered, so every row also
 * carries `metadata_kv`: one entry per key/value pair, `base64url(JSON [key, value])`. The
 * encoding is unambiguous (no separator a key could contain), and its alphabet ([A-Za-z0-9_-])
 * can never end a SQL string literal, whatever a tenant puts in its metadata.
 */
export function metadataEntry(key: string, value: string): string {
  return Buffer.from(JSON.stringify([key, value]), "utf8").toString("base64url");
}

export function metadataEntries(metadata: Record<string, string>): string[] {
  return Object.entries(metadata).map(([k, v]) => metadataEntry(k, v));
}

/**
 * A SQL string literal. The LanceDB filter dialect ends a literal only at a quote and reads a
 * doubled quote as one (a backslash escapes nothing), so doubling quotes is the whole escape;
 * the contract suite checks it with hostile values. NUL is refused rather than reasoned about.
 */
export function sqlString(value: string): string {
  if (value.includes("\u0000")) throw new VectorInputError("filter values cannot contain NUL");
  return `'${value.replaceAll("'", "''")}'`;
}

/** The `where` of a filtered search; `false` when no row can match (an empty id list). */
export function whereClause(filters: SearchFilters): string | undefined | false {
  const parts: string[] = [];
  if (filters.documentIds !== undefined) {
    if (filters.documentIds.length === 0) return false;
    // Validated UUIDs (validate.ts): safe as literals.
    parts.push(`document_id IN (${filters.documentIds.map(sqlString).join(", ")})`);
  }
  if (filters.docTypes !== undefined) {
    if (filters.docTypes.length === 0) return false;
    parts.push(`doc_type IN (${filters.docTypes.map(sqlString).join(", ")})`);
  }
  const pairs = Object.entries(filters.metadata ?? {});
  if (pairs.length > 0) {
    const entries = pairs.map(([k, v]) => sqlString(metadataEntry(k, v)));
    parts.push(`array_has_all(metadata_kv, [${entries.join(", ")}])`);
  }
  return parts.length > 0 ? parts.join(" AND ") : undefined;
}

/** Tokens the full-text index keeps are shorter than this many bytes (its tokenizer default). */
const FTS_MAX_TOKEN_BYTES = 40;
/** A query past this many terms is cut: the cost of a BM25 query grows with its terms. */
const FTS_MAX_TERMS = 64;

/**
 * The user's query reduced to the terms the index can match, or undefined when none is left.
 * It mirrors the index tokenizer (split on anything not alphanumeric, drop over-long tokens).
 * Besides bounding the cost, this works around a LanceDB 0.29 bug: a query with no usable term
 * fails ("all columns in a record batch must have the same length") whenever the table has rows
 * not yet in the index, instead of matching nothing.
 */
export function ftsTerms(query: string): string | undefined {
  const terms = query
    .split(/[^\p{Alphabetic}\p{N}]+/u)
    .filter((t) => t.length > 0 && Buffer.byteLength(t.toLowerCase()) < FTS_MAX_TOKEN_BYTES)
    .slice(0, FTS_MAX_TERMS);
  return terms.length > 0 ? terms.join(" ") : undefined;
}
