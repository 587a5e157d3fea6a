import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChunkRow } from "../../src/platform/vectors/index.js";
import { signup, startApp, type TestApp } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { search } from "../fixtures/ingest.js";

/**
 * Past the ANN threshold search goes through the IVF index, which holds every chunk LanceDB
 * has: those of superseded versions not yet cleaned up and of deleted documents too. The
 * active-version filter must still keep them out of every search mode.
 */
describe.each(backends)(
  "search over an ANN index returns active versions only ($name)",
  (backend) => {
    let t: TestApp;

    beforeAll(async () => {
      t = await startApp(backend, { ANN_THRESHOLD: "256" });
    });
    afterAll(async () => {
      await t?.close();
    });

    async function chunksOf(documentId: string, version: number, n: number, text: string) {
      const { vectors } = await t.ctx.embedders.local.embed({
        texts: Array.from({ length: n }, (_, i) => `${text} ${i}`),
      });
      return vectors.map(
        (vector, i): ChunkRow => ({
          id: `${documentId}:${version}:${i}`,
          documentId,
          version,
          chunkIndex: i,
          text: `${text} ${i}`,
          vector,
          title: "Harbour notes",
          docType: "md",
          metadata: {},
        }),
      );
    }

    async function documentRow(tenantId: string, id: string, active: number) {
      await t.ctx.db.query(
        `insert into documents (id, tenant_id, title, doc_type, status, active_version, latest_version)
       values ($1, $2, 'Harbour notes', 'md', 'completed', $3, $3)`,
        [id, tenantId, active],
      );
      for (let v = 1; v <= active; v++) {
        await t.ctx.db.query(
          `insert into document_versions (tenant_id, document_id, version, content_type, status, is_active)
         values ($1, $2, $3, 'md', $4, $5)`,
          [tenantId, id, v, v === active ? "active" : "superseded", v === active],
        );
      }
    }

    it("superseded and deleted documents' chunks never appear, whatever the mode", async () => {
      const s = await signup(t.app);
      const kept = randomUUID();
      const deleted = randomUUID();
      // Version 1 and 2 of one document both still in LanceDB (clean-up not yet run), the
      // active one 2; a document whose rows are gone but whose chunks remain.
      await t.ctx.vectors.upsertChunks(s.tenantId, [
        ...(await chunksOf(kept, 1, 20, "old tide table lighthouse")),
        ...(await chunksOf(kept, 2, 20, "new tide table lighthouse")),
        // Rows without the query's words: BM25 ignores a term found in most rows.
        ...(await chunksOf(kept, 2, 400, "weather report").then((rows) =>
          rows.map((r, i) => ({ ...r, id: `${kept}:2:${20 + i}`, chunkIndex: 20 + i })),
        )),
        ...(await chunksOf(deleted, 1, 20, "tide table lighthouse removed")),
      ]);
      await documentRow(s.tenantId, kept, 2);
      expect(await t.ctx.vectors.optimize(s.tenantId)).toEqual({ annIndexed: true });

      for (const mode of ["vector", "text", "hybrid"] as const) {
        const hits = await search(t.app, s.token, {
          query: "tide table lighthouse",
          mode,
          limit: 20,
        });
        expect(hits.length, mode).toBeGreaterThan(0);
        expect(
          hits.every((h) => h.documentId === kept && h.version === 2),
          mode,
        ).toBe(true);
      }
    });
  },
);
