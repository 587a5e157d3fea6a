import {
  type Connection,
  type FullTextQuery,
  Index,
  MatchQuery,
  MultiMatchQuery,
  type Table,
} from "@lancedb/lancedb";
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
  /** The chunks table is known to have the full-text index of its titles. */
  titleFtsReady?: boolean;
}

export const TABLES: TableName[] = ["chunks", "catalog"];

/**
 * The full-text index. Tokenizer options apply to the index of chunk texts (and the title
 * index): LanceDB tokenizes a query with the options of the index it searches, so an index
 * built with other options keeps answering consistently until it is rebuilt.
 * - `stem`, `language`: English stemming ("runs" finds "running"); harmless for other
 *   languages, queries and rows go through the same stemmer.
 * - `removeStopWords`: BM25 already weighs common words down, and a query made only of stop
 *   words would trip the LanceDB bug described at `ftsTerms` while rows are unindexed.
 * - `withPosition`: positions serve phrase queries only, which nothing here runs.
 * - `titleBoost`: above 0, the `title` column gets a full-text index of its own and text
 *   search matches both, a title match weighing `titleBoost` × a text match (LanceDB's
 *   multi-column match: the BM25 scores of the two columns add).
 * Defaults measured in bench/RESULTS.md ("Full-text index options").
 */
export interface FullTextSettings {
  stem: boolean;
  language: string;
  removeStopWords: boolean;
  asciiFolding: boolean;
  lowercase: boolean;
  withPosition: boolean;
  titleBoost: number;
}

export const DEFAULT_FULL_TEXT: FullTextSettings = {
  stem: true,
  language: "English",
  removeStopWords: false,
  asciiFolding: true,
  lowercase: true,
  withPosition: false,
  titleBoost: 0,
};

/** LanceDB's configuration of a full-text index under `settings`. */
function ftsConfig(settings: FullTextSettings): Index {
  return Index.fts({
    withPosition: settings.withPosition,
    lowercase: settings.lowercase,
    asciiFolding: settings.asciiFolding,
    stem: settings.stem,
    language: settings.language,
    removeStopWords: settings.removeStopWords,
  });
}

/**
 * The name of the text index built under `settings`: its tokenizer options, so that an index
 * built under other options can be told apart (`ftsState`) and rebuilt. LanceDB 0.29 does not
 * report an FTS index's options; indexes of earlier releases carry LanceDB's default name
 * `text_idx`, which stands for the options of those releases (`LEGACY_FULL_TEXT`).
 */
export function ftsIndexName(settings: FullTextSettings): string {
  const flag = (b: boolean) => (b ? "1" : "0");
  return `text_fts_${[
    settings.stem ? settings.language.toLowerCase() : "nostem",
    flag(settings.removeStopWords),
    flag(settings.asciiFolding),
    flag(settings.lowercase),
    flag(settings.withPosition),
  ].join("_")}`;
}

/** The name of an index of `text` built before its name carried the options… */
const LEGACY_TEXT_INDEX = "text_idx";
/** …and the options it was built with (those of every release before). */
const LEGACY_FULL_TEXT: FullTextSettings = {
  stem: true,
  language: "English",
  removeStopWords: false,
  asciiFolding: true,
  lowercase: true,
  withPosition: false,
  titleBoost: 0,
};
const TITLE_INDEX = "title_fts";

export function closeTables(h: TenantHandle): void {
  for (const t of h.tables.values()) t.close();
  h.tables.clear();
  h.ftsReady = false;
  h.titleFtsReady = undefined;
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
  if (!h.ftsReady || h.titleFtsReady === undefined) {
    const indexes = await t.listIndices();
    h.ftsReady = indexes.some((i) => i.columns.includes("text"));
    h.titleFtsReady = indexes.some((i) => i.columns.includes("title"));
  }
  return h.ftsReady;
}

/**
 * What the table's full-text indexes are against `settings`: `current` when the text index
 * was built under the same tokenizer options and the title index is there if and only if
 * `settings` boost titles. Undefined when there is no text index.
 */
