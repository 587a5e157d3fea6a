import { randomUUID } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import * as lancedb from "@lancedb/lancedb";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ANN_INDEX_TYPES,
  type ChunkRow,
  createInProcessTenantLock,
  createLanceVectorIndex,
  type LanceVectorIndex,
  type LanceVectorIndexOptions,
  type TenantLock,
  VectorInputError,
} from "../../src/platform/vectors/index.js";
import {
  catalogRow,
  chunk,
  chunks,
  cosine,
  DIMS,
  deferred,
  lockCases,
  near,
  rng,
  tempDirs,
  unit,
} from "../fixtures/vectors.js";

const logger = pino({ level: "silent" });
const dirs = tempDirs();
const tempDir = () => dirs.make();
afterAll(() => dirs.removeAll());

function openIndex(
  opts: Partial<LanceVectorIndexOptions> & { lock: TenantLock },
): LanceVectorIndex {
  return createLanceVectorIndex({ uri: tempDir(), dimensions: DIMS, logger, ...opts });
}

/** The index's top `k` for `q` are the exact top `k` of `rows` by cosine, with their scores. */
async function expectExactTop(
  index: LanceVectorIndex,
  tenant: string,
  rows: ChunkRow[],
  q: number[],
  k: number,
) {
  const exact = rows
    .map((r) => ({ id: r.id, score: cosine(q, r.vector) }))
    .sort((x, y) => y.score - x.score)
    .slice(0, k);
  const hits = await index.searchVector(tenant, q, k);
  expect(hits.map((h) => h.id)).toEqual(exact.map((e) => e.id));
  hits.forEach((h, i) => {
    expect(h.score).toBeCloseTo(exact[i]?.score as number, 3);
  });
}

// ---- the vector index -----------------------------------------------------------------------

