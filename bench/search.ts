/**
 * Search latency (p50/p99) for vector, text and hybrid search, on one tenant of 10 000 and
 * 100 000 chunks (exact, then ANN after `optimize()` builds the index) and on 200 tenants of
 * 500 chunks each with queries spread over the tenants (the LRU cache of open tables).
 *
 * The corpus is written straight into the LanceDB vector index (production adapter, 384
 * dimensions, local embedder), and matching `documents` / `document_versions` rows are seeded in
 * PGlite, so that each query is measured twice:
 * - `index`: the vector index alone (searchVector / searchText; hybrid = both + RRF), with the
 *   query vector embedded beforehand;
 * - `service`: the search service as the HTTP route calls it: tenant config lookup, query
 *   embedding, index search, the active-version filter in Postgres, fusion.
 *
 *   npm run bench:search -- --sizes=10000,100000 --tenants=200 --tenant-chunks=500 --queries=100
 *
 * That is the full size (about 11 minutes on 2 cores, 5 of them building the ANN index at
 * 100 000 chunks). The default sizes are 10 000 and 30 000 chunks (above the 20 000-row ANN
 * threshold, so the index is still built), which keeps a run near 5 minutes.
 *
 * Options (flag or BENCH_* variable): sizes, tenants, tenant-chunks, queries (measured per
 * cell), warmup, chunks-per-doc, ann-threshold, cache-size (the LRU bound under test),
 * unindexed (rows outside the full-text index in the text-search-between-refreshes case; the
 * default, 999, is the most a write leaves with the adapter's default `ftsRefreshRows`),
 * burst (exact vector searches started at once on the largest table, before its ANN index:
 * under the adapter's default `searchConcurrency`, then with as many slots as searches),
 * ann-search (ANN query settings compared after the build, `<ef>x<refineFactor>`, comma-separated).
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import { connect } from "@lancedb/lancedb";
import pino from "pino";
import { type createSearchService, reciprocalRankFusion } from "../src/modules/search/index.js";
import type { createTenantsService } from "../src/modules/tenants/index.js";
import type { Db } from "../src/platform/db/index.js";
import { createLocalEmbedder } from "../src/platform/embeddings/local.js";
import { withQueryCache } from "../src/platform/embeddings/query-cache.js";
import {
  type AnnIndexSettings,
  type AnnIndexType,
  type AnnSearchSettings,
  annIndexConfig,
  type ChunkRow,
  createInProcessTenantLock,
  createLanceVectorIndex,
  type LanceVectorIndex,
} from "../src/platform/vectors/index.js";
import type { TenantContext } from "../src/tenancy.js";
import { benchContext, openPglite, tempDir } from "./lib/backends.js";
import { createMixture } from "./lib/mixture.js";
import {
  intOption,
  listOption,
  ms,
  printFooter,
  printHeader,
  ratio,
  type Summary,
  stringOption,
  summarize,
  table,
  timed,
} from "./lib/report.js";
import { benchSearchService, benchTenants } from "./lib/search-stack.js";
import { createTextGenerator } from "./lib/text.js";

const opts = {
  sizes: listOption("sizes", [10_000, 30_000]),
  tenants: intOption("tenants", 200),
  tenantChunks: intOption("tenant-chunks", 500),
  queries: intOption("queries", 100),
  warmup: intOption("warmup", 10),
  chunksPerDoc: intOption("chunks-per-doc", 8),
  annThreshold: intOption("ann-threshold", 20_000),
  cacheSize: intOption("cache-size", 64),
  unindexed: intOption("unindexed", 999),
  burst: intOption("burst", 16),
  annSearch: stringOption("ann-search", "100x1x10,100x1x20,100x1x40,100x4x20,1000x20x20"),
  annIndex: stringOption("ann-index", "ivf_flat:0,ivf_pq:0"),
  vectors: stringOption("vectors", "clustered,local"),
  clusters: intOption("clusters", 1000),
  /** Norm of a clustered vector's offset from its centre, relative to the centre's (in %). */
  spread: intOption("spread", 50),
  /**
   * Corpora on which to also measure the defaults before the tuning (single-partition HNSW-SQ
   * index, ef 1000 × refine 20, no caches): `true` for all, or a list such as `local`.
   */
  legacy: stringOption("legacy", "false"),
  /** With `legacy`, also build the old index at the largest size (minutes at 100 000). */
  legacyAnn: stringOption("legacy-ann", "false") === "true",
  /** Measure every mode exactly at the largest size too (slow: ~0.1–0.7 s per query). */
  exactLargest: stringOption("exact-largest", "true") !== "false",
  seed: intOption("seed", 7),
};