export async function ftsState(
  t: Table,
  settings: FullTextSettings,
): Promise<{ current: boolean; text: string; title: boolean } | undefined> {
  const indexes = await t.listIndices();
  const text = indexes.find((i) => i.columns.includes("text"));
  if (!text) return undefined;
  const title = indexes.some((i) => i.columns.includes("title"));
  const name = text.name === LEGACY_TEXT_INDEX ? ftsIndexName(LEGACY_FULL_TEXT) : text.name;
  return {
    current: name === ftsIndexName(settings) && title === settings.titleBoost > 0,
    text: text.name,
    title,
  };
}

/**
 * Full-text queries fail on a table without the index, so the first write creates it (over
 * that write's rows), and the title index with it when titles are boosted. Rows written later
 * are not in them until a compaction folds them in, which the adapter's text search runs first
 * when there are any (see `bm25` for why). An index built under other settings is left as it
 * is: `rebuildFts` replaces it.
 */
export async function ensureFts(
  h: TenantHandle,
  t: Table,
  settings: FullTextSettings = DEFAULT_FULL_TEXT,
): Promise<void> {
  if (await hasFts(h, t)) return;
  await t.createIndex("text", { config: ftsConfig(settings), name: ftsIndexName(settings) });
  if (settings.titleBoost > 0) {
    await t.createIndex("title", { config: ftsConfig(settings), name: TITLE_INDEX });
    h.titleFtsReady = true;
  }
  h.ftsReady = true;
}

/**
 * Builds the full-text indexes anew when they were built under other settings than
 * `settings` (an operator changed them): the new text index is built next to the old one,
 * which answers until the new one commits and is then dropped; the title index is built or
 * dropped as `titleBoost` says. Under the tenant's lock (it races with compaction otherwise).
 * True when something was rebuilt.
 */
export async function rebuildFts(
  h: TenantHandle,
  t: Table,
  settings: FullTextSettings,
): Promise<boolean> {
  const state = await ftsState(t, settings);
  if (!state || state.current) return false;
  const name = ftsIndexName(settings);
  if (state.text !== name) {
    await t.createIndex("text", { config: ftsConfig(settings), name });
    await t.dropIndex(state.text);
  }
  const titleIdx = (await t.listIndices()).find((i) => i.columns.includes("title"));
  if (settings.titleBoost > 0) {
    if (titleIdx) await t.dropIndex(titleIdx.name);
    await t.createIndex("title", { config: ftsConfig(settings), name: TITLE_INDEX });
  } else if (titleIdx) {
    await t.dropIndex(titleIdx.name);
  }
  h.ftsReady = true;
  h.titleFtsReady = settings.titleBoost > 0;
  return true;
}

/** Rows not yet in the full-text index: LanceDB scans them on every text query (see `bm25`). */
export async function unindexedTextRows(t: Table): Promise<number> {
  let most = 0;
  for (const idx of await t.listIndices()) {
    if (!idx.columns.includes("text") && !idx.columns.includes("title")) continue;
    most = Math.max(most, (await t.indexStats(idx.name))?.numUnindexedRows ?? 0);
  }
  return most;
}

/**
 * Another process dropped the tenant while this one had its tables open: forgets the stale
 * handle so that the next use reopens. True when `name` is gone.
 */
export async function forgetIfGone(h: TenantHandle, name: TableName): Promise<boolean> {
  if ((await h.conn.tableNames()).includes(name)) return false;
  h.tables.get(name)?.close();
  h.tables.delete(name);
  if (name === "chunks") {
    h.ftsReady = false;
    h.titleFtsReady = undefined;
  }
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
  titleBoost = 0,
): Promise<VectorHit[]> {
  const match: FullTextQuery =
    titleBoost > 0
      ? new MultiMatchQuery(terms, ["text", "title"], { boosts: [1, titleBoost] })
      : new MatchQuery(terms, "text");
  let q = t
    .query()
    .fullTextSearch(match)
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
  fullText: FullTextSettings = DEFAULT_FULL_TEXT,
): Promise<void> {
  const keepMs = (await held.longReaderActive())
    ? Math.max(keepVersionsMs, KEEP_VERSIONS_FOR_LONG_READER_MS)
    : keepVersionsMs;
  const cleanupOlderThan = new Date(Date.now() - keepMs);
  for (const name of tables) {
    const t = await tableOf(h, name, false);
    if (!t) continue;
    if (name === "chunks") await ensureFts(h, t, fullText);
    await t.optimize({ cleanupOlderThan });
  }
}
