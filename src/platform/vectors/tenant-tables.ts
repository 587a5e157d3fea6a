import { type Connection, Index, MatchQuery, type Table } from "@lancedb/lancedb";
import {
  catalogSchema,
  chunksSchema,
  HIT_COLUMNS,
  type TableName,
  toHit,
  vectorDimensions,
} from "./lance-tables.js";
import type { HeldTenantLock } from "./lock.js";
import type { VectorHit } from "./vectors.js";

/** One tenant's open LanceDB database: what the LRU cache holds. */
export interface TenantHandle {
  conn: Connection;
  dimensions: number;
  tables: Map<TableName, Table>;
  /** The chunks table is known to have its full-text index. */
  ftsReady: boolean;
}

export const TABLES: TableName[] = ["chunks", "catalog"];

/**
 * Tokenizer of the full-text index. No stop-word removal: BM25 already weighs common words
 * down, and a query made only of stop words would otherwise trip the LanceDB bug described at
 * `ftsTerms`. No positions: nothing here runs phrase queries, and the index is smaller without.
 * English stemming ("runs" finds "running") is harmless for other languages: queries and rows
 * go through the same stemmer.
 */
const FTS_OPTIONS = {
  withPosition: false,
  lowercase: true,
  asciiFolding: true,
  stem: true,
  language: "English",
  removeStopWords: false,
};

export function closeTables(h: TenantHandle): void {
  for (const t of h.tables.values()) t.close();
  h.tables.clear();
  h.ftsReady = false;
}

/**
 * The open table, opened on first use; with `create`, created (empty, explicit schema) when
 * missing. Undefined when it does not exist and `create` is false.
 */
export async function tableOf(
  h: TenantHandle,
  name: TableName,
  create: boolean,
): Promise<Table | undefined> {
  const cached = h.tables.get(name);
  if (cached) return cached;
  let t: Table;
  if ((await h.conn.tableNames()).includes(name)) {
    t = await h.conn.openTable(name);
    if (name === "chunks") {
      const found = vectorDimensions(await t.schema());
      if (found !== h.dimensions) {
        t.close();
        throw new Error(
          `tenant vectors have ${found} dimensions, the index expects ${h.dimensions}`,
        );
      }
    }
  } else if (create) {
    const schema = name === "chunks" ? chunksSchema(h.dimensions) : catalogSchema;
    t = await h.conn.createEmptyTable(name, schema, { existOk: true });
  } else {
    return undefined;
  }
  // Two callers may have opened it at once: keep one handle.
  const other = h.tables.get(name);
  if (other) {
    t.close();
    return other;
  }
  h.tables.set(name, t);
  return t;
}

export async function hasFts(h: TenantHandle, t: Table): Promise<boolean> {
  // Only a positive answer is remembered: another process may create the index later.
  if (!h.ftsReady) h.ftsReady = (await t.listIndices()).some((i) => i.columns.includes("text"));
  return h.ftsReady;
}

/**
 * Full-text queries fail on a table without the index, so the first write creates it (over
 * that write's rows). Rows written later are not in it until a compaction folds them in, which
 * the adapter's text search runs first when there are any (see `bm25` for why).
 */
export async function ensureFts(h: TenantHandle, t: Table): Promise<void> {
  if (await hasFts(h, t)) return;
  await t.createIndex("text", { config: Index.fts(FTS_OPTIONS) });
  h.ftsReady = true;
}

/** Rows not yet in the full-text index: LanceDB scans them on every text query (see `bm25`). */
export async function unindexedTextRows(t: Table): Promise<number> {
  const idx = (await t.listIndices()).find((i) => i.columns.includes("text"));
  if (!idx) return 0;
  return (await t.indexStats(idx.name))?.numUnindexedRows ?? 0;
}

/**
 * Another process dropped the tenant while this one had its tables open: forgets the stale
 * handle so that the next use reopens. True when `name` is gone.
 */
export async function forgetIfGone(h: TenantHandle, name: TableName): Promise<boolean> {
  if ((await h.conn.tableNames()).includes(name)) return false;
  h.tables.get(name)?.close();
  h.tables.delete(name);
  if (name === "chunks") h.ftsReady = false;
  return true;
}

/**
 * How hard an ANN query searches. An IVF index first picks the `nprobes` partitions whose
 * centroids are nearest the query; within each, an HNSW graph (IVF_HNSW_SQ) proposes
 * `limit × refineFactor` candidates visiting at least `ef` nodes, or the partition is scanned
 * (IVF_FLAT, IVF_PQ). The refine step re-ranks the candidates by exact cosine distance, so
 * scores stay comparable with exact search. Without an ANN index every setting is inert; on an
 * index of another type the settings it has no use for are ignored (an old single-partition
 * HNSW-SQ index reads only `ef` and `refineFactor`). Defaults measured in bench/RESULTS.md
 * ("Search latency at 100 000 chunks").
 */