describe.each(lockCases)("VectorIndex (LanceDB), writes under the $name lock", (lc) => {
  describe.skipIf(lc.skip)(lc.name, () => {
    let locks: TenantLock[];
    let dispose: () => Promise<void>;
    let index: LanceVectorIndex;
    let uri: string;
    beforeAll(async () => {
      ({ locks, dispose } = await lc.open(2));
      uri = tempDir();
      index = createLanceVectorIndex({
        uri,
        dimensions: DIMS,
        lock: locks[0] as TenantLock,
        logger,
        annThreshold: 256,
      });
    });
    afterAll(async () => {
      await index?.close();
      await dispose?.();
    });

    it("vector search returns the nearest chunks first, scored by cosine similarity", async () => {
      const tenant = randomUUID();
      const doc = randomUUID();
      const rows = chunks(doc, 1, 8, { title: "Menu", docType: "faq", metadata: { lang: "en" } });
      await index.upsertChunks(tenant, rows);
      const query = near(5, 0.3, rng(99));
      const hits = await index.searchVector(tenant, query, 4);
      expect(hits).toHaveLength(4);
      expect(hits[0]).toMatchObject({
        id: `${doc}:1:5`,
        documentId: doc,
        version: 1,
        chunkIndex: 5,
        text: rows[5]?.text,
        title: "Menu",
        docType: "faq",
        metadata: { lang: "en" },
      });
      const exact = rows
        .map((r) => ({ id: r.id, score: cosine(query, r.vector) }))
        .sort((x, y) => y.score - x.score)
        .slice(0, 4);
      expect(hits.map((h) => h.id)).toEqual(exact.map((e) => e.id));
      hits.forEach((h, i) => {
        expect(h.score).toBeCloseTo(exact[i]?.score as number, 4);
      });
      for (let i = 1; i < hits.length; i++) {
        expect(hits[i]?.score).toBeLessThanOrEqual(hits[i - 1]?.score as number);
      }
    });

    it("text search finds a rare keyword as soon as the write returns", async () => {
      const tenant = randomUUID();
      const first = randomUUID();
      const second = randomUUID();
      await index.upsertChunks(tenant, chunks(first, 1, 5));
      // A later write, after the full-text index exists: its rows are not in the index yet.
      await index.upsertChunks(tenant, [
        chunk(second, 1, 0),
        chunk(second, 1, 1, { text: "Our xylophonist plays on Sundays" }),
      ]);
      const hits = await index.searchText(tenant, "XYLOPHONIST?", 5);
      expect(hits.map((h) => h.id)).toEqual([`${second}:1:1`]);
      expect(hits[0]?.score).toBeGreaterThan(0);

      // Rewriting the chunk replaces its text for search too.
      await index.upsertChunks(tenant, [
        chunk(second, 1, 1, { text: "Our harpsichordist plays on Sundays" }),
      ]);
      expect(await index.searchText(tenant, "xylophonist", 5)).toEqual([]);
      const again = await index.searchText(tenant, "harpsichordist", 5);
      expect(again.map((h) => h.id)).toEqual([`${second}:1:1`]);
    });

    it("text search finds every row written after the index, even ones repeating a query term", async () => {
      // The index is created over the first write's one chunk; every later row starts outside
      // it. LanceDB 0.29 scores such rows wrongly when they repeat a query term and drops them.
      const tenant = randomUUID();
      const faq = randomUUID();
      const q = "Which days are you open?";
      await index.upsertChunks(tenant, [chunk(faq, 1, 0, { text: `${q}\nEvery day.` })]);
      const later = [randomUUID(), randomUUID()];
      await index.upsertChunks(tenant, [chunk(later[0] as string, 1, 0, { text: "open open" })]);
      await index.upsertChunks(tenant, [chunk(later[1] as string, 1, 0, { text: "open open" })]);
      // An FAQ updated: each new version is a new row; the old ones stay until deleted.
      const versions = [2, 3, 4];
      for (const v of versions) {
        const text = `${q}\nOpen on day ${v} of the week only.`;
        await index.upsertChunks(tenant, [chunk(faq, v, 0, { text })]);
      }
      const expected = [
        `${faq}:1:0`,
        ...later.map((d) => `${d}:1:0`),
        ...versions.map((v) => `${faq}:${v}:0`),
      ].sort();
      // Concurrent searches: each one folds the new rows in or waits for the one that does.
      const queries = ["open", "open day week", "Which days are you open?", "OPEN"];
      const found = await Promise.all(queries.map((query) => index.searchText(tenant, query, 20)));
      for (const [i, hits] of found.entries()) {
        expect(hits.map((h) => h.id).sort(), queries[i]).toEqual(expected);
      }
      // Filtered to one document, its rows still all answer.
      const mine = await index.searchText(tenant, "open day week", 20, { documentIds: [faq] });
      expect(mine).toHaveLength(1 + versions.length);
    });

    it("text search ranks by BM25 and copes with any query text", async () => {
      const tenant = randomUUID();
      const doc = randomUUID();
      await index.upsertChunks(tenant, [
        chunk(doc, 1, 0, { text: "pasta pasta pasta with tomato" }),
        chunk(doc, 1, 1, { text: "pasta once, then a long text about the weather and the sea" }),
        chunk(doc, 1, 2, { text: "nothing relevant" }),
      ]);
      // Written after the index was created, so search covers indexed and unindexed rows.
      await index.upsertChunks(tenant, [chunk(doc, 1, 3, { text: "the and of" })]);
      const hits = await index.searchText(tenant, "pasta", 10);
      expect(hits.map((h) => h.chunkIndex)).toEqual([0, 1]);
      expect(hits[0]?.score).toBeGreaterThan(hits[1]?.score as number);
      // Queries with nothing to match, or only very common words, answer rather than fail.
      for (const q of ["", "   ", "?!*(", "x".repeat(60)]) {
        expect(await index.searchText(tenant, q, 5)).toEqual([]);
      }
      expect((await index.searchText(tenant, "the", 5)).map((h) => h.chunkIndex)).toContain(3);
      expect(await index.searchText(tenant, `it's "quoted" (AND) OR pasta:*`, 5)).not.toEqual([]);
    });

    it("filters by document, type and metadata, and still fills the limit when matches rank low", async () => {
      const tenant = randomUUID();
      const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
      // A and B are close to the query and say "harbour" often; C is far and says it once. A
      // search that filtered after taking the top 10 would return no C rows at all.
      const close = (doc: string, docType: string, lang: string) =>
        Array.from({ length: 20 }, (_, i) =>
          chunk(doc, 1, i, {
            docType,
            metadata: { lang, shelf: "top" },
            vector: near(0, 0.2, rng(i + 1)),
            text: "harbour harbour harbour boats",
          }),
        );
      await index.upsertChunks(tenant, [
        ...close(a, "faq", "en"),
        ...close(b, "pdf", "de"),
        ...Array.from({ length: 20 }, (_, i) =>
          chunk(c, 1, i, {
            docType: "pdf",
            metadata: { lang: "en", shelf: i < 15 ? "top" : "bottom" },
            vector: near(1, 0.2, rng(i + 100)),
            text: `harbour mentioned once among many other words number ${i}`,
          }),
        ),
      ]);
      const q = near(0, 0, rng(1));
      const both = async (filters: Parameters<LanceVectorIndex["searchVector"]>[3], limit = 10) => [
        await index.searchVector(tenant, q, limit, filters),
        await index.searchText(tenant, "harbour", limit, filters),
      ];

      for (const hits of await both({ docTypes: ["pdf"], metadata: { lang: "en" } })) {
        expect(hits).toHaveLength(10);
        expect(new Set(hits.map((h) => h.documentId))).toEqual(new Set([c]));
      }
      for (const hits of await both({ documentIds: [c] })) {
        expect(hits).toHaveLength(10);
        expect(hits.every((h) => h.documentId === c)).toBe(true);
      }
      for (const hits of await both({ documentIds: [a, c], docTypes: ["pdf"] }, 50)) {
        expect(hits).toHaveLength(20);
        expect(hits.every((h) => h.documentId === c)).toBe(true);
      }
      // Every metadata pair must match.
      for (const hits of await both({ metadata: { lang: "en", shelf: "bottom" } }, 50)) {
        expect(hits.map((h) => h.chunkIndex).sort((x, y) => x - y)).toEqual([15, 16, 17, 18, 19]);
      }
      for (const hits of await both({ docTypes: ["faq"] }, 50)) {
        expect(hits).toHaveLength(20);
        expect(hits.every((h) => h.documentId === a && h.docType === "faq")).toBe(true);
      }
      // Empty lists match nothing; an empty metadata object restricts nothing.
      for (const hits of await both({ documentIds: [] })) expect(hits).toEqual([]);
      for (const hits of await both({ docTypes: [] })) expect(hits).toEqual([]);
      for (const hits of await both({ metadata: {} })) expect(hits).toHaveLength(10);
    });

    it("treats quotes and backslashes in filter values as data, never as SQL", async () => {
      const tenant = randomUUID();
      const doc = randomUUID();
      const odd = "it's a \\'type\\' \"x\"";
      await index.upsertChunks(tenant, [
        chunk(doc, 1, 0, { docType: odd, metadata: { "k'ey": "v' OR '1'='1", plain: "1" } }),
        chunk(doc, 1, 1, { docType: "pdf", metadata: { plain: "1" } }),
      ]);
      const q = near(0);
      for (const docType of ["x' OR '1'='1", "a\\' OR 1=1 --", "pdf') OR ('1'='1"]) {
        expect(await index.searchVector(tenant, q, 10, { docTypes: [docType] })).toEqual([]);
        expect(await index.searchText(tenant, "chunk", 10, { docTypes: [docType] })).toEqual([]);
      }
      const byType = await index.searchVector(tenant, q, 10, { docTypes: [odd] });
      expect(byType.map((h) => h.chunkIndex)).toEqual([0]);
      expect(byType[0]?.docType).toBe(odd);
      const byMeta = await index.searchText(tenant, "chunk", 10, {
        metadata: { "k'ey": "v' OR '1'='1" },
      });
      expect(byMeta.map((h) => h.chunkIndex)).toEqual([0]);
      expect(byMeta[0]?.metadata).toEqual({ "k'ey": "v' OR '1'='1", plain: "1" });
      expect(
        await index.searchVector(tenant, q, 10, { metadata: { "k'ey": "v' OR 'x'='x" } }),
      ).toEqual([]);
    });

    it("re-writing the same version replaces rows instead of duplicating them", async () => {
      const tenant = randomUUID();
      const doc = randomUUID();
      await index.upsertChunks(tenant, chunks(doc, 1, 5));
      await index.upsertChunks(tenant, chunks(doc, 1, 5, { text: "second attempt" }));
      await index.upsertChunks(tenant, chunks(doc, 1, 5, { text: "second attempt" }));
      expect(await index.count(tenant)).toBe(5);
      const hits = await index.searchVector(tenant, near(0), 20);
      expect(hits.map((h) => h.id).sort()).toEqual(
        chunks(doc, 1, 5)
          .map((r) => r.id)
          .sort(),
      );
      expect(hits.every((h) => h.text === "second attempt")).toBe(true);
    });

    it("deleteVersions removes older versions or exactly one; deleteDocument removes it all", async () => {
      const tenant = randomUUID();
      const [doc, other] = [randomUUID(), randomUUID()];
      await index.upsertChunks(tenant, chunks(doc, 1, 3, { text: "old version text" }));
      await index.upsertChunks(tenant, chunks(doc, 2, 2, { text: "new version text" }));
      await index.upsertChunks(tenant, chunks(doc, 3, 1, { text: "newest version text" }));
      await index.upsertChunks(tenant, chunks(other, 7, 4, { text: "other document text" }));
      await index.upsertCatalog(tenant, catalogRow(doc, 2));
      await index.upsertCatalog(tenant, catalogRow(other, 7));
      const versionsOf = async (d: string) =>
        (await index.searchText(tenant, "version text", 20, { documentIds: [d] }))
          .map((h) => h.version)
          .sort();

      // Version 2 went live: version 1 goes, version 3 (still being written) stays.
      await index.deleteVersions(tenant, doc, { olderThan: 2 });
      expect(await versionsOf(doc)).toEqual([2, 2, 3]);
      expect(await index.searchVector(tenant, near(0), 20, { documentIds: [doc] })).toHaveLength(3);
      // Clean-up is idempotent, and leaves the catalog alone.
      await index.deleteVersions(tenant, doc, { olderThan: 2 });
      expect(await index.count(tenant)).toBe(7);
      expect((await index.readCatalog(tenant)).map((r) => r.documentId).sort()).toEqual(
        [doc, other].sort(),
      );
      // Exactly one version.
      await index.deleteVersions(tenant, doc, { version: 3 });
      expect(await versionsOf(doc)).toEqual([2, 2]);

      await index.deleteDocument(tenant, doc);
      expect(await index.count(tenant)).toBe(4);
      expect(await index.searchText(tenant, "version", 20)).toEqual([]);
      const left = await index.searchVector(tenant, near(0), 20);
      expect(left.every((h) => h.documentId === other && h.version === 7)).toBe(true);
      expect((await index.readCatalog(tenant)).map((r) => r.documentId)).toEqual([other]);
      // A document that never existed, in a tenant that never wrote: nothing happens.
      await index.deleteDocument(tenant, randomUUID());
      await index.deleteVersions(randomUUID(), randomUUID(), { olderThan: 1 });
      expect(await index.count(tenant)).toBe(4);
    });

    it("the catalog keeps one row per document, of its newest version", async () => {
      const tenant = randomUUID();
      const doc = randomUUID();
      expect(await index.readCatalog(tenant)).toEqual([]);
      await index.upsertCatalog(tenant, catalogRow(doc, 1));
      await index.upsertCatalog(tenant, { ...catalogRow(doc, 2), summary: "v2 summary" });
      expect(await index.readCatalog(tenant)).toEqual([
        { ...catalogRow(doc, 2), summary: "v2 summary" },
      ]);
      // A version finishing late never replaces a newer one.
      await index.upsertCatalog(tenant, { ...catalogRow(doc, 1), summary: "late v1" });
      expect((await index.readCatalog(tenant))[0]?.summary).toBe("v2 summary");
    });

    it("never shows one tenant's rows to another", async () => {
      const [ta, tb] = [randomUUID(), randomUUID()];
      const [da, db] = [randomUUID(), randomUUID()];
      // Same text and vectors in both tenants: only the tenant tells them apart.
      await index.upsertChunks(ta, chunks(da, 1, 6, { text: "shared secretword" }));
      await index.upsertChunks(tb, chunks(db, 1, 3, { text: "shared secretword" }));
      await index.upsertCatalog(ta, catalogRow(da, 1));
      const q = near(1);
      for (const [tenant, own, foreign] of [
        [ta, da, db],
        [tb, db, da],
      ] as const) {
        const hits = [
          ...(await index.searchVector(tenant, q, 50)),
          ...(await index.searchText(tenant, "secretword", 50)),
        ];
        expect(hits.length).toBeGreaterThan(0);
        expect(hits.every((h) => h.documentId === own)).toBe(true);
        expect(await index.searchVector(tenant, q, 50, { documentIds: [foreign] })).toEqual([]);
        expect(
          await index.searchText(tenant, "secretword", 50, { documentIds: [foreign] }),
        ).toEqual([]);
      }
      expect(await index.count(ta)).toBe(6);
      expect(await index.count(tb)).toBe(3);
      expect(await index.readCatalog(tb)).toEqual([]);
      await index.deleteDocument(tb, da);
      expect(await index.count(ta)).toBe(6);
      await index.dropTenant(ta);
      expect(await index.count(tb)).toBe(3);
      expect(await index.searchText(tb, "secretword", 50)).toHaveLength(3);
    });

    it("a tenant that never wrote searches as empty, and reading creates nothing", async () => {
      const tenant = randomUUID();
      expect(await index.searchVector(tenant, near(0), 5)).toEqual([]);
      expect(await index.searchText(tenant, "anything", 5)).toEqual([]);
      expect(await index.count(tenant)).toBe(0);
      expect(await index.optimize(tenant)).toEqual({ annIndexed: false });
      expect(readdirSync(uri)).not.toContain(tenant);
    });

    it("dropTenant removes the tenant's data and directory; it can start again", async () => {
      const tenant = randomUUID();
      const doc = randomUUID();
      await index.upsertChunks(tenant, chunks(doc, 1, 4, { text: "ephemeral" }));
      await index.upsertCatalog(tenant, catalogRow(doc, 1));
      expect(existsSync(path.join(uri, tenant))).toBe(true);
      await index.dropTenant(tenant);
      expect(existsSync(path.join(uri, tenant))).toBe(false);
      expect(await index.count(tenant)).toBe(0);
      expect(await index.searchText(tenant, "ephemeral", 5)).toEqual([]);
      expect(await index.searchVector(tenant, near(0), 5)).toEqual([]);
      expect(await index.readCatalog(tenant)).toEqual([]);
      await index.upsertChunks(tenant, chunks(doc, 2, 2, { text: "reborn" }));
      expect((await index.searchText(tenant, "reborn", 5)).map((h) => h.version)).toEqual([2, 2]);
      expect(await index.count(tenant)).toBe(2);
      await index.dropTenant(randomUUID());
    });

    it("optimize builds the ANN index past the threshold; search stays right and fresh", async () => {
      const tenant = randomUUID();
      const doc = randomUUID();
      const rand = rng(7);
      // Clustered, like real embeddings: 16 topics, 300 rows.
      const centers = Array.from({ length: 16 }, (_, k) => near(k * 2, 0.5, rng(k + 50)));
      const rows = Array.from({ length: 300 }, (_, i) =>
        chunk(doc, 1, i, {
          vector: unit((centers[i % 16] as number[]).map((x) => x + 0.25 * (rand() - 0.5))),
          docType: i % 3 === 0 ? "pdf" : "txt",
          text: `topic ${i % 16} passage ${i}`,
        }),
      );
      await index.upsertChunks(tenant, rows.slice(0, 200));
      expect(await index.optimize(tenant)).toEqual({ annIndexed: false });
      await index.upsertChunks(tenant, rows.slice(200));
      expect(await index.optimize(tenant)).toEqual({ annIndexed: true });

      for (const [qi, center] of centers.slice(0, 6).entries()) {
        const q = unit(center.map((x) => x + 0.1 * (rng(qi + 500)() - 0.5)));
        await expectExactTop(index, tenant, rows, q, 5);
      }
      // Filtered ANN search still fills the limit.
      const pdf = await index.searchVector(tenant, near(0), 30, { docTypes: ["pdf"] });
      expect(pdf).toHaveLength(30);
      expect(pdf.every((h) => h.docType === "pdf")).toBe(true);
      expect((await index.searchText(tenant, "passage 17", 3))[0]?.chunkIndex).toBe(17);

      // Rows written after the index are found by both searches right away.
      const late = chunk(doc, 1, 300, { vector: near(31, 0), text: "latecomer passage" });
      await index.upsertChunks(tenant, [late]);
      expect((await index.searchVector(tenant, near(31, 0), 1))[0]?.id).toBe(late.id);
      expect((await index.searchText(tenant, "latecomer", 1))[0]?.id).toBe(late.id);
      expect(await index.optimize(tenant)).toEqual({ annIndexed: true });
      expect((await index.searchText(tenant, "latecomer", 1))[0]?.id).toBe(late.id);
      expect(await index.count(tenant)).toBe(301);
    });

    it("another instance on the same storage sees writes at once, even with the tenant open", async () => {
      const other = createLanceVectorIndex({
        uri,
        dimensions: DIMS,
        lock: locks[1] as TenantLock,
        logger,
      });
      try {
        const tenant = randomUUID();
        const doc = randomUUID();
        await index.upsertChunks(tenant, chunks(doc, 1, 2, { text: "first batch" }));
        expect(await other.count(tenant)).toBe(2); // `other` now has the tenant open
        await index.upsertChunks(tenant, [chunk(doc, 1, 2, { text: "second batch" })]);
        expect(await other.count(tenant)).toBe(3);
        expect((await other.searchText(tenant, "second", 5)).map((h) => h.chunkIndex)).toEqual([2]);
        await index.dropTenant(tenant);
        expect(await other.searchText(tenant, "batch", 5)).toEqual([]);
        expect(await other.count(tenant)).toBe(0);
      } finally {
        await other.close();
      }
    });

    it("concurrent writers of one tenant in two instances lose no rows", async () => {
      const second = createLanceVectorIndex({
        uri,
        dimensions: DIMS,
        lock: locks[1] as TenantLock,
        logger,
      });
      try {
        const tenant = randomUUID();
        const docs = Array.from({ length: 12 }, () => randomUUID());
        // The very first writes race too: table creation and its full-text index.
        await Promise.all(
          docs.map((doc, i) =>
            (i % 2 === 0 ? index : second).upsertChunks(tenant, chunks(doc, 1, 5)),
          ),
        );
        expect(await index.count(tenant)).toBe(60);
        expect(await second.count(tenant)).toBe(60);
        const hits = await second.searchText(tenant, "common", 100);
        expect(new Set(hits.map((h) => h.documentId))).toEqual(new Set(docs));
      } finally {
        await second.close();
      }
    });
  });
});

