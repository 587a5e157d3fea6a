import { randomUUID } from "node:crypto";
import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bearer,
  expectError,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
  uniqueEmail,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";

const NUL = "\u0000";
const LONE_HIGH = "\ud800";
const LONE_LOW = "\udc00";

/** Asserts 400 validation.failed naming `location` and the issue's `path`. */
function expectBadText(res: LightMyRequestResponse, location: string, path: string) {
  const body = expectError(res, 400, "validation.failed");
  expect(body.error.details.location, res.body).toBe(location);
  expect(body.error.details.issues[0].path, res.body).toBe(path);
  return body;
}

describe.each(backends)("text the API accepts ($name)", (backend) => {
  let t: TestApp;
  let owner: SignedUp;
  beforeAll(async () => {
    t = await startApp(backend);
    owner = await signup(t.app);
  });
  afterAll(() => t.close());

  const post = (url: string, payload: unknown, token = owner.token) =>
    t.app.inject({ method: "POST", url, headers: bearer(token), payload: payload as object });
  const doc = (extra: Record<string, unknown> = {}) => ({
    title: "Opening hours",
    content: "We open at nine.",
    ...extra,
  });

  describe("NUL and lone surrogates, in every string of a request", () => {
    it.each([
      ["NUL", NUL],
      ["a lone high surrogate", LONE_HIGH],
      ["a lone low surrogate", LONE_LOW],
    ])("refuses %s in the signup company name", async (_label, bad) => {
      const res = await t.app.inject({
        method: "POST",
        url: "/api/auth/signup",
        payload: { email: uniqueEmail(), password: "long enough pw", companyName: `a${bad}b` },
      });
      expectBadText(res, "body", "companyName");
    });

    it("refuses NUL in login, profile and API key name fields", async () => {
      const login = await t.app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { email: `a${NUL}@b.test`, password: "whatever pw" },
      });
      expectBadText(login, "body", "email");
      const profile = await t.app.inject({
        method: "PUT",
        url: "/api/customers/profile",
        headers: bearer(owner.token),
        payload: { companyName: `Acme${NUL}` },
      });
      expectBadText(profile, "body", "companyName");
      const key = await post("/api/customers/api-key", { name: `ci${NUL}` });
      expectBadText(key, "body", "name");
    });

    it.each([
      ["title", doc({ title: `T${NUL}` }), "title"],
      ["externalId", doc({ externalId: `ext${NUL}` }), "externalId"],
      ["a metadata value", doc({ metadata: { lang: `en${LONE_HIGH}` } }), "metadata.lang"],
      ["a metadata key", doc({ metadata: { [`la${NUL}ng`]: "en" } }), `metadata.la${NUL}ng`],
      ["content", doc({ content: `We open${NUL} at nine.` }), "content"],
    ])("refuses bad text in a document's %s at submit", async (_label, payload, path) => {
      expectBadText(await post("/api/ingest/document", payload), "body", path);
    });

    it("finds bad text deep in a batch and in keys no schema names", async () => {
      const batch = await post("/api/ingest/batch", {
        documents: [doc(), doc({ metadata: { ok: "yes", tag: `x${LONE_LOW}` } })],
      });
      expectBadText(batch, "body", "documents[1].metadata.tag");
      const key = await post("/api/ingest/document", { ...doc(), [`x${NUL}`]: 1 });
      expect(expectBadText(key, "body", `x${NUL}`).error.message).toContain("key");
    });

    it("keeps surrogate pairs (emoji) and non-ASCII text", async () => {
      const res = await post(
        "/api/ingest/document",
        doc({ title: "Menü 🍕", content: "日本語 😀" }),
      );
      expect(res.statusCode, res.body).toBe(202);
    });

    it.each([
      ["question", { question: `Q${LONE_HIGH}?`, answer: "A." }],
      ["answer", { question: "Q?", answer: `A${NUL}` }],
      ["tags[0]", { question: "Q?", answer: "A.", tags: [`t${LONE_LOW}`] }],
    ])("refuses bad text in a knowledge item's %s", async (path, payload) => {
      expectBadText(await post("/api/knowledge/faqs", payload), "body", path);
    });

    it("refuses NUL in query parameters and path parameters", async () => {
      const list = await t.app.inject({
        url: "/api/documents?docType=t%00xt",
        headers: bearer(owner.token),
      });
      expectBadText(list, "querystring", "docType");
      const faqs = await t.app.inject({
        url: "/api/knowledge/faqs?category=a%00",
        headers: bearer(owner.token),
      });
      expectBadText(faqs, "querystring", "category");
      const byId = await t.app.inject({
        url: "/api/documents/%00",
        headers: bearer(owner.token),
      });
      expectBadText(byId, "params", "id");
      // A real id is unaffected.
      const unknown = await t.app.inject({
        url: `/api/documents/${randomUUID()}`,
        headers: bearer(owner.token),
      });
      expectError(unknown, 404, "not_found");
    });
  });

  describe("charsets", () => {
    const raw = (contentType: string, body: Buffer | string) =>
      t.app.inject({
        method: "POST",
        url: "/api/auth/signup",
        headers: { "content-type": contentType },
        payload: body,
      });
    const json = () =>
      JSON.stringify({ email: uniqueEmail(), password: "long enough pw", companyName: "Acmé" });

    it.each([
      "application/json; charset=utf-16",
      "application/json; charset=UTF-16LE",
      "application/json;charset=iso-8859-1",
      'application/json; charset="latin1"',
    ])("refuses %s with 415", async (contentType) => {
      const res = await raw(contentType, Buffer.from(json(), "utf16le"));
      expectError(res, 415, "request.unsupported_media_type");
    });

    it.each([
      "application/json",
      "application/json; charset=utf-8",
      "application/json; charset=UTF-8",
      'application/json; charset="utf-8"',
    ])("accepts %s", async (contentType) => {
      const res = await raw(contentType, json());
      expect(res.statusCode, res.body).toBe(201);
      expect(res.json().tenant.name).toBe("Acmé");
    });
  });

  describe("control characters", () => {
    const CONTROLS = ["\u0001", "\u0008", "\u000b", "\u000c", "\u001b", "\u001f", "\u007f"];

    it.each(CONTROLS.map((c) => [`U+${c.charCodeAt(0).toString(16).padStart(4, "0")}`, c]))(
      "refuses %s in titles, metadata values, names and knowledge fields",
      async (_label, c) => {
        for (const [url, payload, path] of [
          ["/api/ingest/document", doc({ title: `Hours${c}` }), "title"],
          ["/api/ingest/document", doc({ metadata: { lang: `e${c}n` } }), "metadata.lang"],
          ["/api/ingest/url", { url: "https://example.test/", title: `a${c}` }, "title"],
          ["/api/knowledge/faqs", { question: `Q${c}?`, answer: "A." }, "question"],
        ] as const) {
          expectBadText(await post(url, payload), "body", path);
        }
        const profile = await t.app.inject({
          method: "PUT",
          url: "/api/customers/profile",
          headers: bearer(owner.token),
          payload: { companyName: `Acme${c}` },
        });
        expectBadText(profile, "body", "companyName");
        const key = await t.app.inject({
          method: "POST",
          url: "/api/customers/api-key",
          headers: bearer(owner.token),
          payload: { name: `n8n${c}` },
        });
        expectBadText(key, "body", "name");
      },
    );

    it("allows tab, newline and CR there, and control characters in document content", async () => {
      const titled = await post("/api/ingest/document", doc({ title: "Line one\r\n\tLine two" }));
      expect(titled.statusCode, titled.body).toBe(202);
      const faq = await post("/api/knowledge/faqs", { question: "Q?", answer: "One\nTwo\tThree" });
      expect(faq.statusCode, faq.body).toBe(202);
      const content = await post(
        "/api/ingest/document",
        doc({ content: "Page one\u000cPage two \u001b[1m" }),
      );
      expect(content.statusCode, content.body).toBe(202);
    });
  });
});
