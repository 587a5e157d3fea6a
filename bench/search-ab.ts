/**
 * Service-level search latency of this checkout against another one (`--before`, e.g. a
 * detached worktree of main with node_modules linked), on one corpus both search, alternating:
 * rounds of `queries` searches per mode, the side that goes first swapped every round, so that
 * load changes on a shared machine touch both sides alike. Also the time of each stage of a
 * hybrid search on this checkout (index calls, the active-version query, the usage write).
 *
 * The corpus: one tenant of `size` chunks (texts of the local word model, clustered vectors as
 * in bench/search.ts, 8 chunks to a document, version 1 active), written and optimised (ANN
 * index built) with this checkout's adapter; `documents` / `document_versions` rows in PGlite.
 * Both sides get their own adapter instance over the same LanceDB directory and their own
 * search service over the same PGlite database, from their own source tree.
 *
 *   npx tsx bench/search-ab.ts --before=/work/wt/search-before --size=100000
 *
 * Options (flag or BENCH_* variable): before, size, queries (per side, mode and round), rounds,
 * warmup, modes, clusters, spread, seed.
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import pino from "pino";
import type { SearchService } from "../src/modules/search/index.js";
import type { Db } from "../src/platform/db/index.js";
import {
  type ChunkRow,
  createInProcessTenantLock,
  createLanceVectorIndex,
} from "../src/platform/vectors/index.js";
import { benchContext, openPglite, tempDir } from "./lib/backends.js";
import { createMixture } from "./lib/mixture.js";
import {
  intOption,
  ms,
  printFooter,
  printHeader,
  ratio,
  stringOption,
  summarize,
  table,
  timed,
} from "./lib/report.js";
import { benchTenants } from "./lib/search-stack.js";
import { createTextGenerator } from "./lib/text.js";

const opts = {
  before: stringOption("before", "/work/wt/search-before"),
  size: intOption("size", 100_000),
  queries: intOption("queries", 40),
  rounds: intOption("rounds", 3),
  warmup: intOption("warmup", 10),
  modes: stringOption("modes", "hybrid,vector,text"),
  clusters: intOption("clusters", 1000),
  spread: intOption("spread", 50),
  seed: intOption("seed", 7),
};

const DIMENSIONS = 384;
const LIMIT = 10;
const silent = pino({ level: "silent" });
type Mode = "vector" | "text" | "hybrid";

const mixture = (seed: number) =>
  createMixture({ seed, clusters: opts.clusters, spread: opts.spread, dimensions: DIMENSIONS });

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

interface Side {
  label: string;
  search: SearchService;
  close(): Promise<void>;
}

/** The search service of the checkout at `root` over `uri` and `db`. */
async function sideOf(label: string, root: string, uri: string, db: Db, blobs: string) {
  const vectorsMod = (await import(
    path.join(root, "src/platform/vectors/index.ts")
  )) as typeof import("../src/platform/vectors/index.js");
  const stack = (await import(
    path.join(root, "bench/lib/search-stack.ts")
  )) as typeof import("./lib/search-stack.js");
  const cacheMod = (await import(
    path.join(root, "src/platform/embeddings/query-cache.ts")
  )) as typeof import("../src/platform/embeddings/query-cache.js");
  const localMod = (await import(
    path.join(root, "src/platform/embeddings/local.ts")
  )) as typeof import("../src/platform/embeddings/local.js");
  const vectors = vectorsMod.createLanceVectorIndex({
    uri,
    dimensions: DIMENSIONS,
    lock: vectorsMod.createInProcessTenantLock(),
    logger: silent,
  });
  const search = stack.benchSearchService({
    db,
    vectors,
    blobsDir: blobs,
    embedders: {
      local: cacheMod.withQueryCache(localMod.createLocalEmbedder({ dimensions: DIMENSIONS })),
    },
    tenants: stack.benchTenants(db),
  });
  return { label, search, close: () => vectors.close() } satisfies Side;
}