/** The ANN index and query settings and the service of this repository before the tuning. */
const LEGACY = {
  index: { type: "ivf_hnsw_sq", rowsPerPartition: 1_000_000, m: 20, efConstruction: 300 },
  search: { ef: 1000, refineFactor: 20, nprobes: 20 },
} as const;

/** `type:rowsPerPartition[:m:efConstruction]`, e.g. `ivf_hnsw_sq:4096:20:150`. */
function parseIndex(spec: string): AnnIndexSettings {
  const [type, rpp, m, efc] = spec.split(":");
  return {
    type: type as AnnIndexType,
    // 0 or absent: LanceDB's √rows partitions, as the adapter's default.
    ...(Number(rpp) > 0 ? { rowsPerPartition: Number(rpp) } : {}),
    m: Number(m ?? 20),
    efConstruction: Number(efc ?? 300),
  };
}

/** `<ef>x<refineFactor>[x<nprobes>]`. */
function parseSearch(spec: string): AnnSearchSettings {
  const [ef, refineFactor, nprobes] = spec.split("x").map(Number) as [number, number, number?];
  return { ef, refineFactor, nprobes: nprobes ?? 20 };
}

const DIMENSIONS = 384;
const LIMIT = 10;
/** What the service asks of the index for `LIMIT` results (search.service.ts). */
const FETCH = Math.min(LIMIT * 3, 150);
const MODES = ["vector", "text", "hybrid"] as const;
type Mode = (typeof MODES)[number];

const silent = pino({ level: "silent" });
const embedder = createLocalEmbedder({ dimensions: DIMENSIONS });
/** What the composition root gives the search service: repeated queries skip the embedding. */
const queryEmbedder = withQueryCache(embedder);

const mixture = (seed: number) =>
  createMixture({ seed, clusters: opts.clusters, spread: opts.spread, dimensions: DIMENSIONS });

interface Piece {
  text: string;
  vector: number[];
}

/** Texts and vectors, embedded once and reused by every scenario (with fresh document ids). */
async function makePool(count: number): Promise<Piece[]> {
  const gen = createTextGenerator(opts.seed);
  const texts = Array.from({ length: count }, () => gen.chunk(1000));
  const pieces: Piece[] = [];
  for (let i = 0; i < texts.length; i += 1000) {
    const batch = texts.slice(i, i + 1000);
    const { vectors } = await embedder.embed({ texts: batch });
    batch.forEach((text, j) => {
      pieces.push({ text, vector: vectors[j] as number[] });
    });
  }
  return pieces;
}

/** Chunk rows for `pieces`, `chunksPerDoc` to a document, version 1 of each. */
function rowsFor(
  pieces: Piece[],
  vectorOf: (p: Piece, i: number) => number[] = (p) => p.vector,
): { rows: ChunkRow[]; documentIds: string[] } {
  const rows: ChunkRow[] = [];
  const documentIds: string[] = [];
  let documentId = "";
  pieces.forEach((p, i) => {
    const chunkIndex = i % opts.chunksPerDoc;
    if (chunkIndex === 0) {
      documentId = randomUUID();
      documentIds.push(documentId);
    }
    rows.push({
      id: `${documentId}:1:${chunkIndex}`,
      documentId,
      version: 1,
      chunkIndex,
      text: p.text,
      vector: vectorOf(p, i),
      title: `Document ${documentIds.length}`,
      docType: "md",
      metadata: { source: "bench" },
    });
  });
  return { rows, documentIds };
}

