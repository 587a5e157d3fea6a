/**
 * Retrieval quality on real text nobody here wrote: known-item sets made at run time from what
 * is already on the machine (bench/lib/corpora.ts), each query with one right document.
 *
 * - `readmes`: each package README in `node_modules` is a document, its `package.json`
 *   `description` the query (packages whose README holds it verbatim dropped);
 * - `man`: a deterministic sample of the man pages in /usr/share/man/man1, rendered by groff:
 *   the NAME line's description is the query, the rest of the page the document (pages whose
 *   body holds the description verbatim dropped). Skipped, and said so, where there are none.
 *
 * The documents go the way ingestion takes them: the product's chunker with the tenant's
 * default settings, the local embedder, the LanceDB index (with its full-text index), and
 * `documents` / `document_versions` rows in PGlite; queries go through the search service as
 * the HTTP route calls it. A query's hit is any chunk of its document; results are deduplicated
 * by document (first chunk wins) before scoring, so R@k and MRR@10 count documents. Each
 * corpus has its own tenant.
 *
 * The yardstick is what a developer would build in an afternoon: textbook Okapi BM25
 * (k1 = 1.2, b = 0.75, lower-cased alphanumeric tokens, no stemming) over the same chunks.
 * (Neither `minisearch` nor `wink-bm25-text-search` is installed here, and a benchmark does
 * not earn a dependency.)
 *
 *   npm run bench:quality -- --corpus=all
 *
 * Options (flag or BENCH_* variable): corpus (`readmes`, `man` or `all`), items (per corpus),
 * min-chars (smallest document kept), max-chars (documents cut to this many characters, about
 * the size of the documents), man-dir, per-family (man pages kept of one tool's
 * family), limit (chunks asked of the service per query; the most it allows is 50), variants
 * (also score fusion settings over the raw index lists), depths (fetch depths of the variants).
 */
import path from "node:path";
import pino from "pino";
import { chunkText } from "../src/modules/ingestion/chunking.js";
import { type FusionMethod, fuse, fusionSettings } from "../src/modules/search/fusion.js";
import type { tenantSchemas } from "../src/modules/tenants/index.js";
import type { Db } from "../src/platform/db/index.js";
import { createLocalEmbedder } from "../src/platform/embeddings/local.js";
import {
  type ChunkRow,
  createInProcessTenantLock,
  createLanceVectorIndex,
  type FullTextSettings,
  type LanceVectorIndex,
  type VectorHit,
} from "../src/platform/vectors/index.js";
import { benchContext, openPglite, tempDir } from "./lib/backends.js";
import { type Corpus, type Item, manCorpus, readmeCorpus } from "./lib/corpora.js";
import {
  intOption,
  listOption,
  printFooter,
  printHeader,
  stringOption,
  table,
  timed,
} from "./lib/report.js";
import { benchSearchService, benchTenants } from "./lib/search-stack.js";

const opts = {
  corpus: stringOption("corpus", "all"),
  items: intOption("items", 400),
  minChars: intOption("min-chars", 800),
  maxChars: intOption("max-chars", 12_000),
  manDir: stringOption("man-dir", "/usr/share/man/man1"),
  perFamily: intOption("per-family", 3),
  limit: intOption("limit", 50),
  /** Also score fusion variants over the index's raw lists (what the defaults were chosen by). */
  variants: stringOption("variants", "") !== "",
  /** Chunks fetched from each list before fusing, in the variants table. */
  depths: listOption("depths", [30, 150]),
  /**
   * Full-text index settings to compare (index level, comma-separated): `default`, `nostem`,
   * `stop` (stop words removed), `noascii`, `positions`, `title:<boost>` (the title column in
   * a full-text index of its own, matched with the text), `prepend` (the title prepended to
   * each chunk's text). `+` combines, e.g. `stop+title:0.5`.
   */
  fts: stringOption("fts", ""),
};

type ConfigUpdate = tenantSchemas.ConfigUpdate;