// ---- group commit (lock-independent) ----------------------------------------------------------

describe("VectorIndex (LanceDB): group commit of one tenant's concurrent writes", () => {
  /** The latest version of a tenant's table: it grows by one per commit. */
  async function tableVersion(uri: string, tenant: string, name: "chunks" | "catalog") {
    const conn = await lancedb.connect(path.join(uri, tenant));
    const t = await conn.openTable(name);
    try {
      return await t.version();
    } finally {
      t.close();
      conn.close();
    }
  }

  function groupIndex(opts: Partial<LanceVectorIndexOptions> = {}) {
    const uri = tempDir();
    const index = createLanceVectorIndex({
      uri,
      dimensions: DIMS,
      lock: createInProcessTenantLock(),
      logger,
      compactFragments: 0,
      ftsRefreshRows: 0,
      ...opts,
    });
    return { uri, index };
  }

  it("writes that arrive together commit once per table, and every row is there", async () => {
    const { uri, index } = groupIndex();
    try {
      const tenant = randomUUID();
      await index.upsertChunks(tenant, chunks(randomUUID(), 1, 2));
      await index.upsertCatalog(tenant, catalogRow(randomUUID(), 1));
      const before = {
        chunks: await tableVersion(uri, tenant, "chunks"),
        catalog: await tableVersion(uri, tenant, "catalog"),
      };
      const docs = Array.from({ length: 10 }, () => randomUUID());
      await Promise.all(
        docs.flatMap((doc) => [
          index.upsertChunks(tenant, chunks(doc, 1, 3)),
          index.upsertCatalog(tenant, catalogRow(doc, 1)),
        ]),
      );
      // 20 writes, 2 commits: one merge per table (one by one, it was 20).
      expect((await tableVersion(uri, tenant, "chunks")) - before.chunks).toBe(1);
      expect((await tableVersion(uri, tenant, "catalog")) - before.catalog).toBe(1);
      expect(await index.count(tenant)).toBe(2 + 30);
      const catalog = await index.readCatalog(tenant);
      expect(catalog.filter((r) => (docs as string[]).includes(r.documentId))).toHaveLength(10);
      const hits = await index.searchText(tenant, "common", 100);
      expect(docs.every((d) => hits.some((h) => h.documentId === d))).toBe(true);
    } finally {
      await index.close();
    }
  });

  it("a group keeps the newest catalog version and applies deletes after the merges", async () => {
    const { index } = groupIndex();
    try {
      const tenant = randomUUID();
      const [doc, gone] = [randomUUID(), randomUUID()];
      await index.upsertChunks(tenant, chunks(doc, 1, 2));
      await Promise.all([
        index.upsertCatalog(tenant, catalogRow(doc, 3)),
        index.upsertCatalog(tenant, catalogRow(doc, 2)),
        index.upsertChunks(tenant, chunks(doc, 2, 2)),
        index.deleteVersions(tenant, doc, { olderThan: 2 }),
        index.upsertChunks(tenant, chunks(gone, 1, 2)),
        index.deleteDocument(tenant, gone),
      ]);
      expect((await index.readCatalog(tenant)).map((r) => [r.documentId, r.version])).toEqual([
        [doc, 3],
      ]);
      const hits = await index.searchText(tenant, "common", 100);
      expect(hits.map((h) => `${h.documentId}:${h.version}`).sort()).toEqual([
        `${doc}:2`,
        `${doc}:2`,
      ]);
    } finally {
      await index.close();
    }
  });

  it("a write that fails in a group fails alone; the others are written", async () => {
    const bad = randomUUID();
    const { uri, index } = groupIndex({
      beforeCommit(_table, documentIds) {
        if (documentIds.includes(bad)) throw new Error("storage refused the write");
      },
    });
    try {
      const tenant = randomUUID();
      await index.upsertChunks(tenant, chunks(randomUUID(), 1, 1));
      const before = await tableVersion(uri, tenant, "chunks");
      const good = Array.from({ length: 5 }, () => randomUUID());
      const results = await Promise.allSettled(
        [...good.slice(0, 2), bad, ...good.slice(2)].map((doc) =>
          index.upsertChunks(tenant, chunks(doc, 1, 2)),
        ),
      );
      expect(results.map((r) => r.status)).toEqual([
        "fulfilled",
        "fulfilled",
        "rejected",
        "fulfilled",
        "fulfilled",
        "fulfilled",
      ]);
      expect(String((results[2] as PromiseRejectedResult).reason)).toMatch(/storage refused/);
      // The combined commit failed before it wrote; each good member then committed alone.
      expect((await tableVersion(uri, tenant, "chunks")) - before).toBe(5);
      expect(await index.count(tenant)).toBe(1 + 10);
      const hits = await index.searchText(tenant, "common", 100);
      expect(hits.some((h) => h.documentId === bad)).toBe(false);
    } finally {
      await index.close();
    }
  });

  it("a group that cannot take the tenant's lock fails its writes, and the next writes go through", async () => {
    // A lock whose first acquisition fails, as a server-mode advisory lock does when its
    // connection drops: the group waiting for it never gets a turn.
    const inner = createInProcessTenantLock();
    let failNext = true;
    const lock: TenantLock = {
      withLock(tenantId, fn) {
        if (failNext) {
          failNext = false;
          return Promise.reject(new Error("connection terminated"));
        }
        return inner.withLock(tenantId, fn);
      },
      withLongReader: (tenantId, fn) => inner.withLongReader(tenantId, fn),
    };
    const { index } = groupIndex({ lock });
    try {
      const tenant = randomUUID();
      const first = randomUUID();
      await expect(index.upsertChunks(tenant, chunks(first, 1, 2))).rejects.toThrow(
        /connection terminated/,
      );
      // Before the fix these joined the failed group and never settled.
      const docs = [randomUUID(), randomUUID(), first];
      const settled = await Promise.race([
        Promise.allSettled(docs.map((doc) => index.upsertChunks(tenant, chunks(doc, 1, 2)))),
        new Promise<"hung">((r) => setTimeout(() => r("hung"), 10_000).unref()),
      ]);
      expect(settled).not.toBe("hung");
      expect((settled as PromiseSettledResult<void>[]).map((r) => r.status)).toEqual([
        "fulfilled",
        "fulfilled",
        "fulfilled",
      ]);
      expect(await index.count(tenant)).toBe(6);
    } finally {
      await index.close();
    }
  });
});

