/**
 * Retrieval quality on real text nobody here wrote: a known-item set made at run time from the
 * packages in `node_modules`. Each package's README is a document; its `package.json`
 * `description` is the query whose one right answer is that document. Packages whose README
 * holds the description verbatim (case and spacing aside) are dropped, since those queries
 * would test string matching only; so are READMEs under `min-chars` and duplicates of a name
 * (the first path in sorted order wins). Items are sorted by package name and the first `items`
 * kept, so two runs on the same `node_modules` measure the same set.
 *
 * The documents go the way ingestion takes them: the product's chunker with the tenant's
 * default settings, the local embedder, the LanceDB index (with its full-text index), and
 * `documents` / `document_versions` rows in PGlite; queries go through the search service as
 * the HTTP route calls it. A query's hit is any chunk of its document; results are deduplicated
 * by document (first chunk wins) before scoring, so R@k and MRR@10 count documents.
 *
 * The yardstick is what a developer would build in an afternoon: textbook Okapi BM25
 * (k1 = 1.2, b = 0.75, lower-cased alphanumeric tokens, no stemming) over the same chunks.
 * (Neither `minisearch` nor `wink-bm25-text-search` is installed here, and a benchmark does
 * not earn a dependency.)
 *
 *   npm run bench:quality -- --items=400
 *
 * Options (flag or BENCH_* variable): items, min-chars (smallest README kept), max-chars
 * (README cut to this many characters, about the size of the documents), limit
 * (chunks asked of the service per query; the most it allows is 50).
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import pino from "pino";
import { chunkText } from "../src/modules/ingestion/chunking.js";
import { type FusionMethod, fuse } from "../src/modules/search/fusion.js";
import type { tenantSchemas } from "../src/modules/tenants/index.js";
import type { Db } from "../src/platform/db/index.js";
import { createLocalEmbedder } from "../src/platform/embeddings/local.js";
import {
  type ChunkRow,
  createInProcessTenantLock,
  createLanceVectorIndex,
  type LanceVectorIndex,
} from "../src/platform/vectors/index.js";
import { benchContext, openPglite, tempDir } from "./lib/backends.js";
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
  items: intOption("items", 400),
  minChars: intOption("min-chars", 800),
  maxChars: intOption("max-chars", 12_000),
  limit: intOption("limit", 50),
  /** Also score fusion variants over the index's raw lists (what the defaults were chosen by). */
  variants: stringOption("variants", "") !== "",
  /** Chunks fetched from each list before fusing, in the variants table. */
  depths: listOption("depths", [30, 150]),
};

type ConfigUpdate = tenantSchemas.ConfigUpdate;

const DIMENSIONS = 384;
const K = 10;
const silent = pino({ level: "silent" });
const embedder = createLocalEmbedder({ dimensions: DIMENSIONS });

/** Quality is measured without quotas (see bench/search.ts). */

export interface Item {
  name: string;
  documentId: string;
  readme: string;
  query: string;
}

const normalise = (s: string) => s.toLowerCase().replace(/\s+/g, " ").trim();