const DIMENSIONS = 384;
const K = 10;
const silent = pino({ level: "silent" });
const embedder = createLocalEmbedder({ dimensions: DIMENSIONS });

/** Quality is measured without quotas (see bench/search.ts). */

/** Textbook Okapi BM25 over chunks, what a developer would write in an afternoon. */
export function createBm25(docs: Array<{ id: string; text: string }>, k1 = 1.2, b = 0.75) {
  const tokenize = (s: string) => s.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  const tfs = docs.map((d) => {
    const tf = new Map<string, number>();
    for (const t of tokenize(d.text)) tf.set(t, (tf.get(t) ?? 0) + 1);
    return tf;
  });
  const lengths = docs.map((d) => tokenize(d.text).length);
  const avgdl = lengths.reduce((a, n) => a + n, 0) / Math.max(1, docs.length);
  const df = new Map<string, number>();
  for (const tf of tfs) for (const t of tf.keys()) df.set(t, (df.get(t) ?? 0) + 1);
  const idf = (t: string) => {
    const n = df.get(t) ?? 0;
    return Math.log(1 + (docs.length - n + 0.5) / (n + 0.5));
  };
  return (query: string, limit: number): string[] => {
    const terms = [...new Set(tokenize(query))];
    const scored: Array<[number, number]> = [];
    tfs.forEach((tf, i) => {
      let s = 0;
      for (const t of terms) {
        const f = tf.get(t);
        if (!f) continue;
        const norm = k1 * (1 - b + (b * (lengths[i] as number)) / avgdl);
        s += (idf(t) * (f * (k1 + 1))) / (f + norm);
      }
      if (s > 0) scored.push([s, i]);
    });
    scored.sort((x, y) => y[0] - x[0] || x[1] - y[1]);
    return scored.slice(0, limit).map(([, i]) => (docs[i] as { id: string }).id);
  };
}

/** R@1, R@10 and MRR@10 of ranked document ids (duplicates removed, first kept). */
export class Scores {
  private n = 0;
  private r1 = 0;
  private r10Count = 0;
  private rr = 0;
  add(rankedDocs: string[], right: string): void {
    const docs = [...new Set(rankedDocs)].slice(0, K);
    const rank = docs.indexOf(right);
    this.n++;
    if (rank === 0) this.r1++;
    if (rank >= 0) {
      this.r10Count++;
      this.rr += 1 / (rank + 1);
    }
  }
  row(label: string): string[] {
    const f = (v: number) => (v / Math.max(1, this.n)).toFixed(3);
    return [label, f(this.r1), f(this.r10Count), f(this.rr)];
  }
  get mrr(): number {
    return this.rr / Math.max(1, this.n);
  }
  get r10(): number {
    return this.r10Count / Math.max(1, this.n);
  }
}

/** The Postgres side: each document completed, its version 1 active (as in bench/search.ts). */
async function seedDocuments(db: Db, tenantId: string, items: Item[]): Promise<void> {
  await db.query(
    `insert into documents (id, tenant_id, title, doc_type, status, active_version, latest_version)
     select id, $1, t, 'md', 'completed', 1, 1 from unnest($2::uuid[], $3::text[]) as u(id, t)`,
    [tenantId, items.map((i) => i.documentId), items.map((i) => i.name)],
  );
  await db.query(
    `insert into document_versions (tenant_id, document_id, version, content_type, status, is_active)
     select $1, id, 1, 'md', 'active', true from unnest($2::uuid[]) as id`,
    [tenantId, items.map((i) => i.documentId)],
  );
}

/** Chunks as ingestion makes them with the tenant's default chunk settings, embedded. */
async function rowsOf(
  items: Item[],
  chunking: { size: number; overlap: number; strategy: "fixed" | "paragraph" | "recursive" },
): Promise<ChunkRow[]> {
  const rows: ChunkRow[] = [];
  for (const item of items) {
    const texts = await chunkText(item.body, chunking);
    const { vectors } = await embedder.embed({ texts });
    texts.forEach((text, i) => {
      rows.push({
        id: `${item.documentId}:1:${i}`,
        documentId: item.documentId,
        version: 1,
        chunkIndex: i,
        text,
        vector: vectors[i] as number[],
        title: item.name,
        docType: "md",
        metadata: { source: "quality" },
      });
    });
  }
  return rows;
}