// ---- cache and input checks (lock-independent) ----------------------------------------------

describe("VectorIndex (LanceDB): open-table cache", () => {
  it("keeps at most cacheSize tenants open and reopens evicted ones transparently", async () => {
    const index = openIndex({ lock: createInProcessTenantLock(), cacheSize: 2 });
    try {
      const tenants = [randomUUID(), randomUUID(), randomUUID()];
      for (const [i, t] of tenants.entries()) {
        await index.upsertChunks(t, chunks(randomUUID(), 1, i + 1, { text: `tenant${i}` }));
        expect(index.stats().openTenants).toBeLessThanOrEqual(2);
      }
      for (const round of [0, 1]) {
        for (const [i, t] of tenants.entries()) {
          const hits = await index.searchText(t, `tenant${i}`, 10);
          expect(hits, `round ${round}, tenant ${i}`).toHaveLength(i + 1);
          expect(index.stats().openTenants).toBeLessThanOrEqual(2);
          expect(index.stats().openTables).toBeLessThanOrEqual(2);
        }
      }
    } finally {
      await index.close();
    }
  });

  it("evicting a tenant does not break searches still running on it", async () => {
    const index = openIndex({ lock: createInProcessTenantLock(), cacheSize: 1 });
    try {
      const tenants = [randomUUID(), randomUUID(), randomUUID()];
      for (const [i, t] of tenants.entries()) {
        await index.upsertChunks(t, chunks(randomUUID(), 1, i + 2, { text: `busy${i}` }));
      }
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, k) => {
          const i = k % 3;
          return index.searchText(tenants[i] as string, `busy${i}`, 10).then((h) => h.length - i);
        }),
      );
      expect(results.every((n) => n === 2)).toBe(true);
      expect(index.stats().openTenants).toBeLessThanOrEqual(1);
    } finally {
      await index.close();
    }
  });

  it("closes tenants idle past idleMs", async () => {
    let clock = 0;
    const index = openIndex({
      lock: createInProcessTenantLock(),
      idleMs: 1_000,
      now: () => clock,
    });
    try {
      const [a, b] = [randomUUID(), randomUUID()];
      await index.upsertChunks(a, chunks(randomUUID(), 1, 1));
      await index.upsertChunks(b, chunks(randomUUID(), 1, 1));
      expect(index.stats().openTenants).toBe(2);
      clock += 999;
      await index.count(b);
      clock += 2;
      await index.count(b); // a: idle 1001 ms, b: just used
      expect(index.stats().openTenants).toBe(1);
      expect(await index.count(a)).toBe(1);
    } finally {
      await index.close();
    }
  });

  it("close closes every open tenant; a closed index refuses work", async () => {
    const index = openIndex({ lock: createInProcessTenantLock() });
    const tenant = randomUUID();
    await index.upsertChunks(tenant, chunks(randomUUID(), 1, 1));
    await index.close();
    expect(index.stats()).toEqual({ openTenants: 0, openTables: 0 });
    await expect(index.count(tenant)).rejects.toThrow(/closed/);
    await expect(index.close()).resolves.toBeUndefined();
  });
});