/** A stable uuid-shaped id per package name, so ties break the same way every run. */
function idOf(name: string): string {
  const h = createHash("sha256").update(name).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** Every package directory under `root` (scoped ones included, nested node_modules too). */
function packageDirs(root: string, out: string[] = [], depth = 0): string[] {
  let entries: string[];
  try {
    entries = readdirSync(root).sort();
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (entry.startsWith(".")) continue;
    const dir = path.join(root, entry);
    if (entry.startsWith("@")) {
      packageDirs(dir, out, depth);
      continue;
    }
    out.push(dir);
    if (depth < 3) packageDirs(path.join(dir, "node_modules"), out, depth + 1);
  }
  return out;
}

const README = /^readme(\.(md|markdown|txt))?$/i;

/** The known-item set: see the file comment. */
export function loadItems(root: string): { items: Item[]; dropped: Record<string, number> } {
  const dropped = { noReadme: 0, tiny: 0, noDescription: 0, verbatim: 0, duplicate: 0 };
  const byName = new Map<string, Item>();
  for (const dir of packageDirs(root)) {
    let pkg: { name?: unknown; description?: unknown };
    try {
      pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
    } catch {
      continue;
    }
    if (typeof pkg.name !== "string") continue;
    if (byName.has(pkg.name)) {
      dropped.duplicate++;
      continue;
    }
    const file = readdirSync(dir).find((f) => README.test(f));
    if (!file || !statSync(path.join(dir, file)).isFile()) {
      dropped.noReadme++;
      continue;
    }
    const readme = readFileSync(path.join(dir, file), "utf8");
    if (readme.length < opts.minChars) {
      dropped.tiny++;
      continue;
    }
    const description = typeof pkg.description === "string" ? pkg.description.trim() : "";
    if (description.split(/\s+/).length < 3) {
      dropped.noDescription++;
      continue;
    }
    if (normalise(readme).includes(normalise(description))) {
      dropped.verbatim++;
      continue;
    }
    byName.set(pkg.name, {
      name: pkg.name,
      documentId: idOf(pkg.name),
      readme: readme.slice(0, opts.maxChars),
      query: description,
    });
  }
  const items = [...byName.values()]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .slice(0, opts.items);
  return { items, dropped };
}

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
  private r10 = 0;
  private rr = 0;
  add(rankedDocs: string[], right: string): void {
    const docs = [...new Set(rankedDocs)].slice(0, K);
    const rank = docs.indexOf(right);
    this.n++;
    if (rank === 0) this.r1++;
    if (rank >= 0) {
      this.r10++;
      this.rr += 1 / (rank + 1);
    }
  }
  row(label: string): string[] {
    const f = (v: number) => (v / Math.max(1, this.n)).toFixed(3);
    return [label, f(this.r1), f(this.r10), f(this.rr)];
  }
  get mrr(): number {
    return this.rr / Math.max(1, this.n);
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
    const texts = await chunkText(item.readme, chunking);
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
        metadata: { source: "node_modules" },
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

async function main() {
  printHeader("tenantrag retrieval quality benchmark", opts);
  const root = path.resolve("node_modules");
  const { items, dropped } = loadItems(root);
  console.log(
    `${items.length} items from ${root} (dropped: ${JSON.stringify(dropped)}); ` +
      `first ${items[0]?.name}, last ${items[items.length - 1]?.name}`,
  );
  const lance = tempDir("lance");
  const blobs = tempDir("blobs");
  const store = await openPglite();
  const { db } = store;
  const tenants = benchTenants(db);
  const index = createLanceVectorIndex({
    uri: lance.dir,
    dimensions: DIMENSIONS,
    lock: createInProcessTenantLock(),
    logger: silent,
  });
  const search = benchSearchService({
    db,
    vectors: index,
    blobsDir: blobs.dir,
    embedders: { local: embedder },
    tenants,
  });
  try {
    const tenant = await db.transaction((tx) =>
      tenants.create(tx, { name: "quality", planId: "enterprise" }),
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
      `${rows.length} chunks (${JSON.stringify(chunking)}), ingested in ${(built.ms / 1000).toFixed(1)} s\n`,
    );
    const docOf = new Map(rows.map((r) => [r.id, r.documentId]));
    const bm25 = createBm25(rows.map((r) => ({ id: r.id, text: r.text })));

    const scores: Array<[string, Scores]> = [];
    const runs: Array<[string, "vector" | "text" | "hybrid", ConfigUpdate]> = [
      ["service vector", "vector", {}],
      ["service text", "text", {}],
      // What hybrid search did before weights (3584a2f): plain RRF, k = 60, same fetch depth.
      [
        "service hybrid, plain RRF (before)",
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
    table(
      ["ranking", "R@1", "R@10", "MRR@10"],
      scores.map(([label, s]) => s.row(label)),
    );
    if (opts.variants) await variants(index, tenant.id, items);
  } finally {
    await index.close();
    await store.dispose();
    lance.remove();
    blobs.remove();
  }
  printFooter();
}

await main();