export interface AnnSearchSettings {
  ef: number;
  refineFactor: number;
  nprobes: number;
}

export const DEFAULT_ANN_SEARCH: AnnSearchSettings = { ef: 1000, refineFactor: 4, nprobes: 20 };

/** The ANN index kinds of LanceDB 0.29 this adapter builds. */
export const ANN_INDEX_TYPES = ["ivf_hnsw_sq", "ivf_pq", "ivf_flat"] as const;
export type AnnIndexType = (typeof ANN_INDEX_TYPES)[number];

/**
 * How `optimize` builds the ANN index. `rowsPerPartition` sets the IVF partitions (rows / it,
 * at least 1); undefined leaves it to LanceDB, which makes √rows of them (316 at 100 000
 * rows). More partitions make each probe cheaper and the build faster (k-means, and one small
 * graph per partition for IVF_HNSW_SQ) at the cost of recall for a fixed `nprobes`. `m` and
 * `efConstruction` shape the HNSW graphs (IVF_HNSW_SQ only); `numSubVectors` the PQ codes
 * (IVF_PQ only; must divide the dimensions; LanceDB picks when undefined).
 *
 * The default, IVF_PQ with √rows partitions, 20 probes and a refine factor of 4 (the PQ
 * candidates re-ranked by exact cosine distance), answered in ~6.5 ms with recall@10 1.0 on
 * clustered vectors at 100 000 × 384 on 2 cores, where IVF_FLAT took ~130 ms for the same
 * recall and HNSW-SQ minutes to build (bench/RESULTS.md, "Search latency at 100 000 chunks").
 * Without refinement PQ recall is 0.47: keep `refineFactor` ≥ 4 with it.
 */
export interface AnnIndexSettings {
  type: AnnIndexType;
  rowsPerPartition?: number;
  m: number;
  efConstruction: number;
  numSubVectors?: number;
}

export const DEFAULT_ANN_INDEX: AnnIndexSettings = {
  type: "ivf_pq",
  m: 20,
  efConstruction: 300,
};

/** LanceDB's name of each index type (`listIndices().indexType`). */
export const LANCE_INDEX_TYPE: Record<AnnIndexType, string> = {
  ivf_hnsw_sq: "IvfHnswSq",
  ivf_pq: "IvfPq",
  ivf_flat: "IvfFlat",
};

/** LanceDB's index configuration for `settings` over a table of `rows` rows. */
export function annIndexConfig(settings: AnnIndexSettings, rows: number): Index {
  const common = {
    distanceType: "cosine" as const,
    ...(settings.rowsPerPartition
      ? { numPartitions: Math.max(1, Math.round(rows / settings.rowsPerPartition)) }
      : {}),
  };
  switch (settings.type) {
    case "ivf_hnsw_sq":
      return Index.hnswSq({ ...common, m: settings.m, efConstruction: settings.efConstruction });
    case "ivf_pq":
      return Index.ivfPq({
        ...common,
        ...(settings.numSubVectors ? { numSubVectors: settings.numSubVectors } : {}),
      });
    case "ivf_flat":
      return Index.ivfFlat(common);
    default:
      return assertNeverType(settings.type);
  }
}

function assertNeverType(t: never): never {
  throw new Error(`unknown ANN index type ${String(t)}`);
}

/** What `compact` keeps while an ANN build reads an older version (see TenantLock). */
export const KEEP_VERSIONS_FOR_LONG_READER_MS = 24 * 3_600_000;

/** Nearest chunks by cosine similarity (exact, or ANN once built), filter applied first. */
export async function nearest(
  t: Table,
  vector: Float32Array,
  limit: number,
  where: string | undefined,
  ann: AnnSearchSettings,
): Promise<VectorHit[]> {
  let q = t
    .query()
    .nearestTo(vector)
    .distanceType("cosine")
    .nprobes(ann.nprobes)
    // HNSW refuses an ef below the candidates it is asked for.
    .ef(Math.max(ann.ef, limit * ann.refineFactor))
    .refineFactor(ann.refineFactor)
    .select([...HIT_COLUMNS, "_distance"])
    .limit(limit);
  if (where) q = q.where(where);
  const rows = (await q.toArray()) as Record<string, unknown>[];
  return rows.map((r) => toHit(r, 1 - Number(r._distance))).sort((a, b) => b.score - a.score);
}

/**
 * BM25 full-text matches of `terms` (see `ftsTerms`), filter applied first. Only right over
 * rows in the full-text index: LanceDB 0.29 scans the others, but counts each occurrence of a
 * term there as one more document containing it: once a term's count passes the number of
 * rows (soon, for a term repeated in new rows and common in indexed ones), its weight turns
 * negative and rows scoring ≤ 0 are dropped silently. Fixed in LanceDB 0.33, which publishes
 * binaries for linux-x64 only. Hence text search folds such rows
 * into the index before it queries (the adapter's `searchText`).
 */