/** The Postgres side of a corpus: each document completed, its version 1 active. */
async function seedDocuments(db: Db, tenantId: string, ids: string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 5000) {
    const slice = ids.slice(i, i + 5000);
    await db.query(
      `insert into documents (id, tenant_id, title, doc_type, status, active_version, latest_version)
       select id, $1, 'bench', 'md', 'completed', 1, 1 from unnest($2::uuid[]) as id`,
      [tenantId, slice],
    );
    await db.query(
      `insert into document_versions (tenant_id, document_id, version, content_type, status, is_active)
       select $1, id, 1, 'md', 'active', true from unnest($2::uuid[]) as id`,
      [tenantId, slice],
    );
  }
}

async function createTenant(
  db: Db,
  tenants: ReturnType<typeof createTenantsService>,
  name: string,
): Promise<TenantContext> {
  const tenant = await db.transaction((tx) => tenants.create(tx, { name, planId: "enterprise" }));
  return benchContext(tenant.id);
}

/** Writes rows in batches as ingestion would (merge insert, full-text index kept up). */
async function writeRows(index: LanceVectorIndex, tenantId: string, rows: ChunkRow[]) {
  for (let i = 0; i < rows.length; i += 5000) {
    await index.upsertChunks(tenantId, rows.slice(i, i + 5000));
  }
}

interface Query {
  text: string;
  vector: number[];
  /** Which tenant it goes to (multi-tenant scenario). */
  tenant: number;
}

async function makeQueries(count: number, tenants: number): Promise<Query[]> {
  const gen = createTextGenerator(opts.seed + 1_000_003);
  const texts = Array.from({ length: count }, () => gen.query());
  const { vectors } = await embedder.embed({ texts });
  return texts.map((text, i) => ({
    text,
    vector: vectors[i] as number[],
    tenant: Math.floor(gen.rand() * tenants),
  }));
}

interface Cell {
  scenario: string;
  path: "index" | "service";
  mode: Mode;
  stats: Summary;
}

type Search = (q: Query, mode: Mode) => Promise<string[]>;

/** Runs `warmup` then `queries` searches one after the other; latency of each. */
async function measure(queries: Query[], mode: Mode, search: Search): Promise<Summary> {
  for (const q of queries.slice(0, opts.warmup)) await search(q, mode);
  const samples: number[] = [];
  for (const q of queries.slice(opts.warmup, opts.warmup + opts.queries)) {
    const t0 = performance.now();
    await search(q, mode);
    samples.push(performance.now() - t0);
  }
  return summarize(samples);
}

function indexSearch(index: LanceVectorIndex, tenantOf: (q: Query) => string): Search {
  return async (q, mode) => {
    const tenant = tenantOf(q);
    const lists = [];
    if (mode !== "text") lists.push(await index.searchVector(tenant, q.vector, FETCH));
    if (mode !== "vector") lists.push(await index.searchText(tenant, q.text, FETCH));
    const ranked = mode === "hybrid" ? reciprocalRankFusion(lists) : (lists[0] ?? []);
    return ranked.slice(0, LIMIT).map((h) => h.id);
  };
}

function serviceSearch(
  search: ReturnType<typeof createSearchService>,
  ctxOf: (q: Query) => TenantContext,
): Search {
  return async (q, mode) => {
    const hits = await search.search(ctxOf(q), { query: q.text, mode, limit: LIMIT });
    return hits.map((h) => `${h.documentId}:${h.version}:${h.chunkIndex}`);
  };
}

async function measureAll(
  scenario: string,
  queries: Query[],
  searches: { index: Search; service: Search },
  cells: Cell[],
) {
  for (const path of ["index", "service"] as const) {
    for (const mode of MODES) {
      const stats = await measure(queries, mode, searches[path]);
      cells.push({ scenario, path, mode, stats });
      console.log(
        `  ${scenario} · ${path} · ${mode}: p50 ${ms(stats.p50)} ms, p99 ${ms(stats.p99)} ms`,
      );
    }
  }
}

/** The top `LIMIT` of a vector search as the service asks for it (FETCH, then cut). */
async function topVector(index: LanceVectorIndex, tenantId: string, q: Query) {
  const hits = await index.searchVector(tenantId, q.vector, FETCH);
  return hits.slice(0, LIMIT).map((h) => ({ id: h.id, score: h.score }));
}