/**
 * Fusion settings compared over the same raw lists (index level, every row active, so no
 * version filter): each query's vector and text lists are fetched once per depth.
 */
async function variants(index: LanceVectorIndex, tenantId: string, items: Item[]) {
  const { vectors } = await embedder.embed({ texts: items.map((i) => i.query) });
  const rows: string[][] = [];
  for (const depth of opts.depths) {
    const lists = [];
    for (const [i, item] of items.entries()) {
      const [v, t] = await Promise.all([
        index.searchVector(tenantId, vectors[i] as number[], depth),
        index.searchText(tenantId, item.query, depth),
      ]);
      lists.push({ v, t, right: item.documentId });
    }
    const grid: Array<[FusionMethod, number]> = [];
    for (const w of [0.5, 0.6, 0.7, 0.8, 0.9]) grid.push(["rrf", w]);
    for (const w of [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]) grid.push(["weighted", w]);
    for (const [method, textWeight] of grid) {
      const s = new Scores();
      for (const l of lists) {
        s.add(
          fuse(l.v, l.t, { method, textWeight }).map((h) => h.documentId),
          l.right,
        );
      }
      rows.push(s.row(`depth ${depth} · ${method} · text weight ${textWeight}`));
    }
  }
  table(["fusion (index level)", "R@1", "R@10", "MRR@10"], rows);
}

/** `--fts` spec → the adapter's full-text settings, and whether titles are prepended. */
function parseFts(spec: string): { fullText: Partial<FullTextSettings>; prepend: boolean } {
  const fullText: Partial<FullTextSettings> = {};
  let prepend = false;
  for (const part of spec.split("+")) {
    const [key, value] = part.split(":");
    if (key === "default") continue;
    else if (key === "nostem") fullText.stem = false;
    else if (key === "stop") fullText.removeStopWords = true;
    else if (key === "noascii") fullText.asciiFolding = false;
    else if (key === "positions") fullText.withPosition = true;
    else if (key === "title") fullText.titleBoost = Number(value ?? 1);
    else if (key === "prepend") prepend = true;
    else throw new Error(`--fts: unknown setting ${part}`);
  }
  return { fullText, prepend };
}

/** Service-equivalent fetch depth for `opts.limit` (search.service.ts). */
const FETCH = Math.min(Math.max(opts.limit * 3, 30), 150);

/**
 * Each `--fts` setting over the same chunks, at index level (every row active): text search
 * alone, and hybrid as the service fuses by default (the vector list of the main index).
 */
async function ftsVariants(
  rows: ChunkRow[],
  items: Item[],
  vectorLists: VectorHit[][],
  tenantId: string,
): Promise<string[][]> {
  const out: string[][] = [];
  for (const spec of opts.fts.split(",")) {
    const { fullText, prepend } = parseFts(spec);
    const dir = tempDir("lance-fts");
    const index = createLanceVectorIndex({
      uri: dir.dir,
      dimensions: DIMENSIONS,
      lock: createInProcessTenantLock(),
      fullText,
      logger: silent,
    });
    try {
      const written = prepend ? rows.map((r) => ({ ...r, text: `${r.title}\n${r.text}` })) : rows;
      const started = performance.now();
      for (let i = 0; i < written.length; i += 2000) {
        await index.upsertChunks(tenantId, written.slice(i, i + 2000));
      }
      await index.optimize(tenantId);
      const buildMs = performance.now() - started;
      const text = new Scores();
      const hybrid = new Scores();
      const t0 = performance.now();
      for (const [i, item] of items.entries()) {
        const t = await index.searchText(tenantId, item.query, FETCH);
        text.add(
          t.map((h) => h.documentId),
          item.documentId,
        );
        hybrid.add(
          fuse(
            vectorLists[i] as VectorHit[],
            t,
            fusionSettings({
              embeddingProvider: "local",
              searchFusion: null,
              searchTextWeight: null,
            }),
          ).map((h) => h.documentId),
          item.documentId,
        );
      }
      const perQuery = (performance.now() - t0) / Math.max(1, items.length);
      const [, ...tr] = text.row(spec);
      const [, ...hr] = hybrid.row(spec);
      out.push([spec, ...tr, ...hr, (buildMs / 1000).toFixed(1), perQuery.toFixed(2)]);
      console.log(
        `  fts ${spec}: text MRR ${text.mrr.toFixed(3)}, hybrid MRR ${hybrid.mrr.toFixed(3)}`,
      );
    } finally {
      await index.close();
      dir.remove();
    }
  }
  return out;
}

