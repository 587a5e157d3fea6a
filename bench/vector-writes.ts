/**
 * The vector-index write path of ingestion: the calls the pipeline makes for each new document
 * (upsertChunks, upsertCatalog), one document after another into one tenant, timed as the
 * table grows; plus a text search every few documents. Each call is a LanceDB commit, hence a
 * fragment, and every merge, delete and search visits every fragment until a compaction.
 *
 * Variants in the same run differ only in the adapter options that decide when a write
 * compacts and what the compaction keeps, written `<ftsRefreshRows>/<compactFragments>-<max
 * CompactFragments>/<keep seconds>`: `5000/0-0/900` compacts only once 5 000 rows are outside
 * the full-text index and keeps replaced versions 15 minutes (the policy before compaction by
 * fragment count), `1000/32-32/20` compacts every 32 fragments whatever the table's size, and
 * `1000/32-256/20` (today's default) waits for more fragments as the table grows.
 *
 *   npm run bench:vector-writes -- --docs=1000 --chunks-per-doc=7 --variants=5000/0-0/900,1000/32-32/20,1000/32-256/20
 */
import { randomUUID } from "node:crypto";
import pino from "pino";
import { createLocalEmbedder } from "../src/platform/embeddings/local.js";
import {
  type ChunkRow,
  createInProcessTenantLock,
  createLanceVectorIndex,
} from "../src/platform/vectors/index.js";
import { tempDir } from "./lib/backends.js";
import {
  intOption,
  ms,
  printFooter,
  printHeader,
  ratio,
  stringOption,
  summarize,
  table,
} from "./lib/report.js";
import { createTextGenerator } from "./lib/text.js";

const opts = {
  docs: intOption("docs", 1000),
  chunksPerDoc: intOption("chunks-per-doc", 7),
  variants: stringOption("variants", "5000/0-0/900,1000/32-32/20,1000/32-256/20"),
  searchEvery: intOption("search-every", 5),
  seed: intOption("seed", 11),
};
const OPS = ["upsertChunks", "upsertCatalog"] as const;
const SLICES = 4;

interface Doc {
  id: string;
  rows: ChunkRow[];
}

async function makeDocs(): Promise<{ docs: Doc[]; queries: string[] }> {
  const gen = createTextGenerator(opts.seed);
  const embedder = createLocalEmbedder({ dimensions: 384 });
  const docs: Doc[] = [];
  for (let d = 0; d < opts.docs; d++) {
    const id = randomUUID();
    const texts = Array.from({ length: opts.chunksPerDoc }, () => gen.chunk(1000));
    const { vectors } = await embedder.embed({ texts });
    docs.push({
      id,
      rows: texts.map((text, i) => ({
        id: `${id}:1:${i}`,
        documentId: id,
        version: 1,
        chunkIndex: i,
        text,
        vector: vectors[i] as number[],
        title: `Document ${d}`,
        docType: "md",
        metadata: {},
      })),
    });
  }
  return { docs, queries: Array.from({ length: opts.docs }, () => gen.query()) };
}

interface Variant {
  name: string;
  totalMs: number;
  /** Mean ms per document of each op, per slice of the documents. */
  perSlice: Record<string, number[]>;
  search: number[][];
}

async function runVariant(name: string, docs: Doc[], queries: string[]): Promise<Variant> {
  const [rows, fragments, keep] = name.split("/");
  const [compactFragments, maxCompactFragments] = String(fragments).split("-").map(Number);
  const dir = tempDir("vw");
  const index = createLanceVectorIndex({
    uri: dir.dir,
    dimensions: 384,
    lock: createInProcessTenantLock(),
    ftsRefreshRows: Number(rows),
    compactFragments: compactFragments as number,
    maxCompactFragments: maxCompactFragments as number,
    keepVersionsMs: Number(keep) * 1000,
    logger: pino({ level: "silent" }),
  });
  const tenant = randomUUID();
  const sliceSize = Math.ceil(docs.length / SLICES);
  const perSlice: Record<string, number[]> = {};
  for (const op of [...OPS, "both"]) perSlice[op] = new Array<number>(SLICES).fill(0);
  const search: number[][] = Array.from({ length: SLICES }, () => []);
  const t0 = performance.now();
  try {
    for (const [d, doc] of docs.entries()) {
      const slice = Math.floor(d / sliceSize);
      const time = async (op: string, fn: () => Promise<unknown>) => {
        const s = performance.now();
        await fn();
        const spent = (performance.now() - s) / sliceSize;
        (perSlice[op] as number[])[slice] = ((perSlice[op] as number[])[slice] as number) + spent;
        (perSlice.both as number[])[slice] = ((perSlice.both as number[])[slice] as number) + spent;
      };
      // The pipeline's calls for a new document, in its order.
      await time("upsertChunks", () => index.upsertChunks(tenant, doc.rows));
      await time("upsertCatalog", () =>
        index.upsertCatalog(tenant, {
          documentId: doc.id,
          version: 1,
          title: "t",
          docType: "md",
          summary: "s",
          chunkCount: doc.rows.length,
        }),
      );
      if (d % opts.searchEvery === 0) {
        const s = performance.now();
        await index.searchText(tenant, queries[d] as string, 30);
        (search[slice] as number[]).push(performance.now() - s);
      }
    }
    return { name, totalMs: performance.now() - t0, perSlice, search };
  } finally {
    await index.close();
    dir.remove();
  }
}

async function main() {
  printHeader("tenantrag vector-index write path (diagnostic)", opts);
  const { docs, queries } = await makeDocs();
  const variants: Variant[] = [];
  for (const name of opts.variants.split(",")) {
    console.log(`ftsRefreshRows/compactFragments/keep s ${name}…`);
    variants.push(await runVariant(name, docs, queries));
  }
  const sliceSize = Math.ceil(opts.docs / SLICES);
  const heads = Array.from(
    { length: SLICES },
    (_, i) => `docs ${i * sliceSize + 1}–${Math.min(opts.docs, (i + 1) * sliceSize)}`,
  );
  for (const v of variants) {
    console.log(`\n## ftsRefreshRows/compactFragments/keep s ${v.name}: mean ms per document\n`);
    table(
      ["call", ...heads],
      [
        ...Object.entries(v.perSlice).map(([op, xs]) => [op, ...xs.map(ms)]),
        ["searchText p50 (every 5th doc)", ...v.search.map((s) => ms(summarize(s).p50))],
      ],
    );
  }
  const base = variants[0] as Variant;
  console.log(`## Totals (${opts.docs} documents × ${opts.chunksPerDoc} chunks)\n`);
  table(
    [
      "ftsRefreshRows/compactFragments/keep s",
      "total s",
      "docs/s",
      "vs first",
      "last-slice ms/doc",
      "last-slice search p50",
    ],
    variants.map((v) => [
      v.name,
      (v.totalMs / 1000).toFixed(1),
      (opts.docs / (v.totalMs / 1000)).toFixed(1),
      ratio(v.totalMs, base.totalMs),
      ms((v.perSlice.both as number[])[SLICES - 1] as number),
      ms(summarize(v.search[SLICES - 1] as number[]).p50),
    ]),
  );
}

await main();
printFooter();