type Top = Array<{ id: string; score: number }>;

/**
 * How close the ANN answers are to the exact ones, averaged over queries: recall@k (the share
 * of the exact top k that the ANN top k contains) and the ratio of their summed cosine
 * similarities (1.0 when the ANN finds neighbours as similar, even if they are other chunks
 * that tie with the exact ones).
 */
function annQuality(exact: Top[], approx: Top[]): { recall: number; similarity: number } {
  let recallSum = 0;
  let simSum = 0;
  exact.forEach((e, i) => {
    const a = approx[i] ?? [];
    const ids = new Set(a.map((h) => h.id));
    recallSum += e.length === 0 ? 1 : e.filter((h) => ids.has(h.id)).length / e.length;
    const es = e.reduce((n, h) => n + h.score, 0);
    simSum += es === 0 ? 1 : a.reduce((n, h) => n + h.score, 0) / es;
  });
  return { recall: recallSum / exact.length, similarity: simSum / exact.length };
}

interface Burst {
  label: string;
  rows: number;
  searches: number;
  wallMs: number;
  rssGrowthMiB: number;
}

/**
 * `opts.burst` exact vector searches at once, as concurrent requests would start them: wall time
 * and how much the process grows (RSS sampled every 20 ms). Each running search materialises
 * the table's vectors; the adapter's `searchConcurrency` bounds how many run together.
 */
async function burst(
  label: string,
  index: LanceVectorIndex,
  tenantId: string,
  queries: Query[],
  rows: number,
): Promise<Burst> {
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: opts.burst }, (_, i) =>
      index.searchVector(tenantId, (queries[i % queries.length] as Query).vector, FETCH),
    ),
  );
  const wallMs = performance.now() - t0;
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  return { label, rows, searches: opts.burst, wallMs, rssGrowthMiB: (peak - before) / 2 ** 20 };
}

