import { randomBytes } from "node:crypto";
import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectError, signup, startApp, type TestApp, uniqueEmail } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { uploadFile } from "../fixtures/ingest.js";
import { FAQS, knowledgeApi, MENU, POLICIES } from "../fixtures/knowledge.js";

/** The knowledge routes as a tenant uses them; failures are in knowledge-faults.test.ts. */
describe.each(backends)("knowledge items ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(backend, { JOB_BACKOFF_MS: "20" }, { workers: true });
  });
  afterAll(() => t.close());
  const { call, ok, settle, search } = knowledgeApi(() => t.app);

  it("creates an FAQ that answers at once, completes in the background, and is found by every search mode as docType faq", async () => {
    const s = await signup(t.app);
    const fields = {
      question: "Can I bring my dog?",
      answer: "Dogs are welcome on the terrace, but not inside the dining room.",
      category: "Pets",
      tags: ["dogs", "terrace"],
    };
    const created = await ok(s, "POST", FAQS, 202, fields);
    expect(created).toMatchObject({ type: "faq", fields, status: "processing" });
    expect(created.ingest).toMatchObject({ status: "processing", version: 1 });
    expect(created.job?.id).toBe(created.ingest.jobId);

    const done = await settle(s, `${FAQS}/${created.id}`);
    expect(done).toMatchObject({ status: "completed", error: null, activeVersion: 1 });
    expect(done.job).toMatchObject({ status: "completed", attempts: 1 });

    // A plain document on the same subject: the docTypes filter must tell them apart.
    await ok(s, "POST", "/api/ingest/document", 202, {
      title: "House rules",
      content: "Dogs on the terrace must stay on a leash.",
    });
    for (const mode of ["vector", "text", "hybrid"]) {
      const hits = await search(s, {
        query: "dogs welcome terrace",
        mode,
        filters: { docTypes: ["faq"] },
      });
      expect(hits.length, mode).toBe(1);
      expect(hits[0]).toMatchObject({
        documentId: created.documentId,
        docType: "faq",
        metadata: { knowledgeType: "faq", knowledgeItemId: created.id, category: "Pets" },
      });
      expect(hits[0]?.text).toContain("Dogs are welcome on the terrace");
    }
    expect(
      await search(s, { query: "dogs welcome", mode: "text", filters: { docTypes: ["policy"] } }),
    ).toEqual([]);
    const list = await ok(s, "GET", FAQS, 200);
    expect(list.items.map((i: { id: string; status: string }) => [i.id, i.status])).toEqual([
      [created.id, "completed"],
    ]);
  });

  it("an update replaces what search finds; an unchanged update is a duplicate without a new version", async () => {
    const s = await signup(t.app);
    const q = "When does breakfast start?";
    const item = await ok(s, "POST", FAQS, 202, {
      question: q,
      answer: "Breakfast starts at seven sharp.",
    });
    await settle(s, `${FAQS}/${item.id}`);

    const changed = { question: q, answer: "Breakfast starts at half past eight." };
    const put = await ok(s, "PUT", `${FAQS}/${item.id}`, 202, changed);
    expect(put.ingest).toMatchObject({ status: "processing", version: 2 });
    expect(await settle(s, `${FAQS}/${item.id}`)).toMatchObject({
      status: "completed",
      activeVersion: 2,
      fields: changed,
    });
    const texts = (await search(s, { query: "breakfast", mode: "hybrid" }))
      .map((h) => h.text)
      .join(" ");
    expect(texts).toContain("half past eight");
    expect(texts).not.toContain("seven sharp");

    const again = await ok(s, "PUT", `${FAQS}/${item.id}`, 202, changed);
    expect(again.ingest).toMatchObject({
      status: "duplicate",
      version: 2,
      jobId: put.ingest.jobId,
    });
    expect(again).toMatchObject({ status: "completed", latestVersion: 2 });
    const versions = await ok(s, "GET", `/api/documents/${item.documentId}/versions`, 200);
    expect(versions.items).toHaveLength(2);
  });

  it("delete removes the item and its document, from search at once; GET answers 404", async () => {
    const s = await signup(t.app);
    const item = await ok(s, "POST", FAQS, 202, {
      question: "Is there parking?",
      answer: "Guests park behind the building.",
    });
    await settle(s, `${FAQS}/${item.id}`);
    expect(await search(s, { query: "park behind building", mode: "text" })).toHaveLength(1);

    await ok(s, "DELETE", `${FAQS}/${item.id}`, 204);
    expect(await search(s, { query: "park behind building", mode: "hybrid" })).toEqual([]);
    expectError(await call(s.token, "GET", `${FAQS}/${item.id}`), 404, "not_found");
    expectError(await call(s.token, "GET", `/api/documents/${item.documentId}`), 404, "not_found");
    expectError(await call(s.token, "DELETE", `${FAQS}/${item.id}`), 404, "not_found");
    expect((await ok(s, "GET", FAQS, 200)).items).toEqual([]);
  });

  it("concurrent updates leave the item's fields and its active document telling the same answer", async () => {
    const s = await signup(t.app);
    const q = "Which days are you open?";
    const item = await ok(s, "POST", FAQS, 202, { question: q, answer: "Every day." });
    const answers = Array.from({ length: 8 }, (_, i) => `Open on day ${i} of the week only.`);
    const puts = await Promise.all(
      answers.map((answer) => call(s.token, "PUT", `${FAQS}/${item.id}`, { question: q, answer })),
    );
    expect(puts.map((r) => r.statusCode)).toEqual(Array(8).fill(202));
    const settled = await settle(s, `${FAQS}/${item.id}`);
    expect(settled.status).toBe("completed");
    expect(settled.activeVersion).toBe(settled.latestVersion);
    const hits = await search(s, { query: "open day week", mode: "text", limit: 20 });
    const live = hits.filter((h) => h.documentId === item.documentId);
    expect(live.length).toBeGreaterThan(0);
    // Whatever order the updates landed in, the item shows what search finds.
    for (const h of live) expect(h.text).toContain(settled.fields.answer);
  });

  it("menu items and policies: create, read, list, update and delete, each in its own collection", async () => {
    const s = await signup(t.app);
    const pizza = {
      name: "Margherita Pizza",
      description: "Classic tomato and mozzarella pizza.",
      price: 12.99,
      currency: "EUR",
      category: 'Chef\'s "pizzas"',
      dietary: ["vegetarian"],
      allergens: ["gluten", "milk"],
      available: true,
    };
    const item = await ok(s, "POST", MENU, 202, pizza);
    expect((await settle(s, `${MENU}/${item.id}`)).fields).toEqual(pizza);
    const menuHit = async () =>
      (
        await search(s, {
          query: "margherita mozzarella",
          mode: "text",
          filters: { docTypes: ["menu_item"] },
        })
      )[0];
    expect((await menuHit())?.text).toMatch(/12\.99 EUR[\s\S]*gluten, milk/);
    // The category is metadata of its chunks, quotes and all, so search can filter on it.
    const byCategory = { metadata: { category: pizza.category } };
    expect(await search(s, { query: "pizza", mode: "text", filters: byCategory })).toHaveLength(1);
    const otherCategory = { metadata: { category: "Chef's" } };
    expect(await search(s, { query: "pizza", mode: "text", filters: otherCategory })).toEqual([]);

    await ok(s, "PUT", `${MENU}/${item.id}`, 202, { ...pizza, price: 13.5, available: false });
    await settle(s, `${MENU}/${item.id}`);
    expect((await menuHit())?.text).toMatch(/13\.50 EUR[\s\S]*Currently unavailable/);

    const policy = {
      title: "Cancellation policy",
      content: "Cancel up to 24 hours ahead at no charge.",
      effectiveDate: "2025-01-01",
    };
    const p = await ok(s, "POST", POLICIES, 202, policy);
    expect((await settle(s, `${POLICIES}/${p.id}`)).status).toBe("completed");
    expect((await search(s, { query: "cancel 24 hours", mode: "hybrid" }))[0]).toMatchObject({
      docType: "policy",
    });
    expect((await ok(s, "GET", POLICIES, 200)).items.map((i: { id: string }) => i.id)).toEqual([
      p.id,
    ]);
    expect((await ok(s, "GET", MENU, 200)).items.map((i: { id: string }) => i.id)).toEqual([
      item.id,
    ]);
    // An id names an item of one type only.
    expectError(await call(s.token, "GET", `${FAQS}/${p.id}`), 404, "not_found");
    expectError(await call(s.token, "DELETE", `${MENU}/${p.id}`), 404, "not_found");

    await ok(s, "DELETE", `${POLICIES}/${p.id}`, 204);
    await ok(s, "DELETE", `${MENU}/${item.id}`, 204);
    expect(await search(s, { query: "margherita cancel", mode: "text" })).toEqual([]);
  });

  it("lists newest first, page by page with a cursor, and filters by category", async () => {
    const s = await signup(t.app);
    const ids: string[] = [];
    for (const [i, category] of ["Drinks", "Food", "Drinks"].entries()) {
      ids.push(
        (
          await ok(s, "POST", FAQS, 202, {
            question: `Question ${i}?`,
            answer: `Answer ${i}.`,
            category,
          })
        ).id,
      );
    }
    const first = await ok(s, "GET", `${FAQS}?limit=2`, 200);
    expect(first.items.map((i: { id: string }) => i.id)).toEqual([ids[2], ids[1]]);
    const second = await ok(s, "GET", `${FAQS}?limit=2&cursor=${first.nextCursor}`, 200);
    expect(second).toMatchObject({ items: [{ id: ids[0] }], nextCursor: null });
    const drinks = await ok(s, "GET", `${FAQS}?category=Drinks`, 200);
    expect(drinks.items.map((i: { id: string }) => i.id)).toEqual([ids[2], ids[0]]);
    expectError(await call(s.token, "GET", `${FAQS}?cursor=nonsense`), 400, "validation.failed");
  });

  it("no ingest route lets a client take the externalId of an item's document", async () => {
    const s = await signup(t.app);
    const created = await ok(s, "POST", FAQS, 202, {
      question: "Is there parking?",
      answer: "Yes, behind the building.",
    });
    const taken = `knowledge:${created.id}`;
    const refused = (res: LightMyRequestResponse) => {
      const body = expectError(res, 400, "validation.failed");
      expect(JSON.stringify(body.error)).toContain("knowledge: is reserved");
    };
    refused(
      await call(s.token, "POST", "/api/ingest/document", {
        title: "Parking",
        content: "No parking at all.",
        externalId: taken,
      }),
    );
    refused(
      await call(s.token, "POST", "/api/ingest/url", {
        url: "https://example.com/parking",
        externalId: taken,
      }),
    );
    const batch = await call(s.token, "POST", "/api/ingest/batch", {
      documents: [{ title: "Parking", content: "No parking.", externalId: taken }],
    });
    expect(batch.statusCode).toBe(202);
    expect(batch.json().results[0]).toMatchObject({
      ok: false,
      error: { code: "validation.failed" },
    });
    refused(
      await uploadFile(
        t.app,
        s.token,
        { name: "parking.txt", type: "text/plain", body: Buffer.from("No parking.") },
        { externalId: taken },
      ),
    );
    // The item's document is untouched: still version 1, still the FAQ.
    const item = await settle(s, `${FAQS}/${created.id}`);
    expect(item).toMatchObject({ status: "completed", activeVersion: 1 });
    const docs = (await ok(s, "GET", "/api/documents", 200)).items;
    expect(docs).toHaveLength(1);
  });

  it("refuses invalid fields with a 400 that names the field, and creates nothing", async () => {
    const s = await signup(t.app);
    const field = (res: LightMyRequestResponse) => {
      const body = expectError(res, 400, "validation.failed");
      return `${body.error.details.issues[0].path} ${body.error.message}`;
    };
    const menu = { name: "Soup", description: "Hot.", price: 5, category: "Soups" };
    expect(field(await call(s.token, "POST", FAQS, { answer: "No question." }))).toMatch(
      /^question /,
    );
    expect(field(await call(s.token, "POST", FAQS, { question: " ", answer: "Blank." }))).toMatch(
      /^question /,
    );
    expect(field(await call(s.token, "POST", MENU, { ...menu, price: -1 }))).toMatch(
      /^price .*negative/,
    );
    expect(field(await call(s.token, "POST", MENU, { ...menu, price: 1.234 }))).toMatch(/^price /);
    expect(field(await call(s.token, "POST", MENU, { ...menu, currency: "euro" }))).toMatch(
      /^currency /,
    );
    expect(
      field(await call(s.token, "POST", FAQS, { question: "Q?", answer: "A.", colour: "red" })),
    ).toMatch(/colour/);
    expect(
      field(
        await call(s.token, "POST", POLICIES, { title: "T", content: "C", effectiveDate: "soon" }),
      ),
    ).toMatch(/^effectiveDate /);
    expect(
      field(await call(s.token, "POST", FAQS, { question: "Q?", answer: "x".repeat(20_001) })),
    ).toMatch(/^answer /);
    const tags = { question: "Q?", answer: "A.", tags: ["Vegan", "vegan"] };
    expect(field(await call(s.token, "POST", FAQS, tags))).toMatch(/^tags /);
    expect(field(await call(s.token, "POST", FAQS, [{ question: "Q?", answer: "A." }]))).toMatch(
      /^ body/,
    );
    expect(field(await call(s.token, "GET", `${FAQS}/not-a-uuid`))).toMatch(/^id /);
    expect(field(await call(s.token, "GET", `${FAQS}?limit=0`))).toMatch(/^limit /);
    expect(field(await call(s.token, "GET", `${FAQS}?sort=asc`))).toMatch(/sort/);
    for (const url of [FAQS, MENU, POLICIES])
      expect((await ok(s, "GET", url, 200)).items).toEqual([]);
    expect((await ok(s, "GET", "/api/documents", 200)).items).toEqual([]);
  });

  it("lets members read but not write, and refuses another tenant everything with 404", async () => {
    const a = await signup(t.app);
    const item = await ok(a, "POST", FAQS, 202, {
      question: "Secret recipe?",
      answer: "Kept by the chef.",
    });
    const fields = { question: "Secret recipe?", answer: "Overwritten." };

    const member = {
      email: uniqueEmail("member"),
      password: `pw-${randomBytes(8).toString("hex")}`,
      role: "member",
    };
    await ok(a, "POST", "/api/customers/users", 201, member);
    const login = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: member.email, password: member.password },
    });
    const memberToken = login.json().token as string;
    expect((await call(memberToken, "GET", `${FAQS}/${item.id}`)).statusCode).toBe(200);
    expect((await call(memberToken, "GET", FAQS)).json().items).toHaveLength(1);
    expectError(await call(memberToken, "POST", FAQS, fields), 403, "auth.forbidden");
    expectError(
      await call(memberToken, "PUT", `${FAQS}/${item.id}`, fields),
      403,
      "auth.forbidden",
    );
    expectError(await call(memberToken, "DELETE", `${FAQS}/${item.id}`), 403, "auth.forbidden");

    const b = await signup(t.app);
    expectError(await call(b.token, "GET", `${FAQS}/${item.id}`), 404, "not_found");
    expectError(await call(b.token, "PUT", `${FAQS}/${item.id}`, fields), 404, "not_found");
    expectError(await call(b.token, "DELETE", `${FAQS}/${item.id}`), 404, "not_found");
    expect((await ok(b, "GET", FAQS, 200)).items).toEqual([]);
    await settle(a, `${FAQS}/${item.id}`);
    expect(await search(b, { query: "secret recipe chef", mode: "hybrid" })).toEqual([]);
    expect((await ok(a, "GET", `${FAQS}/${item.id}`, 200)).fields.answer).toBe("Kept by the chef.");
  });
});