/** What a tenant's table looks like on disk, read with LanceDB itself. */
/** LanceDB's name of the type of the tenant's ANN index. */
async function annIndexType(uri: string, tenant: string): Promise<string | undefined> {
  const conn = await lancedb.connect(path.join(uri, tenant));
  try {
    const table = await conn.openTable("chunks");
    const type = (await table.listIndices()).find((i) => i.columns.includes("vector"))?.indexType;
    table.close();
    return type;
  } finally {
    conn.close();
  }
}

async function tableInfo(uri: string, tenant: string, name = "chunks") {
  const conn = await lancedb.connect(path.join(uri, tenant));
  try {
    const table = await conn.openTable(name);
    const indices = await table.listIndices();
    const stat = async (column: string) => {
      const idx = indices.find((i) => i.columns.includes(column));
      return idx ? await table.indexStats(idx.name) : undefined;
    };
    const { fragmentStats } = await table.stats();
    return {
      smallFragments: fragmentStats.numSmallFragments,
      unindexedText: (await stat("text"))?.numUnindexedRows,
      annPieces: (await stat("vector"))?.numIndices,
      versions: (await table.listVersions()).length,
    };
  } finally {
    conn.close();
  }
}

describe("VectorIndex (LanceDB): upkeep on the write path", () => {
  function upkeepIndex(opts: Partial<LanceVectorIndexOptions>) {
    const uri = tempDir();
    const requests: Array<{ tenantId: string; delayMs: number }> = [];
    const index = createLanceVectorIndex({
      uri,
      dimensions: DIMS,
      lock: createInProcessTenantLock(),
      logger,
      compactFragments: 0,
      ftsRefreshRows: 0,
      async requestOptimize(tenantId, { delayMs }) {
        requests.push({ tenantId, delayMs });
      },
      ...opts,
    });
    return { uri, index, requests };
  }

  it("a write that leaves ftsRefreshRows rows unindexed folds them into the index", async () => {
    const { uri, index } = upkeepIndex({ ftsRefreshRows: 10 });
    const tenant = randomUUID();
    try {
      const docs = [randomUUID(), randomUUID(), randomUUID()];
      await index.upsertChunks(tenant, chunks(docs[0] as string, 1, 6, { text: "alpha" }));
      // The first write's rows went into the index it created.
      expect((await tableInfo(uri, tenant)).unindexedText).toBe(0);
      await index.upsertChunks(tenant, chunks(docs[1] as string, 1, 6, { text: "beta" }));
      expect((await tableInfo(uri, tenant)).unindexedText).toBe(6);
      await index.upsertChunks(tenant, chunks(docs[2] as string, 1, 6, { text: "gamma" }));
      expect((await tableInfo(uri, tenant)).unindexedText).toBe(0);
      for (const [i, word] of ["alpha", "beta", "gamma"].entries()) {
        const hits = await index.searchText(tenant, word, 10);
        expect(hits.map((h) => h.documentId)).toEqual(Array(6).fill(docs[i]));
      }
    } finally {
      await index.close();
    }
  });

  it("compacts a table once writes leave compactFragments small fragments, losing nothing", async () => {
    const compacting = upkeepIndex({ compactFragments: 5 });
    const never = upkeepIndex({ compactFragments: 0 });
    const tenant = randomUUID();
    const docs = Array.from({ length: 12 }, () => randomUUID());
    try {
      for (const [i, doc] of docs.entries()) {
        for (const { index } of [compacting, never]) {
          await index.upsertChunks(tenant, chunks(doc, 1, 2, { text: `word${i} shared` }));
          await index.upsertCatalog(tenant, catalogRow(doc, 1));
        }
        for (const name of ["chunks", "catalog"]) {
          expect((await tableInfo(compacting.uri, tenant, name)).smallFragments).toBeLessThan(5);
        }
      }
      // Without compaction every write is a fragment of its own.
      expect((await tableInfo(never.uri, tenant)).smallFragments).toBe(12);
      // Compaction also folded the rows into the full-text index.
      expect((await tableInfo(compacting.uri, tenant)).unindexedText).toBeLessThan(10);
      // A delete commits too, and counts.
      for (const doc of docs.slice(0, 6)) await compacting.index.deleteDocument(tenant, doc);
      expect((await tableInfo(compacting.uri, tenant)).smallFragments).toBeLessThan(5);
      expect(await compacting.index.count(tenant)).toBe(12);
      for (const [i, doc] of docs.entries()) {
        const hits = await compacting.index.searchText(tenant, `word${i}`, 5);
        expect(hits.map((h) => h.documentId)).toEqual(i < 6 ? [] : [doc, doc]);
      }
      const catalog = await compacting.index.readCatalog(tenant);
      expect(catalog.map((r) => r.documentId).sort()).toEqual(docs.slice(6).sort());
    } finally {
      await compacting.index.close();
      await never.index.close();
    }
  });

  it("asks for an ANN build when a write crosses the threshold, and for one clean-up after compacting", async () => {
    const { index, requests } = upkeepIndex({ annThreshold: 256, compactFragments: 3 });
    const tenant = randomUUID();
    const doc = randomUUID();
    const rows = Array.from({ length: 300 }, (_, i) =>
      chunk(doc, 1, i, { vector: near(i % DIMS) }),
    );
    try {
      await index.upsertChunks(tenant, rows.slice(0, 250));
      expect(requests).toEqual([]);
      await index.upsertChunks(tenant, rows.slice(250, 260));
      expect(requests).toEqual([{ tenantId: tenant, delayMs: 0 }]);
      // Re-writing rows that exist crosses nothing.
      await index.upsertChunks(tenant, rows.slice(250, 260));
      expect(requests).toHaveLength(1);
      // Fragments 4 and up: compaction, after which the replaced versions must go in time.
      for (let i = 260; i < 300; i += 10) await index.upsertChunks(tenant, rows.slice(i, i + 10));
      const later = requests.filter((r) => r.delayMs > 0);
      expect(later).toHaveLength(1);
      expect(later[0]?.tenantId).toBe(tenant);
      // Replaced versions are kept a while for readers; the clean-up comes after that.
      expect(later[0]?.delayMs).toBeGreaterThan(20_000);
      expect(await index.count(tenant)).toBe(300);
    } finally {
      await index.close();
    }
  });

  it("asks again at the next compaction when asking for an ANN build failed", async () => {
    const calls: number[] = [];
    let failNext = true;
    const { index } = upkeepIndex({
      annThreshold: 256,
      compactFragments: 3,
      async requestOptimize(_tenantId, { delayMs }) {
        calls.push(delayMs);
        if (delayMs === 0 && failNext) {
          failNext = false;
          throw new Error("queue unavailable");
        }
      },
    });
    const tenant = randomUUID();
    const doc = randomUUID();
    const rows = Array.from({ length: 300 }, (_, i) => chunk(doc, 1, i));
    try {
      await index.upsertChunks(tenant, rows.slice(0, 260));
      expect(calls).toEqual([0]);
      await new Promise((r) => setImmediate(r));
      // Three more writes make the table due for compaction, which asks for the build again.
      for (let i = 260; i < 290; i += 10) await index.upsertChunks(tenant, rows.slice(i, i + 10));
      expect(calls.filter((d) => d === 0)).toEqual([0, 0]);
    } finally {
      await index.close();
    }
  });

  it("compaction removes replaced versions, but keeps them while an ANN build may read them", async () => {
    const lock = createInProcessTenantLock();
    const { uri, index } = upkeepIndex({ lock, compactFragments: 4, keepVersionsMs: 0 });
    const tenant = randomUUID();
    const write = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        await index.upsertChunks(tenant, [chunk(randomUUID(), 1, 0, { text: `row${i}` })]);
      }
    };
    try {
      await write(0, 12);
      // Three compactions; each removed what came before it.
      expect((await tableInfo(uri, tenant)).versions).toBeLessThan(6);
      const release = deferred();
      const entered = deferred();
      const reading = lock.withLongReader(tenant, async () => {
        entered.resolve();
        await release.promise;
      });
      await entered.promise;
      await write(12, 24);
      expect((await tableInfo(uri, tenant)).versions).toBeGreaterThan(24);
      release.resolve();
      await reading;
      await write(24, 28);
      expect((await tableInfo(uri, tenant)).versions).toBeLessThan(6);
      expect(await index.count(tenant)).toBe(28);
      expect((await index.searchText(tenant, "row13", 5)).map((h) => h.text)).toEqual(["row13"]);
    } finally {
      await index.close();
    }
  });

  it.each(ANN_INDEX_TYPES)(
    "an %s index of several partitions finds the exact top results on clustered rows",
    async (type) => {
      const { uri, index } = upkeepIndex({
        annThreshold: 256,
        annIndex: { type, rowsPerPartition: 100, numSubVectors: 4 },
        annSearch: { ef: 100, refineFactor: 10, nprobes: 3 },
      });
      const tenant = randomUUID();
      const doc = randomUUID();
      const rand = rng(11);
      const centers = Array.from({ length: 8 }, (_, k) => near(k * 3, 0.5, rng(k + 90)));
      const rows = Array.from({ length: 300 }, (_, i) =>
        chunk(doc, 1, i, {
          vector: unit((centers[i % 8] as number[]).map((x) => x + 0.25 * (rand() - 0.5))),
        }),
      );
      try {
        await index.upsertChunks(tenant, rows);
        expect(await index.optimize(tenant)).toEqual({ annIndexed: true });
        expect(await annIndexType(uri, tenant)).toBe(
          { ivf_hnsw_sq: "IvfHnswSq", ivf_pq: "IvfPq", ivf_flat: "IvfFlat" }[type],
        );
        for (const [qi, center] of centers.entries()) {
          const q = unit(center.map((x) => x + 0.1 * (rng(qi + 700)() - 0.5)));
          await expectExactTop(index, tenant, rows, q, 5);
        }
      } finally {
        await index.close();
      }
    },
  );

  it("an index of another type than configured keeps serving, and optimize rebuilds it", async () => {
    const { uri, index } = upkeepIndex({
      annThreshold: 256,
      annIndex: { type: "ivf_hnsw_sq", rowsPerPartition: 1_000_000 },
    });
    const tenant = randomUUID();
    const doc = randomUUID();
    const rows = Array.from({ length: 300 }, (_, i) =>
      chunk(doc, 1, i, { vector: near(i % DIMS, 0.3, rng(i)) }),
    );
    const asked: string[] = [];
    const flat = createLanceVectorIndex({
      uri,
      dimensions: DIMS,
      lock: createInProcessTenantLock(),
      logger,
      annThreshold: 256,
      annIndex: { type: "ivf_flat", rowsPerPartition: 150 },
      async requestOptimize(tenantId, { delayMs }) {
        if (delayMs === 0) asked.push(tenantId);
      },
    });
    try {
      await index.upsertChunks(tenant, rows);
      expect(await index.optimize(tenant)).toEqual({ annIndexed: true });
      expect(await annIndexType(uri, tenant)).toBe("IvfHnswSq");
      // The same type is kept as it is; another type is built anew.
      expect(await index.optimize(tenant)).toEqual({ annIndexed: true });
      expect(await annIndexType(uri, tenant)).toBe("IvfHnswSq");
      const target = rows[42] as ChunkRow;
      // The first search of an instance configured for another type asks for the rebuild, once.
      expect((await flat.searchVector(tenant, target.vector, 1))[0]?.id).toBe(target.id);
      await flat.searchVector(tenant, target.vector, 1);
      expect(asked).toEqual([tenant]);
      expect(await flat.optimize(tenant)).toEqual({ annIndexed: true });
      expect(await annIndexType(uri, tenant)).toBe("IvfFlat");
      expect((await flat.searchVector(tenant, target.vector, 1))[0]?.id).toBe(target.id);
    } finally {
      await flat.close();
      await index.close();
    }
  });

  it("a full-text index built under other settings keeps answering, and optimize rebuilds it", async () => {
    const { uri, index } = upkeepIndex({});
    const tenant = randomUUID();
    const doc = randomUUID();
    const rows = [
      chunk(doc, 1, 0, { text: "the lighthouse keeper logs every passing ship", title: "Harbour" }),
      chunk(doc, 1, 1, { text: "tide tables for the northern coast", title: "Harbour" }),
      ...Array.from({ length: 8 }, (_, i) =>
        chunk(randomUUID(), 1, 0, { text: `weather report number ${i}`, title: "Weather" }),
      ),
    ];
    await index.upsertChunks(tenant, rows);
    await index.close();
    // What earlier releases built: one text index under LanceDB's default name.
    const conn = await lancedb.connect(path.join(uri, tenant));
    const raw = await conn.openTable("chunks");
    for (const i of await raw.listIndices()) {
      if (i.columns.includes("text")) await raw.dropIndex(i.name);
    }
    await raw.createIndex("text", {
      config: lancedb.Index.fts({ withPosition: false, stem: true, asciiFolding: true }),
    });
    raw.close();
    conn.close();

    const asked: string[] = [];
    const open = (fullText: LanceVectorIndexOptions["fullText"]) =>
      createLanceVectorIndex({
        uri,
        dimensions: DIMS,
        lock: createInProcessTenantLock(),
        logger,
        fullText,
        async requestOptimize(tenantId, { delayMs }) {
          if (delayMs === 0) asked.push(tenantId);
        },
      });
    const textIndexes = async () => {
      const c = await lancedb.connect(path.join(uri, tenant));
      const t = await c.openTable("chunks");
      const names = (await t.listIndices()).filter((i) => i.indexType === "FTS");
      t.close();
      c.close();
      return names.map((i) => i.columns.join(",")).sort();
    };
    const ids = (hits: Array<{ id: string }>) => hits.map((h) => h.id);

    // The settings of earlier releases: the old index is theirs, nothing to rebuild.
    const same = open({});
    try {
      expect(ids(await same.searchText(tenant, "lighthouse", 5))).toEqual([rows[0]?.id]);
      expect(asked).toEqual([]);
    } finally {
      await same.close();
    }

    // Titles boosted: the old index keeps answering on the text alone, and asks for a rebuild.
    const titled = open({ titleBoost: 2 });
    try {
      expect(ids(await titled.searchText(tenant, "lighthouse", 5))).toEqual([rows[0]?.id]);
      expect(await titled.searchText(tenant, "harbour", 5)).toEqual([]);
      await titled.searchText(tenant, "harbour", 5);
      expect(asked).toEqual([tenant]);
      await titled.optimize(tenant);
      expect(await textIndexes()).toEqual(["text", "title"]);
      // The title now counts: both chunks of the harbour document, and the text still works.
      expect(ids(await titled.searchText(tenant, "harbour", 5)).sort()).toEqual(
        [rows[0]?.id, rows[1]?.id].sort(),
      );
      expect(ids(await titled.searchText(tenant, "tide", 5))).toEqual([rows[1]?.id]);
      // Rows written after the rebuild are found by title too.
      const later = chunk(randomUUID(), 1, 0, { text: "ferry timetable", title: "Harbour" });
      await titled.upsertChunks(tenant, [later]);
      expect(ids(await titled.searchText(tenant, "harbour", 5))).toContain(later.id);
    } finally {
      await titled.close();
    }

    // Back to the defaults: the title index goes at the next optimize, search is on text again.
    asked.length = 0;
    const back = open({});
    try {
      expect(ids(await back.searchText(tenant, "lighthouse", 5))).toEqual([rows[0]?.id]);
      expect(asked).toEqual([tenant]);
      await back.optimize(tenant);
      expect(await textIndexes()).toEqual(["text"]);
      expect(await back.searchText(tenant, "harbour", 5)).toEqual([]);
    } finally {
      await back.close();
    }
  });

  it("optimize builds the ANN index anew once it has more than maxAnnDeltas pieces", async () => {
    const { uri, index, requests } = upkeepIndex({
      annThreshold: 256,
      maxAnnDeltas: 2,
      compactFragments: 2,
    });
    const tenant = randomUUID();
    const doc = randomUUID();
    const rows = Array.from({ length: 400 }, (_, i) =>
      chunk(doc, 1, i, { vector: near(i % DIMS, 0.3, rng(i)) }),
    );
    try {
      await index.upsertChunks(tenant, rows.slice(0, 300));
      expect(await index.optimize(tenant)).toEqual({ annIndexed: true });
      expect((await tableInfo(uri, tenant)).annPieces).toBe(1);
      // Each compaction folds the new rows into the ANN index as one more piece.
      for (let i = 300; i < 400; i += 10) await index.upsertChunks(tenant, rows.slice(i, i + 10));
      expect((await tableInfo(uri, tenant)).annPieces).toBeGreaterThan(2);
      expect(requests.some((r) => r.tenantId === tenant && r.delayMs === 0)).toBe(true);
      expect(await index.optimize(tenant)).toEqual({ annIndexed: true });
      expect((await tableInfo(uri, tenant)).annPieces).toBe(1);
      for (const i of [5, 305, 399]) {
        const target = rows[i] as ChunkRow;
        expect((await index.searchVector(tenant, target.vector, 1))[0]?.id).toBe(target.id);
      }
    } finally {
      await index.close();
    }
  });

  it("vector searches beyond searchConcurrency wait their turn and all answer", async () => {
    const { index } = upkeepIndex({ searchConcurrency: 1 });
    const tenant = randomUUID();
    const doc = randomUUID();
    try {
      await index.upsertChunks(tenant, chunks(doc, 1, DIMS));
      const answers = await Promise.all(
        Array.from({ length: 8 }, (_, axis) => index.searchVector(tenant, near(axis, 0), 1)),
      );
      expect(answers.map((a) => a[0]?.chunkIndex)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    } finally {
      await index.close();
    }
  });
});

