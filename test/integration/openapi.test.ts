import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearer, signup, startApp, type TestApp } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { walkRoutes } from "../fixtures/isolation.js";
import {
  createOpenApiChecker,
  deref,
  type OpenApiDocument,
  openapiDocument,
  operationsOf,
} from "../fixtures/openapi.js";

/**
 * The OpenAPI document describes the API as it answers. (Every response of the integration
 * suite is also checked against it, by startApp; see test/fixtures/openapi.ts.)
 */
describe.each(backends)("the OpenAPI document ($name)", (backend) => {
  let t: TestApp;
  let doc: OpenApiDocument;
  beforeAll(async () => {
    t = await startApp(backend);
    doc = await openapiDocument(t.app);
  });
  afterAll(() => t.close());

  const fastifyPath = (path: string) => path.replace(/\{(\w+)\}/g, ":$1");

  it("lists every route the application serves, and no other", () => {
    const documented = operationsOf(doc).map((op) => `${op.method} ${fastifyPath(op.path)}`);
    const served = walkRoutes(t.app).map((r) => r.key);
    expect(documented.sort()).toEqual(served.sort());
  });

  it("documents 204 without a body where the API answers 204, and no 200 there", async () => {
    const empties = operationsOf(doc).filter(
      (op) => op.method === "DELETE" || op.path === "/api/auth/logout",
    );
    expect(empties.length).toBeGreaterThan(4);
    for (const op of empties) {
      const r = op.operation.responses;
      expect(Object.keys(r), `${op.method} ${op.path}`).not.toContain("200");
      expect(deref(doc, r["204"]), `${op.method} ${op.path}`).toEqual({
        description: "No content",
      });
    }
    const owner = await signup(t.app);
    const res = await t.app.inject({
      method: "POST",
      url: "/api/auth/logout",
      headers: bearer(owner.token),
    });
    expect(res.statusCode).toBe(204);
  });

  it("documents the one error shape for 4xx and 5xx on every operation", async () => {
    for (const op of operationsOf(doc)) {
      for (const range of ["4XX", "5XX"]) {
        expect(op.operation.responses[range], `${op.method} ${op.path} ${range}`).toEqual({
          $ref: "#/components/responses/Error",
        });
      }
    }
    const checker = createOpenApiChecker(doc);
    const res = await t.app.inject({ method: "GET", url: "/api/auth/me" });
    expect(res.statusCode).toBe(401);
    expect(checker.isErrorBody(res.json())).toBe(true);
    expect(checker.isErrorBody({ error: { code: "auth.unauthenticated" } })).toBe(false);
    expect(checker.isErrorBody({ message: "Unauthorized", statusCode: 401 })).toBe(false);
  });

  it("asks for no credentials on public routes, and for a token or an API key elsewhere", () => {
    expect(doc as unknown as { security: unknown }).toMatchObject({
      security: [{ bearer: [] }, { apiKey: [] }],
    });
    const publicOps = new Set(
      walkRoutes(t.app)
        .filter((r) => r.auth === "public")
        .map((r) => r.key),
    );
    expect(publicOps).toEqual(
      new Set([
        "GET /healthz",
        "GET /readyz",
        "POST /api/auth/signup",
        "POST /api/auth/login",
        "POST /api/auth/refresh",
        "GET /api/audit/public-key",
      ]),
    );
    for (const op of operationsOf(doc)) {
      const key = `${op.method} ${fastifyPath(op.path)}`;
      if (publicOps.has(key)) expect(op.operation.security, key).toEqual([]);
      else expect(op.operation.security, key).toBeUndefined();
    }
  });

  it("documents the file upload as a multipart form, and a form built from it is accepted", async () => {
    const op = doc.paths["/api/ingest/file"]?.post;
    const schema = op?.requestBody?.content["multipart/form-data"]?.schema as {
      properties: Record<string, { type: string; format?: string }>;
      required: string[];
    };
    expect(schema.required).toEqual(["file"]);
    expect(schema.properties.file).toMatchObject({ type: "string", format: "binary" });

    // What the API explorer sends: each documented field as a part, the file last.
    const owner = await signup(t.app);
    const boundary = "----openapi-form";
    const values: Record<string, string> = { title: "Terrace", docType: "txt" };
    const parts = Object.keys(schema.properties)
      .filter((name) => name in values)
      .map(
        (name) =>
          `--${boundary}\r\ncontent-disposition: form-data; name="${name}"\r\n\r\n${values[name]}\r\n`,
      );
    const body =
      `${parts.join("")}--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="terrace.txt"\r\n` +
      `content-type: text/plain\r\n\r\nDogs are welcome on the terrace.\r\n--${boundary}--\r\n`;
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/file",
      headers: {
        ...bearer(owner.token),
        "content-type": `multipart/form-data; boundary=${boundary}`,
      },
      payload: body,
    });
    expect(res.statusCode, res.body).toBe(202);
  });

  describe("the conformance check itself", () => {
    const respond = (over: Partial<LightMyRequestResponse>) =>
      ({ statusCode: 200, headers: {}, body: "", ...over }) as LightMyRequestResponse;

    it("flags an undocumented status, as the old document's 200 for logout", () => {
      const old = structuredClone(doc);
      const logout = old.paths["/api/auth/logout"]?.post;
      if (!logout) throw new Error("no logout in the document");
      delete logout.responses["204"];
      logout.responses["200"] = { description: "Default Response" };
      const problem = createOpenApiChecker(old).problem(
        "POST",
        "/api/auth/logout",
        respond({ statusCode: 204 }),
      );
      expect(problem).toMatch(/status 204 is not documented/);
    });

    it("flags a body its schema refuses and an error outside the shape", () => {
      const checker = createOpenApiChecker(doc);
      const json = { "content-type": "application/json; charset=utf-8" };
      expect(
        checker.problem("GET", "/healthz", respond({ headers: json, body: '{"status":"up"}' })),
      ).toMatch(/does not match the 200 schema/);
      expect(
        checker.problem(
          "GET",
          "/api/documents/7d0b5c7e-6a70-4c3e-9a8e-1d2c3b4a5f60?x=1",
          respond({ statusCode: 404, headers: json, body: '{"message":"Not Found"}' }),
        ),
      ).toMatch(/does not match the 4XX schema/);
      expect(
        checker.problem("GET", "/no/such/route", respond({ headers: json, body: "{}" })),
      ).toMatch(/does not list/);
      expect(
        checker.problem("GET", "/healthz", respond({ headers: json, body: '{"status":"ok"}' })),
      ).toBeUndefined();
    });
  });
});