/** The rankings of one corpus, each a row of its table. */
async function measureCorpus(
  corpus: Corpus,
  store: { db: Db },
  tenants: ReturnType<typeof benchTenants>,
  dirs: { lance: string; blobs: string },
): Promise<{ scores: Array<[string, Scores]>; fts: string[][] }> {
  const { db } = store;
  const { items } = corpus;
  const index = createLanceVectorIndex({
    uri: dirs.lance,
    dimensions: DIMENSIONS,
    lock: createInProcessTenantLock(),
    logger: silent,
  });
  const search = benchSearchService({
    db,
    vectors: index,
    blobsDir: dirs.blobs,
    embedders: { local: embedder },
    tenants,
  });
  try {
    const tenant = await db.transaction((tx) =>
      tenants.create(tx, { name: `quality-${corpus.name}`, planId: "enterprise" }),
    );
    const ctx = benchContext(tenant.id);
    const config = await tenants.getConfig(ctx);
    const chunking = {
      size: config.chunkSize,
      overlap: config.chunkOverlap,
      strategy: config.chunkStrategy,
    };
    const built = await timed(async () => {
      const rows = await rowsOf(items, chunking);
      for (let i = 0; i < rows.length; i += 2000) {
        await index.upsertChunks(tenant.id, rows.slice(i, i + 2000));
      }
      await seedDocuments(db, tenant.id, items);
      return rows;
    });
    const rows = built.value;
    console.log(
      `${corpus.name}: ${rows.length} chunks (${JSON.stringify(chunking)}), ingested in ${(built.ms / 1000).toFixed(1)} s`,
    );
    const docOf = new Map(rows.map((r) => [r.id, r.documentId]));
    const bm25 = createBm25(rows.map((r) => ({ id: r.id, text: r.text })));

    const scores: Array<[string, Scores]> = [];
    const runs: Array<[string, "vector" | "text" | "hybrid", ConfigUpdate]> = [
      ["service vector", "vector", {}],
      ["service text", "text", {}],
      // What hybrid search did before weights (3584a2f): plain RRF, k = 60, same fetch depth.
      [
        "service hybrid, plain RRF (before weights)",
        "hybrid",
        { searchFusion: "rrf", searchTextWeight: 0.5 },
      ],
      ["service hybrid, defaults", "hybrid", { searchFusion: null, searchTextWeight: null }],
    ];
    for (const [label, mode, settings] of runs) {
      if (Object.keys(settings).length > 0) await tenants.updateConfig(ctx, settings);
      const s = new Scores();
      for (const item of items) {
        const hits = await search.search(ctx, { query: item.query, mode, limit: opts.limit });
        s.add(
          hits.map((h) => h.documentId),
          item.documentId,
        );
      }
      scores.push([label, s]);
    }
    const base = new Scores();
    for (const item of items) {
      base.add(
        bm25(item.query, opts.limit).map((id) => docOf.get(id) as string),
        item.documentId,
      );
    }
    scores.push(["plain BM25 over chunks", base]);
    if (opts.variants) await variants(index, tenant.id, items);
    let fts: string[][] = [];
    if (opts.fts !== "") {
      const { vectors } = await embedder.embed({ texts: items.map((i) => i.query) });
      const lists: VectorHit[][] = [];
      for (const [i] of items.entries()) {
        lists.push(await index.searchVector(tenant.id, vectors[i] as number[], FETCH));
      }
      fts = await ftsVariants(rows, items, lists, tenant.id);
    }
    return { scores, fts };
  } finally {
    await index.close();
  }
}

