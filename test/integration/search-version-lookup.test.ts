import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSearchService } from "../../src/modules/search/index.js";
import type { ChunkRow, VectorIndex } from "../../src/platform/vectors/index.js";
import type { TenantContext } from "../../src/tenancy.js";
import { signup, startApp, type TestApp } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { search as searchRoute } from "../fixtures/ingest.js";

/**
 * Hybrid search looks up the active versions of each list's documents as soon as that list
 * answers, so the lookup of the first list overlaps the other search; the filter must stay
 * the same: only chunks of active versions, each document asked for once.
 */
describe.each(backends)("hybrid search's active-version lookup ($name)", (backend) => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startApp(backend);
  });
  afterAll(async () => {
    await t?.close();
  });

  it("starts with the first list to answer, asks for each document once, and filters as before", async () => {
    const s = await signup(t.app);
    const kept = randomUUID();
    const textOnly = randomUUID();
    const rows = async (documentId: string, version: number, texts: string[]) => {
      const { vectors } = await t.ctx.embedders.local.embed({ texts });
      return texts.map(
        (text, i): ChunkRow => ({
          id: `${documentId}:${version}:${i}`,
          documentId,
          version,
          chunkIndex: i,
          text,
          vector: vectors[i] as number[],
          title: "Harbour notes",
          docType: "md",
          metadata: {},
        }),
      );
    };
    await t.ctx.vectors.upsertChunks(s.tenantId, [
      ...(await rows(kept, 1, ["old lighthouse keeper log", "old tide table"])),
      ...(await rows(kept, 2, ["new lighthouse keeper log", "new tide table"])),
      ...(await rows(textOnly, 1, ["lighthouse lighthouse lighthouse"])),
    ]);
    for (const [id, active] of [
      [kept, 2],
      [textOnly, 1],
    ] as const) {
      await t.ctx.db.query(
        `insert into documents (id, tenant_id, title, doc_type, status, active_version, latest_version)
         values ($1, $2, 'Harbour notes', 'md', 'completed', $3, $3)`,
        [id, s.tenantId, active],
      );
      for (let v = 1; v <= active; v++) {
        await t.ctx.db.query(
          `insert into document_versions (tenant_id, document_id, version, content_type, status, is_active)
           values ($1, $2, $3, 'md', $4, $5)`,
          [s.tenantId, id, v, v === active ? "active" : "superseded", v === active],
        );
      }
    }

    // The text search answers only once the vector list's lookup has started.
    const events: string[] = [];
    let vectorLookupStarted!: () => void;
    const lookupStarted = new Promise<void>((r) => {
      vectorLookupStarted = r;
    });
    const vectors: VectorIndex = {
      ...t.ctx.vectors,
      searchVector: async (...args) => {
        const hits = await t.ctx.vectors.searchVector(...args);
        events.push("vector answered");
        return hits;
      },
      searchText: async (...args) => {
        const hits = await t.ctx.vectors.searchText(...args);
        await lookupStarted;
        events.push("text answered");
        return hits;
      },
    };
    const asked: string[][] = [];
    const search = createSearchService({
      db: t.ctx.db,
      vectors,
      embedders: t.ctx.embedders,
      tenants: t.ctx.tenants,
      quotas: t.ctx.quotas,
      usage: t.ctx.usage,
      documents: {
        activeVersions(ctx, ids) {
          events.push("lookup");
          asked.push([...ids]);
          vectorLookupStarted();
          return t.ctx.documents.activeVersions(ctx, ids);
        },
      },
    });
    const ctx: TenantContext = {
      tenantId: s.tenantId,
      actor: {
        kind: "api_key",
        keyId: randomUUID(),
        tenantId: s.tenantId,
        role: "admin",
        scopes: ["admin"],
      },
      request: { id: "test", ip: "127.0.0.1", userAgent: null },
    };
    const hits = await search.search(ctx, {
      query: "lighthouse keeper log",
      mode: "hybrid",
      limit: 10,
    });

    expect(events.slice(0, 3)).toEqual(["vector answered", "lookup", "text answered"]);
    // Each document once over both lookups; the text-only document in the second.
    const flat = asked.flat();
    expect(new Set(flat).size).toBe(flat.length);
    expect(flat.sort()).toEqual([kept, textOnly].sort());
    // Only active versions, and the same as the route answers.
    expect(hits.length).toBeGreaterThan(0);
    expect(hits.every((h) => (h.documentId === kept ? h.version === 2 : h.version === 1))).toBe(
      true,
    );
    const viaRoute = await t.ctx.search.search(ctx, {
      query: "lighthouse keeper log",
      mode: "hybrid",
      limit: 10,
    });
    expect(hits.map((h) => `${h.documentId}:${h.version}:${h.chunkIndex}`)).toEqual(
      viaRoute.map((h) => `${h.documentId}:${h.version}:${h.chunkIndex}`),
    );
  });
  it("superseded chunks ranking above every active one do not leave the page short", async () => {
    const s = await signup(t.app);
    const doc = randomUUID();
    const other = randomUUID();
    const rows = async (documentId: string, version: number, texts: string[]) => {
      const { vectors } = await t.ctx.embedders.local.embed({ texts });
      return texts.map(
        (text, i): ChunkRow => ({
          id: `${documentId}:${version}:${i}`,
          documentId,
          version,
          chunkIndex: i,
          text,
          vector: vectors[i] as number[],
          title: "Harbour notes",
          docType: "md",
          metadata: {},
        }),
      );
    };
    // Version 1 (superseded, not yet cleaned up): 80 chunks that match the query best, more
    // than any first fetch for a page of 10 (30). Version 2 (active) and another document:
    // weaker matches, found only past the superseded ones.
    await t.ctx.vectors.upsertChunks(s.tenantId, [
      ...(await rows(
        doc,
        1,
        Array.from({ length: 80 }, (_, i) => `lighthouse keeper tide table entry ${i}`),
      )),
      ...(await rows(
        doc,
        2,
        Array.from(
          { length: 6 },
          (_, i) => `the lighthouse stands on the northern cape, part ${i}`,
        ),
      )),
      ...(await rows(
        other,
        1,
        Array.from({ length: 6 }, (_, i) => `a lighthouse keeper's diary, page ${i}`),
      )),
    ]);
    for (const [id, active] of [
      [doc, 2],
      [other, 1],
    ] as const) {
      await t.ctx.db.query(
        `insert into documents (id, tenant_id, title, doc_type, status, active_version, latest_version)
         values ($1, $2, 'Harbour notes', 'md', 'completed', $3, $3)`,
        [id, s.tenantId, active],
      );
      for (let v = 1; v <= active; v++) {
        await t.ctx.db.query(
          `insert into document_versions (tenant_id, document_id, version, content_type, status, is_active)
           values ($1, $2, $3, 'md', $4, $5)`,
          [s.tenantId, id, v, v === active ? "active" : "superseded", v === active],
        );
      }
    }
    for (const mode of ["vector", "text", "hybrid"] as const) {
      const hits = await searchRoute(t.app, s.token, {
        query: "lighthouse keeper tide table entry",
        mode,
        limit: 10,
      });
      // Every active chunk that matches: 6 + 6 ≥ 10, so a full page, none superseded.
      expect(hits, mode).toHaveLength(10);
      expect(
        hits.every((h) => (h.documentId === doc ? h.version === 2 : h.documentId === other)),
        mode,
      ).toBe(true);
    }
  });
});
