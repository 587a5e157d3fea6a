import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearer, type SignedUp, signup, startApp, type TestApp } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { search, settle } from "../fixtures/ingest.js";

// Versions of one document submitted faster than they are processed: the workers start only
// once all of them are in, so that several are pending at once.

describe.each(backends)(
  "versions submitted before the previous ones are processed ($name)",
  (backend) => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp(backend, { JOB_BACKOFF_MS: "20", WORKER_CONCURRENCY: "3" });
    });
    afterAll(() => t?.close());

    const ingest = (s: SignedUp, content: string) =>
      t.app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: bearer(s.token),
        payload: { title: "Hours", content, externalId: "hours" },
      });

    it("a change back to earlier content is a new version, and the newest submission wins", async () => {
      const s = await signup(t.app);
      const early = "The terrace opens at noon.";
      const late = "The terrace opens at three in the afternoon.";
      const answers = [];
      for (const content of [early, late, early, early]) {
        const res = await ingest(s, content);
        expect(res.statusCode, res.body).toBe(202);
        answers.push(res.json());
      }
      expect(answers.map((a) => [a.version, a.status])).toEqual([
        [1, "processing"],
        [2, "processing"],
        [3, "processing"],
        // Same as the newest version: nothing new.
        [3, "duplicate"],
      ]);

      t.ctx.startWorkers();
      const id = answers[0].documentId;
      const done = await settle(t.app, s.token, id);
      expect(done).toMatchObject({ status: "completed", activeVersion: 3, latestVersion: 3 });
      const hits = await search(t.app, s.token, { query: "terrace opens", mode: "hybrid" });
      expect(hits.map((h) => [h.version, h.text])).toEqual([[3, early]]);
      const versions = await t.app.inject({
        url: `/api/documents/${id}/versions`,
        headers: bearer(s.token),
      });
      const byVersion = Object.fromEntries(
        versions
          .json()
          .items.map((v: { version: number; status: string }) => [v.version, v.status]),
      );
      expect(byVersion).toEqual({ 1: "superseded", 2: "superseded", 3: "active" });
    });
  },
);
