import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearer, type SignedUp, signup, startApp, type TestApp } from "../fixtures/app.js";
import { backends, type TestBackend } from "../fixtures/db.js";
import { faultyDb } from "../fixtures/faulty-db.js";

/**
 * The streamed downloads (usage export, audit export) when their first read fails: the answer
 * is the ordinary error — a 5xx with the JSON error body — not a 200 labelled CSV or JSON Lines
 * whose body stops short.
 */

/** The first reads of each download: the usage events page, the roll-ups, the audit window. */
const FIRST_READS =
  /from "usage_events" where "tenant_id"|from "usage_rollups"|select min\(seq\) as "min"/i;

function withFaults(backend: TestBackend) {
  let faults: ReturnType<typeof faultyDb> | undefined;
  const wrapped: TestBackend = {
    name: backend.name,
    async open() {
      const opened = await backend.open();
      faults = faultyDb(opened.db, FIRST_READS);
      return { db: faults.db, dispose: opened.dispose };
    },
  };
  return { backend: wrapped, faults: () => faults as ReturnType<typeof faultyDb> };
}

describe.each(backends)("downloads whose first read fails ($name)", (plain) => {
  const held = withFaults(plain);
  let t: TestApp;
  let a: SignedUp;

  beforeAll(async () => {
    t = await startApp(held.backend);
    a = await signup(t.app, { companyName: "Downloads" });
  });
  afterAll(async () => {
    await t?.close();
  });

  const downloads = [
    ["usage events as CSV", "/api/metrics/export?kind=events&format=csv"],
    ["usage events as JSON Lines", "/api/metrics/export?kind=events&format=jsonl"],
    ["roll-ups as CSV", "/api/metrics/export?kind=usage&period=day"],
    ["the audit trail", "/api/audit/export"],
  ] as const;

  for (const [what, url] of downloads) {
    it(`${what}: an error answer, not a broken download`, async () => {
      held.faults().failNext(1);
      const res = await t.app.inject({ method: "GET", url, headers: bearer(a.token) });
      expect(res.statusCode, res.body).toBeGreaterThanOrEqual(500);
      expect(res.headers["content-type"]).toMatch(/^application\/json/);
      expect(res.headers["content-disposition"]).toBeUndefined();
      expect(typeof res.json().error.code).toBe("string");

      // The next attempt, with the database back, is the whole download.
      const ok = await t.app.inject({ method: "GET", url, headers: bearer(a.token) });
      expect(ok.statusCode, ok.body).toBe(200);
      expect(ok.headers["content-disposition"]).toMatch(/^attachment; filename=/);
      if (url.includes("csv") || url.includes("kind=usage")) {
        expect(ok.body.split("\r\n")[0]).toMatch(/^[A-Za-z0-9_]+(,[A-Za-z0-9_]+)+$/);
      }
      if (url.includes("audit")) {
        expect(JSON.parse(ok.body.split("\n")[0] as string).type).toBe("header");
      }
    });
  }
});