describe("VectorIndex (LanceDB): bad input", () => {
  let index: LanceVectorIndex;
  let uri: string;
  const tenant = randomUUID();
  const doc = randomUUID();
  beforeAll(async () => {
    uri = tempDir();
    index = createLanceVectorIndex({
      uri,
      dimensions: DIMS,
      lock: createInProcessTenantLock(),
      logger,
    });
    await index.upsertChunks(tenant, chunks(doc, 1, 2));
  });
  afterAll(() => index?.close());

  it("refuses tenant ids that are not UUIDs, touching no directory", async () => {
    for (const bad of ["../escape", "..", "", "tenant-1", `${randomUUID()}/x`]) {
      await expect(index.upsertChunks(bad, chunks(doc, 1, 1))).rejects.toBeInstanceOf(
        VectorInputError,
      );
      await expect(index.searchVector(bad, near(0), 5)).rejects.toBeInstanceOf(VectorInputError);
      await expect(index.dropTenant(bad)).rejects.toBeInstanceOf(VectorInputError);
    }
    expect(readdirSync(uri)).toEqual([tenant]);
    expect(existsSync(path.join(uri, "..", "escape"))).toBe(false);
  });

  it("refuses document ids that are not UUIDs, in writes, deletes and filters", async () => {
    const injection = "x' OR '1'='1";
    await expect(index.deleteDocument(tenant, injection)).rejects.toBeInstanceOf(VectorInputError);
    await expect(index.deleteVersions(tenant, injection, { olderThan: 2 })).rejects.toBeInstanceOf(
      VectorInputError,
    );
    await expect(
      index.deleteVersions(tenant, randomUUID(), { version: 1.5 }),
    ).rejects.toBeInstanceOf(VectorInputError);
    await expect(
      index.searchVector(tenant, near(0), 5, { documentIds: [injection] }),
    ).rejects.toBeInstanceOf(VectorInputError);
    await expect(
      index.upsertChunks(tenant, [{ ...chunk(doc, 1, 9), documentId: injection }]),
    ).rejects.toBeInstanceOf(VectorInputError);
    await expect(
      index.upsertCatalog(tenant, { ...catalogRow(doc, 1), documentId: "nope" }),
    ).rejects.toBeInstanceOf(VectorInputError);
    expect(await index.count(tenant)).toBe(2);
  });

  it("refuses malformed chunks and writes nothing of the batch", async () => {
    const good = chunk(doc, 1, 5);
    const bad: ChunkRow[] = [
      { ...chunk(doc, 1, 6), id: `${doc}:1:7` },
      { ...chunk(doc, 1, 6), id: "custom-id" },
      { ...chunk(doc, 1, 6), vector: near(0).slice(1) },
      { ...chunk(doc, 1, 6), vector: near(0).map((x, i) => (i === 3 ? Number.NaN : x)) },
      { ...chunk(doc, 1, 6), version: -1, id: `${doc}:-1:6` },
      { ...chunk(doc, 1, 6), metadata: { n: 1 as unknown as string } },
    ];
    for (const row of bad) {
      await expect(index.upsertChunks(tenant, [good, row])).rejects.toBeInstanceOf(
        VectorInputError,
      );
    }
    await expect(index.upsertChunks(tenant, [good, good])).rejects.toThrow(/twice/);
    expect(await index.count(tenant)).toBe(2);
  });

  it("refuses bad limits and query vectors of the wrong size", async () => {
    for (const limit of [0, -1, 1.5, 1001, Number.NaN]) {
      await expect(index.searchVector(tenant, near(0), limit)).rejects.toBeInstanceOf(
        VectorInputError,
      );
      await expect(index.searchText(tenant, "common", limit)).rejects.toBeInstanceOf(
        VectorInputError,
      );
    }
    await expect(index.searchVector(tenant, [1, 0, 0], 5)).rejects.toBeInstanceOf(VectorInputError);
  });

  it("refuses to mix vector sizes in one tenant's table", async () => {
    const smaller = createLanceVectorIndex({
      uri,
      dimensions: 16,
      lock: createInProcessTenantLock(),
      logger,
    });
    try {
      await expect(smaller.searchVector(tenant, near(0).slice(0, 16), 5)).rejects.toThrow(
        /32 dimensions.*expects 16/,
      );
    } finally {
      await smaller.close();
    }
  });
});