async function main() {
  printHeader("tenantrag search benchmark", opts);
  const lance = tempDir("lance");
  const blobs = tempDir("blobs");
  const store = await openPglite();
  const { db } = store;
  const tenants = benchTenants(db);
  const embedders = { local: queryEmbedder };
  const index = createLanceVectorIndex({
    uri: lance.dir,
    dimensions: DIMENSIONS,
    lock: createInProcessTenantLock(),
    annThreshold: opts.annThreshold,
    cacheSize: opts.cacheSize,
    logger: silent,
  });
  const search = benchSearchService({
    db,
    vectors: index,
    blobsDir: blobs.dir,
    embedders,
    tenants,
  });
  const cells: Cell[] = [];
  const builds: Array<[string, string]> = [];
  const bursts: Burst[] = [];
  const annVariants: Array<Array<string | number>> = [];
  let warm: LanceVectorIndex | undefined;

  const legacyTenants = benchTenants(db, { embeddingCache: false });
  /** The search service over `vectors`: as composed now, or (legacy) without the caches. */
  const serviceOver = (vectors: LanceVectorIndex, legacy = false) =>
    benchSearchService({
      db,
      vectors,
      blobsDir: blobs.dir,
      embedders: { local: legacy ? embedder : queryEmbedder },
      tenants: legacy ? legacyTenants : tenants,
    });
  const legacySearch = serviceOver(index, true);

  async function singleTenant(
    corpus: string,
    pieces: Piece[],
    localQueries: Query[],
    sizes: number[],
  ): Promise<void> {
    const single = await createTenant(db, tenants, `single-${corpus}`);
    let vectorOf: (p: Piece, i: number) => number[] = (p) => p.vector;
    let queries = localQueries;
    if (corpus === "clustered") {
      const sample = mixture(opts.seed + 17);
      const vectors = Array.from({ length: sizes[sizes.length - 1] as number }, sample);
      vectorOf = (_p, i) => vectors[i] as number[];
      queries = localQueries.map((q) => ({ ...q, vector: sample() }));
    } else if (corpus !== "local") {
      throw new Error(`--vectors: unknown corpus ${corpus} (clustered, local)`);
    }
    let written = 0;
    const exactTop: Top[] = [];
    const indexOnly = (vectors: LanceVectorIndex) => indexSearch(vectors, () => single.tenantId);
    for (const size of sizes) {
      const slice = pieces.slice(written, size);
      const { rows, documentIds } = rowsFor(slice, (p, i) => vectorOf(p, written + i));
      const w = await timed(async () => {
        await writeRows(index, single.tenantId, rows);
        await seedDocuments(db, single.tenantId, documentIds);
      });
      builds.push([
        `${corpus}: write chunks ${written}→${size} (+ seed rows)`,
        `${(w.ms / 1000).toFixed(1)} s`,
      ]);
      written = size;
      const label = `${corpus}: ${size} chunks, exact`;
      const largest = size === sizes[sizes.length - 1];
      const legacy = opts.legacy === "true" || opts.legacy.split(",").includes(corpus);
      if (!largest || opts.exactLargest) {
        console.log(`measuring ${label}…`);
        await measureAll(
          label,
          queries,
          { index: indexOnly(index), service: serviceSearch(search, () => single) },
          cells,
        );
      }
      if (legacy && (!largest || opts.exactLargest)) {
        await measurePaths(`${label}, before`, queries, ["service"], {
          service: serviceSearch(legacySearch, () => single),
        });
      }
      if (!largest) continue;
      // One at a time: an exact search holds the whole vector column (~150 MB at 100k × 384),
      // so a few hundred at once exhaust the memory of the machine.
      for (const q of queries) exactTop.push(await topVector(index, single.tenantId, q));
      if (opts.burst > 0 && corpus === "local") {
        // Bounded first: RSS does not shrink afterwards, so the unbounded run's growth is, if
        // anything, understated.
        bursts.push(await burst("default bound", index, single.tenantId, queries, size));
        const unbounded = createLanceVectorIndex({
          uri: lance.dir,
          dimensions: DIMENSIONS,
          lock: createInProcessTenantLock(),
          searchConcurrency: opts.burst,
          logger: silent,
        });
        try {
          bursts.push(await burst("no bound", unbounded, single.tenantId, queries, size));
        } finally {
          await unbounded.close();
        }
      }
      // Compaction as optimize() runs it first; each index is then built straight on the table.
      const compactor = createLanceVectorIndex({
        uri: lance.dir,
        dimensions: DIMENSIONS,
        lock: createInProcessTenantLock(),
        annThreshold: Number.MAX_SAFE_INTEGER,
        logger: silent,
      });
      await compactor.optimize(single.tenantId);
      await compactor.close();
      const variants: Array<{ label: string; index: AnnIndexSettings; legacy: boolean }> = [
        ...(legacy && opts.legacyAnn
          ? [{ label: "before", index: { ...LEGACY.index }, legacy: true }]
          : []),
        ...opts.annIndex.split(",").map((spec) => ({
          label: spec,
          index: parseIndex(spec),
          legacy: false,
        })),
      ];
      for (const v of variants) {
        const built = await timed(() => buildIndex(lance.dir, single.tenantId, v.index));
        builds.push([
          `${corpus}: ANN index ${v.label} at ${size} (${built.value} partitions)`,
          `${(built.ms / 1000).toFixed(1)} s`,
        ]);
        const settings = v.legacy ? [LEGACY.search] : opts.annSearch.split(",").map(parseSearch);
        annVariants.push(
          ...(
            await compareAnnSettings(lance.dir, single.tenantId, queries, exactTop, settings)
          ).map((r) => [corpus, v.label, ...r]),
        );
        // The full measure with this index under the adapter's defaults (or the old ones).
        const vectors = createLanceVectorIndex({
          uri: lance.dir,
          dimensions: DIMENSIONS,
          lock: createInProcessTenantLock(),
          ...(v.legacy ? { annSearch: { ...LEGACY.search } } : {}),
          logger: silent,
        });
        try {
          const annLabel = `${corpus}: ${size} chunks, ANN ${v.label}`;
          console.log(`measuring ${annLabel}…`);
          await measureAll(
            annLabel,
            queries,
            {
              index: indexOnly(vectors),
              service: serviceSearch(serviceOver(vectors, v.legacy), () => single),
            },
            cells,
          );
        } finally {
          await vectors.close();
        }
      }
    }
  }

  async function measurePaths(
    scenario: string,
    queries: Query[],
    paths: Array<"index" | "service">,
    searches: Partial<Record<"index" | "service", Search>>,
  ) {
    for (const path of paths) {
      for (const mode of MODES) {
        const stats = await measure(queries, mode, searches[path] as Search);
        cells.push({ scenario, path, mode, stats });
        console.log(
          `  ${scenario} · ${path} · ${mode}: p50 ${ms(stats.p50)} ms, p99 ${ms(stats.p99)} ms`,
        );
      }
    }
  }

  try {
    const largest = Math.max(...opts.sizes, opts.tenants * opts.tenantChunks);
    const pool = await timed(() => makePool(largest));
    builds.push([`generate + embed ${largest} chunks`, `${(pool.ms / 1000).toFixed(1)} s`]);
    const queries = await makeQueries(opts.warmup + opts.queries, Math.max(1, opts.tenants));

    // One tenant per corpus, growing through the sizes: exact search below the ANN threshold
    // (and above it until optimize() has run), then each ANN index at the largest size.
    const sizes = [...opts.sizes].sort((a, b) => a - b);
    for (const corpus of opts.vectors.split(",")) {
      await singleTenant(corpus, pool.value, queries, sizes);
    }

    // Text search between two full-text refreshes: rows written since the last one are not in
    // the FTS index and are scanned by every text query, until a write leaves `ftsRefreshRows`
    // (1 000 by default) of them, or enough fragments, and compacts. Same first size, plus rows
    // just below that bound written in one batch (one fragment, so only the scan is measured).
    // Text search now folds such rows into the index before it queries (the adapter's
    // `searchText`): only the first query of this case meets them, and pays one compaction.
    const pending = opts.unindexed;
    const first = sizes[0] as number;
    if (pending > 0 && pool.value.length >= first + pending) {
      const ctx = await createTenant(db, tenants, "unindexed");
      const { rows, documentIds } = rowsFor(pool.value.slice(0, first + pending));
      await writeRows(index, ctx.tenantId, rows.slice(0, first));
      await index.upsertChunks(ctx.tenantId, rows.slice(first));
      await seedDocuments(db, ctx.tenantId, documentIds);
      const label = `${first} chunks + ${pending} not yet in the FTS index`;
      console.log(`measuring ${label}…`);
      const searches = {
        index: indexSearch(index, () => ctx.tenantId),
        service: serviceSearch(search, () => ctx),
      };
      for (const path of ["index", "service"] as const) {
        const stats = await measure(queries, "text", searches[path]);
        cells.push({ scenario: label, path, mode: "text", stats });
        console.log(
          `  ${label} · ${path} · text: p50 ${ms(stats.p50)} ms, p99 ${ms(stats.p99)} ms`,
        );
      }
    }

    // Many small tenants, queries spread uniformly over them: most hit a tenant whose tables
    // are not open when the tenants outnumber the cache. The same corpus under an index whose
    // cache holds every tenant is the baseline.
    if (opts.tenants > 0) {
      const contexts: TenantContext[] = [];
      const w = await timed(async () => {
        for (let t = 0; t < opts.tenants; t++) {
          const ctx = await createTenant(db, tenants, `small-${t}`);
          const slice = pool.value.slice(t * opts.tenantChunks, (t + 1) * opts.tenantChunks);
          const { rows, documentIds } = rowsFor(slice);
          await writeRows(index, ctx.tenantId, rows);
          await seedDocuments(db, ctx.tenantId, documentIds);
          contexts.push(ctx);
        }
      });
      builds.push([
        `${opts.tenants} tenants × ${opts.tenantChunks} chunks: write (+ seed rows)`,
        `${(w.ms / 1000).toFixed(1)} s`,
      ]);
      const ctxOf = (q: Query) => contexts[q.tenant] as TenantContext;
      const label = `${opts.tenants} tenants × ${opts.tenantChunks}, cache ${opts.cacheSize}`;
      console.log(`measuring ${label}…`);
      await measureAll(
        label,
        queries,
        {
          index: indexSearch(index, (q) => ctxOf(q).tenantId),
          service: serviceSearch(search, ctxOf),
        },
        cells,
      );
      const all = opts.tenants + 16;
      warm = createLanceVectorIndex({
        uri: lance.dir,
        dimensions: DIMENSIONS,
        lock: createInProcessTenantLock(),
        annThreshold: opts.annThreshold,
        cacheSize: all,
        logger: silent,
      });
      const warmSearch = benchSearchService({
        db,
        vectors: warm,
        blobsDir: blobs.dir,
        embedders,
        tenants,
      });
      // Open every tenant first, so that the baseline measures a warm cache only.
      for (const [i, ctx] of contexts.entries()) {
        const q = queries[i % queries.length] as Query;
        await warm.searchVector(ctx.tenantId, q.vector, FETCH);
        await warm.searchText(ctx.tenantId, q.text, FETCH);
      }
      const warmLabel = `${opts.tenants} tenants × ${opts.tenantChunks}, cache ${all} (all open)`;
      console.log(`measuring ${warmLabel}…`);
      await measureAll(
        warmLabel,
        queries,
        {
          index: indexSearch(warm, (q) => ctxOf(q).tenantId),
          service: serviceSearch(warmSearch, ctxOf),
        },
        cells,
      );
    }
  } finally {
    await warm?.close();
    await index.close();
    await store.dispose();
    lance.remove();
    blobs.remove();
  }

  console.log("\n## Corpus build\n");
  table(["step", "time"], builds);
  console.log(`## Latency (ms), limit ${LIMIT}, ${opts.queries} queries per cell\n`);
  table(
    ["scenario", "path", "mode", "n", "p50", "p99", "mean"],
    cells.map((c) => [
      c.scenario,
      c.path,
      c.mode,
      c.stats.n,
      ms(c.stats.p50),
      ms(c.stats.p99),
      ms(c.stats.mean),
    ]),
  );
  const find = (scenario: string, path: string, mode: Mode) =>
    cells.find((c) => c.scenario === scenario && c.path === path && c.mode === mode)?.stats;
  const scenarios = [...new Set(cells.map((c) => c.scenario))];
  const ratios: Array<Array<string>> = [];
  const largest = Math.max(...opts.sizes);
  for (const path of ["index", "service"]) {
    for (const mode of MODES) {
      const first = opts.annIndex.split(",")[0];
      for (const corpus of opts.vectors.split(",")) {
        const exact = find(`${corpus}: ${largest} chunks, exact`, path, mode);
        const ann = find(`${corpus}: ${largest} chunks, ANN ${first}`, path, mode);
        const before = find(`${corpus}: ${largest} chunks, ANN before`, path, mode);
        if (exact && ann) {
          ratios.push([
            `${corpus}: ANN ${first} / exact at ${largest}`,
            path,
            mode,
            ratio(ann.p50, exact.p50),
            ratio(ann.p99, exact.p99),
          ]);
        }
        if (before && ann) {
          ratios.push([
            `${corpus}: ANN ${first} / before at ${largest}`,
            path,
            mode,
            ratio(ann.p50, before.p50),
            ratio(ann.p99, before.p99),
          ]);
        }
        for (const size of opts.sizes) {
          const now = find(`${corpus}: ${size} chunks, exact`, path, mode);
          const old = find(`${corpus}: ${size} chunks, exact, before`, path, mode);
          if (now && old) {
            ratios.push([
              `${corpus}: exact at ${size}, cached / before`,
              path,
              mode,
              ratio(now.p50, old.p50),
              ratio(now.p99, old.p99),
            ]);
          }
        }
      }
      const cold = scenarios.find((s) => s.includes("tenants") && !s.includes("all open"));
      const hot = scenarios.find((s) => s.includes("all open"));
      const c = cold ? find(cold, path, mode) : undefined;
      const h = hot ? find(hot, path, mode) : undefined;
      if (c && h) {
        ratios.push([
          `cache ${opts.cacheSize} / all open`,
          path,
          mode,
          ratio(c.p50, h.p50),
          ratio(c.p99, h.p99),
        ]);
      }
      const stale = scenarios.find((s) => s.includes("not yet in the FTS index"));
      const fresh = find(
        `${opts.vectors.split(",")[0]}: ${Math.min(...opts.sizes)} chunks, exact`,
        path,
        mode,
      );
      const st = stale ? find(stale, path, mode) : undefined;
      if (st && fresh) {
        ratios.push([
          `${opts.unindexed} rows outside FTS / all indexed`,
          path,
          mode,
          ratio(st.p50, fresh.p50),
          ratio(st.p99, fresh.p99),
        ]);
      }
      const idx = find(scenarios[0] as string, "index", mode);
      const svc = find(scenarios[0] as string, "service", mode);
      if (path === "service" && idx && svc) {
        ratios.push([
          `service / index (${scenarios[0]})`,
          "",
          mode,
          ratio(svc.p50, idx.p50),
          ratio(svc.p99, idx.p99),
        ]);
      }
    }
  }
  console.log("## Ratios within this run\n");
  table(["comparison", "path", "mode", "p50", "p99"], ratios);
  for (const b of bursts) {
    console.log(
      `Burst (${b.label}): ${b.searches} exact vector searches at once on ${b.rows} chunks: ` +
        `${ms(b.wallMs)} ms in all, RSS +${b.rssGrowthMiB.toFixed(0)} MiB ` +
        `(${(b.rssGrowthMiB / b.searches).toFixed(0)} MiB per search)`,
    );
  }
  if (annVariants.length > 0) {
    console.log(
      `\n## ANN settings against exact search (index path, vector, same ${opts.warmup + opts.queries} queries)\n`,
    );
    table(
      [
        "vectors",
        "index",
        "ef × refine × nprobes",
        "p50 ms",
        "p99 ms",
        `recall@${LIMIT}`,
        "similarity",
      ],
      annVariants,
    );
  }
}

