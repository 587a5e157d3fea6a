import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bearer,
  expectError,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { search as searchAs, settle } from "../fixtures/ingest.js";

const WAIT_MS = 20_000;

/**
 * A query whose words a long document holds once each, among much else, while a short one
 * repeats one of them with the query's common words: BM25 finds the long one (its two rare
 * words), the local embedder's vector the short one (most of its features are the query's).
 */
const QUERY = "the warranty of the espresso grinder";
const RIGHT = {
  title: "Service terms",
  content:
    "Deliveries arrive within five working days; a signature is required on receipt. " +
    "Returned parcels are refunded once inspected by our depot in Leeds. " +
    "The burr espresso grinder carries a warranty of two years from purchase, parts and labour. " +
    "A grinder returned under warranty is repaired or replaced within ten days. " +
    "Descaling tablets, filters and gaskets are consumables and are sold separately. " +
    "Invoices are sent by email at dispatch; payment terms are thirty days net. " +
    "Our support line opens on weekdays from eight until six, except bank holidays.",
};
const MISLEADING = {
  title: "Espresso of the week",
  content: "The espresso of the week: the roast of the day, the taste of the house.",
};
const OTHERS = [
  "Opening hours of the shop: the shop opens at nine and closes at five.",
  "The loyalty card of the cafe: the tenth coffee of the month is free.",
  "The roastery of the company is in the north of the city, by the canal.",
];

describe.each(backends)("search settings ($name)", (backend) => {
  let t: TestApp;
  let s: SignedUp;
  let right: string;
  let misleading: string;

  const search = (body: Record<string, unknown>) => searchAs(t.app, s.token, body);
  const putConfig = (payload: Record<string, unknown>) =>
    t.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload,
    });
  const ingest = async (doc: { title: string; content: string }) => {
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: bearer(s.token),
      payload: { ...doc, docType: "txt" },
    });
    expect(res.statusCode, res.body).toBe(202);
    const id = res.json().documentId as string;
    await settle(t.app, s.token, id, WAIT_MS);
    return id;
  };

  beforeAll(async () => {
    t = await startApp(backend, { JOB_BACKOFF_MS: "20" }, { workers: true });
    s = await signup(t.app);
    right = await ingest(RIGHT);
    misleading = await ingest(MISLEADING);
    for (const [i, content] of OTHERS.entries()) await ingest({ title: `Note ${i}`, content });
  });
  afterAll(async () => {
    await t.close();
  });

  it("the case holds: text finds the right document first, the local vector the wrong one", async () => {
    expect((await search({ query: QUERY, mode: "text" }))[0]?.documentId).toBe(right);
    expect((await search({ query: QUERY, mode: "vector" }))[0]?.documentId).toBe(misleading);
  });

  it("hybrid with the default settings ranks the document text search is right about first", async () => {
    const config = (
      await t.app.inject({ url: "/api/customers/config", headers: bearer(s.token) })
    ).json();
    expect(config).toMatchObject({ searchFusion: null, searchTextWeight: null });
    expect((await search({ query: QUERY, mode: "hybrid" }))[0]?.documentId).toBe(right);
  });

  it("the settings change a real search's ranking, and null restores the default", async () => {
    const vectorOnly = await putConfig({ searchFusion: "weighted", searchTextWeight: 0 });
    expect(vectorOnly.statusCode, vectorOnly.body).toBe(200);
    expect(vectorOnly.json()).toMatchObject({ searchFusion: "weighted", searchTextWeight: 0 });
    expect((await search({ query: QUERY, mode: "hybrid" }))[0]?.documentId).toBe(misleading);

    // Plain RRF (equal weights), as hybrid search fused before these settings: the misleading
    // document's first and second places beat the right one's first and fourth.
    expect((await putConfig({ searchFusion: "rrf", searchTextWeight: 0.5 })).statusCode).toBe(200);
    expect((await search({ query: QUERY, mode: "hybrid" }))[0]?.documentId).toBe(misleading);

    expect((await putConfig({ searchFusion: "rrf", searchTextWeight: 1 })).statusCode).toBe(200);
    expect((await search({ query: QUERY, mode: "hybrid" }))[0]?.documentId).toBe(right);

    const reset = await putConfig({ searchFusion: null, searchTextWeight: null });
    expect(reset.json()).toMatchObject({ searchFusion: null, searchTextWeight: null });
    expect((await search({ query: QUERY, mode: "hybrid" }))[0]?.documentId).toBe(right);
  });

  it("refuses settings out of range or unknown with 400, and changes nothing", async () => {
    for (const bad of [
      { searchFusion: "linear" },
      { searchFusion: "" },
      { searchTextWeight: 1.5 },
      { searchTextWeight: -0.1 },
      { searchTextWeight: "0.5" },
    ]) {
      expectError(await putConfig(bad), 400, "validation.failed");
    }
    const config = (
      await t.app.inject({ url: "/api/customers/config", headers: bearer(s.token) })
    ).json();
    expect(config).toMatchObject({ searchFusion: null, searchTextWeight: null });
  });

  it("audits a change of the settings like any other configuration field", async () => {
    expect((await putConfig({ searchTextWeight: 0.6 })).statusCode).toBe(200);
    const rows = await t.ctx.db.query<{ old_values: unknown; new_values: unknown }>(
      `select old_values, new_values from audit_events
       where tenant_id = $1 and event_type = 'tenant_config.update' order by seq desc limit 1`,
      [s.tenantId],
    );
    expect(rows[0]).toEqual({
      old_values: { searchTextWeight: null },
      new_values: { searchTextWeight: 0.6 },
    });
    await putConfig({ searchTextWeight: null });
  });
});