export async function bm25(
  t: Table,
  terms: string,
  limit: number,
  where: string | undefined,
): Promise<VectorHit[]> {
  let q = t
    .query()
    .fullTextSearch(new MatchQuery(terms, "text"))
    .select([...HIT_COLUMNS, "_score"])
    .limit(limit);
  if (where) q = q.where(where);
  const rows = (await q.toArray()) as Record<string, unknown>[];
  return rows.map((r) => toHit(r, Number(r._score))).sort((a, b) => b.score - a.score);
}

/**
 * The table's ANN index, if any: `deltas` is how many pieces LanceDB searches one by one,
 * `type` LanceDB's name of its kind ("IvfHnswSq", …).
 */
export async function annIndexState(
  t: Table,
): Promise<{ deltas: number; type: string } | undefined> {
  const idx = (await t.listIndices()).find((i) => i.columns.includes("vector"));
  if (!idx) return undefined;
  return { deltas: (await t.indexStats(idx.name))?.numIndices ?? 1, type: idx.indexType };
}

/**
 * Builds the ANN index (cosine: embeddings are L2-normalised) once the table has `threshold`
 * rows, and builds it anew once it has more than `maxDeltas` pieces (every compaction folds the
 * rows written since into a small extra index, a delta, that each query searches separately,
 * ~0.25 ms apiece, until a rebuild merges them) or is of another type than `settings.type` (an
 * operator changed `ANN_INDEX_TYPE`: the old index serves searches until the new one commits).
 * A changed partition size or graph shape alone does not rebuild: it applies at the next
 * rebuild. False when there is no index and none is due; what was done otherwise.
 */
export async function buildAnnIndex(
  t: Table,
  threshold: number,
  maxDeltas: number,
  settings: AnnIndexSettings = DEFAULT_ANN_INDEX,
): Promise<false | { rows: number; ms: number; action: "kept" | "built" | "rebuilt" }> {
  const state = await annIndexState(t);
  const sameType = state?.type === LANCE_INDEX_TYPE[settings.type];
  if (state && sameType && state.deltas <= maxDeltas) return { rows: 0, ms: 0, action: "kept" };
  const rows = await t.countRows();
  if (!state && rows < threshold) return false;
  const started = Date.now();
  await t.createIndex("vector", { config: annIndexConfig(settings, rows), replace: true });
  return { rows, ms: Date.now() - started, action: state ? "rebuilt" : "built" };
}

/**
 * The small fragments a table of `rows` rows may gather before a write compacts it: at least
 * `min`, then one per 100 rows, at most `max`. A compaction costs time in proportion to the table
 * (it rewrites the full-text index: ~80 µs per row of chunks on 2 cores), and each fragment
 * slows every operation a little (~0.2 ms): waiting longer on a larger table keeps the cost of
 * compaction per write about constant, while small tables, cheap to compact, stay tidy.
 */
export function fragmentLimit(rows: number, min: number, max: number): number {
  if (min <= 0) return 0;
  return Math.max(min, Math.min(max, Math.ceil(rows / 100)));
}

/** Whether a write left `t` due for compaction (see the adapter's `compactFragments`). */
export async function dueForCompaction(
  t: Table,
  name: TableName,
  limits: { fragments: number; maxFragments: number; unindexedTextRows: number },
): Promise<boolean> {
  if (limits.fragments > 0) {
    const { fragmentStats, numRows } = await t.stats();
    const limit = fragmentLimit(numRows, limits.fragments, limits.maxFragments);
    if (fragmentStats.numSmallFragments >= limit) return true;
  }
  return (
    name === "chunks" &&
    limits.unindexedTextRows > 0 &&
    (await unindexedTextRows(t)) >= limits.unindexedTextRows
  );
}

/**
 * Compacts the tenant's tables, folds rows written since into the ANN and full-text indexes,
 * and removes old versions. Rewrites fragments a concurrent merge or delete may touch, so it
 * runs under the tenant's lock.
 */
export async function compact(
  h: TenantHandle,
  held: HeldTenantLock,
  keepVersionsMs: number,
  tables: readonly TableName[] = TABLES,
): Promise<void> {
  const keepMs = (await held.longReaderActive())
    ? Math.max(keepVersionsMs, KEEP_VERSIONS_FOR_LONG_READER_MS)
    : keepVersionsMs;
  const cleanupOlderThan = new Date(Date.now() - keepMs);
  for (const name of tables) {
    const t = await tableOf(h, name, false);
    if (!t) continue;
    if (name === "chunks") await ensureFts(h, t);
    await t.optimize({ cleanupOlderThan });
  }
}