/** Builds (or replaces) the tenant's ANN index as `optimize` would; its partition count. */
async function buildIndex(uri: string, tenantId: string, settings: AnnIndexSettings) {
  const conn = await connect(path.join(uri, tenantId));
  try {
    const t = await conn.openTable("chunks");
    const rows = await t.countRows();
    await t.createIndex("vector", { config: annIndexConfig(settings, rows), replace: true });
    t.close();
    return settings.rowsPerPartition
      ? Math.max(1, Math.round(rows / settings.rowsPerPartition))
      : Math.round(Math.sqrt(rows));
  } finally {
    conn.close();
  }
}

/**
 * Each ANN query setting on the built index: vector latency (index path) and how close its
 * top 10 is to the exact one — recall@10 (the share of the exact top 10 it contains) and the
 * ratio of their summed cosine similarities (1.0 when it finds neighbours as similar, even if
 * they are other chunks that tie with the exact ones).
 */
async function compareAnnSettings(
  uri: string,
  tenantId: string,
  queries: Query[],
  exactTop: Top[],
  settings: AnnSearchSettings[],
): Promise<Array<Array<string | number>>> {
  const out: Array<Array<string | number>> = [];
  for (const annSearch of settings) {
    const label = `${annSearch.ef}x${annSearch.refineFactor}x${annSearch.nprobes}`;
    const index = createLanceVectorIndex({
      uri,
      dimensions: DIMENSIONS,
      lock: createInProcessTenantLock(),
      annSearch,
      logger: silent,
    });
    try {
      const stats = await measure(
        queries,
        "vector",
        indexSearch(index, () => tenantId),
      );
      const top: Top[] = [];
      for (const q of queries) top.push(await topVector(index, tenantId, q));
      const { recall, similarity } = annQuality(exactTop, top);
      out.push([label, ms(stats.p50), ms(stats.p99), recall.toFixed(3), similarity.toFixed(3)]);
      console.log(`  ANN ${label}: p50 ${ms(stats.p50)} ms, recall ${recall.toFixed(3)}`);
    } finally {
      await index.close();
    }
  }
  return out;
}

await main();
printFooter();
