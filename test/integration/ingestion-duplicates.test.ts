import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearer, type SignedUp, signup, startApp, type TestApp } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { documentCount } from "../fixtures/ingest.js";

/**
 * Duplicate detection holds under concurrency: identical submissions arriving at once create one
 * document and one version, and every other answer is `duplicate` of that version.
 */
describe.each(backends)("duplicates under concurrency ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    // No workers: the versions stay pending, the window in which a duplicate is easiest to miss.
    t = await startApp(backend);
  });
  afterAll(() => t.close());

  const post = (s: SignedUp, payload: Record<string, unknown>) =>
    t.app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: bearer(s.token),
      payload,
    });

  async function fifty(s: SignedUp, payload: Record<string, unknown>) {
    const answers = await Promise.all(Array.from({ length: 50 }, () => post(s, payload)));
    for (const a of answers) expect(a.statusCode, a.body).toBe(202);
    const bodies = answers.map((a) => a.json());
    const created = bodies.filter((b) => b.status === "processing");
    expect(created).toHaveLength(1);
    const { documentId, version } = created[0];
    const duplicates = bodies.filter((b) => b.status === "duplicate");
    expect(duplicates).toHaveLength(49);
    for (const d of duplicates) expect(d).toMatchObject({ documentId, version });
    return { documentId, version };
  }

  it("50 identical documents without an externalId at once: one created, 49 duplicates of it", async () => {
    const s = await signup(t.app);
    const { version } = await fifty(s, { title: "Hours", content: "Open nine to five." });
    expect(version).toBe(1);
    expect(await documentCount(t.app, s.token)).toBe(1);
    // One at a time it is a duplicate as well; other content is another document.
    expect((await post(s, { title: "Hours", content: "Open nine to five." })).json().status).toBe(
      "duplicate",
    );
    expect((await post(s, { title: "Hours", content: "Open ten to six." })).json()).toMatchObject({
      status: "processing",
      version: 1,
    });
    expect(await documentCount(t.app, s.token)).toBe(2);
  });

  it("50 identical documents with one externalId at once: one version, 49 duplicates, no error", async () => {
    const s = await signup(t.app);
    await fifty(s, { title: "Menu", content: "Soup: tomato.", externalId: "menu" });
    expect(await documentCount(t.app, s.token)).toBe(1);
  });

  it("50 identical documents with one source URL at once: one document", async () => {
    const s = await signup(t.app);
    await fifty(s, {
      title: "Menu",
      content: "Soup: leek.",
      sourceUrl: "https://example.com/menu",
    });
    expect(await documentCount(t.app, s.token)).toBe(1);
  });

  it("the same content under different externalIds is two documents; another tenant's copy is its own", async () => {
    const s = await signup(t.app);
    const a = await post(s, { title: "A", content: "Same words.", externalId: "a" });
    const b = await post(s, { title: "B", content: "Same words.", externalId: "b" });
    expect([a.json().status, b.json().status]).toEqual(["processing", "processing"]);
    expect(a.json().documentId).not.toBe(b.json().documentId);
    const other = await signup(t.app);
    expect((await post(other, { title: "A", content: "Same words." })).json().status).toBe(
      "processing",
    );
  });
});