/** Whether hybrid (defaults) meets the goal on a corpus: ≥ text and vector, > BM25. */
function verdict(scores: Array<[string, Scores]>): string {
  const get = (label: string) => scores.find(([l]) => l === label)?.[1] as Scores;
  const hybrid = get("service hybrid, defaults");
  const best = Math.max(get("service text").mrr, get("service vector").mrr);
  const bm25 = get("plain BM25 over chunks");
  const ok = hybrid.mrr >= best && hybrid.mrr > bm25.mrr && hybrid.r10 >= bm25.r10;
  return (
    `hybrid MRR@10 ${hybrid.mrr.toFixed(3)} vs best single mode ${best.toFixed(3)}, ` +
    `BM25 ${bm25.mrr.toFixed(3)} (R@10 ${hybrid.r10.toFixed(3)} vs ${bm25.r10.toFixed(3)}): ` +
    (ok ? "goal met" : "goal NOT met")
  );
}

async function main() {
  printHeader("tenantrag retrieval quality benchmark", opts);
  const names = opts.corpus === "all" ? ["readmes", "man"] : opts.corpus.split(",");
  const corpusOpts = { items: opts.items, minChars: opts.minChars, maxChars: opts.maxChars };
  const corpora: Corpus[] = [];
  for (const name of names) {
    if (name === "readmes") {
      corpora.push(readmeCorpus(path.resolve("node_modules"), corpusOpts));
    } else if (name === "man") {
      const made = await timed(() =>
        manCorpus(opts.manDir, { ...corpusOpts, perFamily: opts.perFamily }),
      );
      console.log(`man pages rendered in ${(made.ms / 1000).toFixed(1)} s`);
      corpora.push(made.value);
    } else {
      throw new Error(`--corpus: unknown corpus ${name} (readmes, man, all)`);
    }
  }
  for (const c of corpora) {
    if (c.skipped) {
      console.log(`${c.name}: skipped (${c.skipped})`);
      continue;
    }
    console.log(
      `${c.name}: ${c.items.length} items from ${c.source} (dropped: ${JSON.stringify(c.dropped)}); ` +
        `first ${c.items[0]?.name}, last ${c.items[c.items.length - 1]?.name}`,
    );
  }
  const lance = tempDir("lance");
  const blobs = tempDir("blobs");
  const store = await openPglite();
  const tenants = benchTenants(store.db);
  const results: Array<[Corpus, Awaited<ReturnType<typeof measureCorpus>>]> = [];
  try {
    for (const c of corpora) {
      if (c.skipped || c.items.length === 0) continue;
      results.push([
        c,
        await measureCorpus(c, store, tenants, { lance: lance.dir, blobs: blobs.dir }),
      ]);
    }
  } finally {
    await store.dispose();
    lance.remove();
    blobs.remove();
  }
  console.log("");
  for (const [c, { scores, fts }] of results) {
    console.log(`### ${c.name} (${c.items.length} items)\n`);
    table(
      ["ranking", "R@1", "R@10", "MRR@10"],
      scores.map(([label, s]) => s.row(label)),
    );
    console.log(`${verdict(scores)}\n`);
    if (fts.length > 0) {
      console.log(`Full-text settings (index level, fetch ${FETCH}):\n`);
      table(
        [
          "settings",
          "text R@1",
          "text R@10",
          "text MRR@10",
          "hybrid R@1",
          "hybrid R@10",
          "hybrid MRR@10",
          "build s",
          "ms/query",
        ],
        fts,
      );
    }
  }
  printFooter();
}

await main();
