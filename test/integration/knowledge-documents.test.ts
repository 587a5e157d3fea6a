import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  expectError,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
  uniqueEmail,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { FAQS, knowledgeApi } from "../fixtures/knowledge.js";

/**
 * The document behind a knowledge item is changed only through the knowledge routes (which
 * need an admin): the generic document routes answer 409 for it, whatever the caller's role.
 */
describe.each(backends)("documents behind knowledge items ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(backend, { JOB_BACKOFF_MS: "20" }, { workers: true });
  });
  afterAll(() => t.close());
  const { call, ok, settle, search } = knowledgeApi(() => t.app);

  async function member(owner: SignedUp): Promise<string> {
    const m = {
      email: uniqueEmail("member"),
      password: `pw-${randomBytes(8).toString("hex")}`,
      role: "member",
    };
    await ok(owner, "POST", "/api/customers/users", 201, m);
    const login = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: m.email, password: m.password },
    });
    expect(login.statusCode, login.body).toBe(200);
    return login.json().token as string;
  }

  it("PUT and DELETE /api/documents/:id of an item's document answer 409 for a member and for the owner; the item and search keep the FAQ", async () => {
    const owner = await signup(t.app);
    const memberToken = await member(owner);
    const faq = await ok(owner, "POST", FAQS, 202, {
      question: "When is check-out?",
      answer: "Check-out is at eleven in the morning.",
    });
    await settle(owner, `${FAQS}/${faq.id}`);
    const doc = `/api/documents/${faq.documentId}`;

    for (const token of [memberToken, owner.token]) {
      const put = expectError(
        await call(token, "PUT", doc, { content: "Check-out is whenever you like." }),
        409,
        "document.managed_by_knowledge",
      );
      expect(put.error.message).toContain("/api/knowledge");
      expectError(await call(token, "DELETE", doc), 409, "document.managed_by_knowledge");
    }

    const versions = await ok(owner, "GET", `${doc}/versions`, 200);
    expect(versions.items.map((v: { version: number }) => v.version)).toEqual([1]);
    const item = await ok(owner, "GET", `${FAQS}/${faq.id}`, 200);
    expect(item).toMatchObject({ status: "completed", activeVersion: 1, error: null });
    const hits = await search(owner, { query: "check-out time", mode: "hybrid" });
    expect(hits.map((h) => h.text).join(" ")).toContain("eleven in the morning");
    expect(hits.map((h) => h.text).join(" ")).not.toContain("whenever you like");

    // The knowledge routes still change and delete it, document included.
    await ok(owner, "PUT", `${FAQS}/${faq.id}`, 202, {
      question: "When is check-out?",
      answer: "Check-out is at noon.",
    });
    await ok(owner, "DELETE", `${FAQS}/${faq.id}`, 204);
    expectError(await call(owner.token, "GET", doc), 404, "not_found");
  });

  it("ordinary documents stay a member's to change and delete", async () => {
    const owner = await signup(t.app);
    const memberToken = await member(owner);
    const created = await call(memberToken, "POST", "/api/ingest/document", {
      title: "Parking",
      content: "Parking is behind the building.",
    });
    expect(created.statusCode, created.body).toBe(202);
    const doc = `/api/documents/${created.json().documentId}`;
    const put = await call(memberToken, "PUT", doc, { content: "Parking is on the street." });
    expect(put.statusCode, put.body).toBe(202);
    expect(put.json()).toMatchObject({ version: 2, status: "processing" });
    expect((await call(memberToken, "DELETE", doc)).statusCode).toBe(204);
  });

  it("the same text as an item's, ingested without an externalId, is a document of its own, not the item's", async () => {
    const owner = await signup(t.app);
    const memberToken = await member(owner);
    const faq = await ok(owner, "POST", FAQS, 202, { question: "Pets?", answer: "Dogs only." });
    await settle(owner, `${FAQS}/${faq.id}`);
    // The item's rendering, byte for byte (see renderItem).
    const res = await call(memberToken, "POST", "/api/ingest/document", {
      title: "Pets?",
      content: "# Pets?\n\nDogs only.",
      docType: "md",
    });
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json().status).toBe("processing");
    expect(res.json().documentId).not.toBe(faq.documentId);
  });
});