async function main() {
  printHeader("tenantrag search latency, this checkout against another (alternating)", opts);
  const lance = tempDir("lance");
  const blobs = tempDir("blobs");
  const store = await openPglite();
  const { db } = store;
  const tenants = benchTenants(db);
  const sides: Side[] = [];
  try {
    const ctx = benchContext(
      (await db.transaction((tx) => tenants.create(tx, { name: "ab", planId: "enterprise" }))).id,
    );
    // The corpus, written and optimised with this checkout's adapter.
    const writer = createLanceVectorIndex({
      uri: lance.dir,
      dimensions: DIMENSIONS,
      lock: createInProcessTenantLock(),
      annThreshold: Math.min(20_000, opts.size),
      logger: silent,
    });
    const gen = createTextGenerator(opts.seed);
    const sample = mixture(opts.seed + 17);
    const ids: string[] = [];
    const built = await timed(async () => {
      for (let start = 0; start < opts.size; start += 5000) {
        const rows: ChunkRow[] = [];
        let documentId = "";
        for (let i = start; i < Math.min(opts.size, start + 5000); i++) {
          const chunkIndex = i % 8;
          if (chunkIndex === 0) {
            documentId = randomUUID();
            ids.push(documentId);
          }
          rows.push({
            id: `${documentId}:1:${chunkIndex}`,
            documentId,
            version: 1,
            chunkIndex,
            text: gen.chunk(1000),
            vector: sample(),
            title: `Document ${ids.length}`,
            docType: "md",
            metadata: { source: "bench" },
          });
        }
        await writer.upsertChunks(ctx.tenantId, rows);
      }
      await seedDocuments(db, ctx.tenantId, ids);
    });
    const optimised = await timed(() => writer.optimize(ctx.tenantId));
    await writer.close();
    console.log(
      `${opts.size} chunks written in ${(built.ms / 1000).toFixed(1)} s, optimised in ` +
        `${(optimised.ms / 1000).toFixed(1)} s (${JSON.stringify(optimised.value)})`,
    );
    const qgen = createTextGenerator(opts.seed + 1_000_003);
    const queries = Array.from({ length: opts.warmup + opts.queries }, () => qgen.query());

    sides.push(await sideOf("before", path.resolve(opts.before), lance.dir, db, blobs.dir));
    sides.push(await sideOf("after", path.resolve("."), lance.dir, db, blobs.dir));
    const modes = opts.modes.split(",") as Mode[];
    const samples = new Map<string, number[]>();
    for (const side of sides) {
      for (const mode of modes) {
        for (const q of queries.slice(0, opts.warmup)) {
          await side.search.search(ctx, { query: q, mode, limit: LIMIT });
        }
      }
    }
    for (let round = 0; round < opts.rounds; round++) {
      const order = round % 2 === 0 ? sides : [...sides].reverse();
      for (const mode of modes) {
        for (const side of order) {
          const key = `${side.label}\u0000${mode}`;
          const list = samples.get(key) ?? [];
          for (const q of queries.slice(opts.warmup)) {
            const t0 = performance.now();
            await side.search.search(ctx, { query: q, mode, limit: LIMIT });
            list.push(performance.now() - t0);
          }
          samples.set(key, list);
        }
      }
      console.log(`round ${round + 1} of ${opts.rounds} done`);
    }
    // Same results on both sides (the first queries, each mode).
    const differing: Record<string, number> = {};
    for (const mode of modes) {
      differing[mode] = 0;
      for (const q of queries.slice(opts.warmup, opts.warmup + 20)) {
        const [b, a] = await Promise.all(
          sides.map((s) => s.search.search(ctx, { query: q, mode, limit: LIMIT })),
        );
        const key = (hits: typeof a) => (hits ?? []).map((h) => `${h.documentId}:${h.chunkIndex}`);
        if (JSON.stringify(key(a)) !== JSON.stringify(key(b))) differing[mode]++;
      }
    }
    console.log(
      `\nof 20 queries per mode, those whose top ${LIMIT} differ between the sides: ` +
        `${JSON.stringify(differing)}\n`,
    );
    const rows: Array<Array<string | number>> = [];
    for (const mode of modes) {
      const b = summarize(samples.get(`before\u0000${mode}`) ?? []);
      const a = summarize(samples.get(`after\u0000${mode}`) ?? []);
      rows.push([
        mode,
        b.n,
        ms(b.p50),
        ms(b.p99),
        ms(a.p50),
        ms(a.p99),
        ratio(a.p50, b.p50),
        ratio(a.p99, b.p99),
      ]);
    }
    table(
      ["mode", "n", "before p50", "before p99", "after p50", "after p99", "p50 ratio", "p99 ratio"],
      rows,
    );
  } finally {
    for (const s of sides) await s.close();
    await store.dispose();
    lance.remove();
    blobs.remove();
  }
  printFooter();
}

await main();
