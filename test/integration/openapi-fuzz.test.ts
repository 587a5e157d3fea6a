import { randomBytes, randomUUID } from "node:crypto";
import type { InjectOptions, LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bearer,
  platformAdminToken,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import {
  fieldsOf,
  label,
  multipartBody,
  recordSlots,
  setAt,
  stringSlots,
  validValue,
  variantsOf,
  wrongTypeFor,
} from "../fixtures/fuzz.js";
import { makeKit, ROUTE_FIXTURES, walkRoutes } from "../fixtures/isolation.js";
import {
  createOpenApiChecker,
  type DocumentedOperation,
  type JsonSchema,
  type OpenApiChecker,
  openapiDocument,
  operationsOf,
  uncheckedInject,
} from "../fixtures/openapi.js";

/**
 * Bad input on every operation of the OpenAPI document: NULs and lone surrogates in every
 * string field and query parameter, wrong types, bad and other tenants' ids, missing, invalid
 * and ambiguous credentials, wrong content types and charsets, malformed JSON, wrong methods
 * and bad percent-encoding. Every answer must be a 4xx in the one error shape (and, where the
 * class says, a given status or code); failures are reported together, per class and route.
 */

interface Expect {
  status?: number | number[];
  code?: string;
  /** The documented methods of the path, which a 405 must name in Allow. */
  allow?: string[];
  /** A 2xx is fine too (the input is odd, not wrong); a 5xx or a shapeless error is not. */
  mayAccept?: boolean;
}

interface Case {
  what: string;
  req: InjectOptions;
  expect?: Expect;
}

interface Setup {
  op: DocumentedOperation;
  key: string;
  auth: string;
  a: SignedUp;
  caller: Record<string, string>;
  params: Record<string, string>;
  otherParams?: Record<string, string>;
  body?: unknown;
  query: Record<string, string>;
}

const NUL = "a\u0000b";
const SURROGATE = "a\ud800b";
const JSON_TYPE = { "content-type": "application/json" };
/** Baselines that cannot answer 2xx here, and why. */
const BASELINE_NOT_2XX: Record<string, string> = {
  "GET /api/ingest/presigned-url": "local blob storage signs no upload URLs (409)",
  "POST /api/ingest/uploads/{id}/complete":
    "the upload's file is checked against its size (409/422)",
};

const backend = backends[0];
if (!backend) throw new Error("no test backend");

describe(`bad input derived from the OpenAPI document (${backend.name})`, () => {
  let t: TestApp;
  let checker: OpenApiChecker;
  let ops: DocumentedOperation[];
  let adminToken: string;
  let b: SignedUp;
  const auth = new Map<string, string>();
  const setups = new Map<string, Promise<Setup>>();
  let ip = 0;

  beforeAll(async () => {
    t = await startApp(backend, { ALLOW_PRIVATE_URLS: "true" });
    const doc = await openapiDocument(t.app);
    checker = createOpenApiChecker(doc);
    ops = operationsOf(doc);
    for (const r of walkRoutes(t.app)) auth.set(r.key, r.auth);
    adminToken = await platformAdminToken(t);
    b = await signup(t.app, { companyName: "Tenant B" });
  }, 120_000);
  afterAll(() => t.close());

  const fastifyPath = (p: string) => p.replace(/\{(\w+)\}/g, ":$1");
  const keyOf = (op: DocumentedOperation) => `${op.method} ${fastifyPath(op.path)}`;
  const jsonSchemaOf = (op: DocumentedOperation) =>
    op.operation.requestBody?.content["application/json"]?.schema as JsonSchema | undefined;
  const formSchemaOf = (op: DocumentedOperation) =>
    op.operation.requestBody?.content["multipart/form-data"]?.schema as JsonSchema | undefined;
  const queryParams = (op: DocumentedOperation) =>
    (op.operation.parameters ?? []).filter((p) => p.in === "query");
  const isPublic = (op: DocumentedOperation) =>
    Array.isArray(op.operation.security) && op.operation.security.length === 0;

  /** A tenant of its own per operation (some calls revoke or delete what they act on). */
  function setup(op: DocumentedOperation): Promise<Setup> {
    const key = keyOf(op);
    let s = setups.get(key);
    if (!s) {
      s = (async () => {
        const mode = auth.get(key) ?? "tenant";
        const a = await signup(t.app);
        const fixture = ROUTE_FIXTURES[key];
        const mine = fixture ? await fixture(makeKit(t.app, a)) : undefined;
        const theirs =
          fixture && mode !== "platform_admin" ? await fixture(makeKit(t.app, b)) : undefined;
        const schema = jsonSchemaOf(op);
        const overrides: Record<string, unknown> = {
          "POST /api/auth/login": { email: a.email, password: a.password },
          "POST /api/auth/refresh": { refreshToken: a.refreshToken },
        };
        const query = Object.fromEntries(
          queryParams(op)
            .filter((p) => p.required)
            .map((p) => [p.name, String(validValue(p.schema ?? {}, p.name))]),
        );
        return {
          op,
          key,
          auth: mode,
          a,
          caller: mode === "public" ? {} : bearer(mode === "platform_admin" ? adminToken : a.token),
          params: mine?.params ?? {},
          otherParams: theirs?.params,
          body: mine?.body ?? overrides[key] ?? (schema ? validValue(schema) : undefined),
          query: { ...query, ...(mine?.query ?? {}) },
        };
      })();
      setups.set(key, s);
    }
    return s;
  }

  const urlOf = (s: Setup, params = s.params, query = s.query) => {
    const path = s.op.path.replace(
      /\{(\w+)\}/g,
      (_, n: string) => params[n] ?? encodeURIComponent(randomUUID()),
    );
    const qs = new URLSearchParams(query).toString();
    return qs ? `${path}?${qs}` : path;
  };

  /** A valid request of the operation, with `over` applied. */
  function request(s: Setup, over: Partial<InjectOptions> = {}): InjectOptions {
    const form = formSchemaOf(s.op);
    let payload: InjectOptions["payload"];
    let type: Record<string, string> = {};
    if (form) {
      const mp = multipartBody({}, { name: "file", filename: "fuzz.txt", content: "Fuzz text." });
      payload = mp.payload;
      type = { "content-type": mp.contentType };
    } else if (s.body !== undefined) {
      payload = JSON.stringify(s.body);
      type = JSON_TYPE;
    }
    return {
      method: s.op.method as InjectOptions["method"],
      url: urlOf(s),
      payload,
      ...over,
      headers: { ...s.caller, ...type, ...(over.headers ?? {}) },
    };
  }

  /** Sends each case and returns what was wrong with the answers, one line each. */
  async function run(s: Setup, cases: Case[], klass: string): Promise<string[]> {
    const failures: string[] = [];
    for (const c of cases) {
      ip += 1;
      const remoteAddress = `10.${(ip >> 16) & 255}.${(ip >> 8) & 255}.${ip & 255}`;
      const res = await uncheckedInject(t.app)({ remoteAddress, ...c.req });
      const why = judge(res, c.expect ?? {});
      if (why) {
        failures.push(
          `[${klass}] ${s.op.method} ${s.op.path} — ${c.what} → ${res.statusCode}: ${why}; ${res.body.slice(0, 160).replace(/\s+/g, " ")}`,
        );
      }
    }
    return failures;
  }

  function judge(res: LightMyRequestResponse, e: Expect): string | undefined {
    if (res.statusCode >= 500) return "a server error";
    if (res.statusCode < 400) return e.mayAccept ? undefined : "accepted";
    let body: { error?: { code?: string } } | undefined;
    try {
      body = JSON.parse(res.body);
    } catch {
      return "an error whose body is not JSON";
    }
    if (!checker.isErrorBody(body)) return "outside the error shape";
    const statuses = e.status === undefined ? [] : [e.status].flat();
    if (statuses.length > 0 && !statuses.includes(res.statusCode)) {
      return `expected ${statuses.join(" or ")}`;
    }
    if (e.code && body?.error?.code !== e.code) return `expected code ${e.code}`;
    if (e.allow) {
      const allow = String(res.headers.allow ?? "")
        .split(",")
        .map((m) => m.trim());
      const missing = e.allow.filter((m) => !allow.includes(m));
      if (missing.length > 0) return `Allow header "${res.headers.allow ?? ""}" lacks ${missing}`;
    }
    return undefined;
  }

  /** Runs `build` on every operation and fails with every failure of the class at once. */
  async function sweep(klass: string, build: (s: Setup) => Case[]) {
    const failures: string[] = [];
    let sent = 0;
    for (const op of ops) {
      const s = await setup(op);
      const cases = build(s);
      sent += cases.length;
      failures.push(...(await run(s, cases, klass)));
    }
    expect(sent, `${klass}: no requests derived`).toBeGreaterThan(0);
    expect(failures, `${failures.length} of ${sent} failed:\n${failures.join("\n")}`).toEqual([]);
  }

  const invalid = { status: 400, code: "validation.failed" };
  const withBody = (body: unknown): Partial<InjectOptions> => ({
    payload: JSON.stringify(body),
    headers: JSON_TYPE,
  });

  it("answers every operation's valid request (the baseline the classes below mutate)", {
    timeout: 300_000,
  }, async () => {
    const failures: string[] = [];
    // Tenants and fixtures for all operations, a few at a time (signing up hashes a password).
    const queue = [...ops];
    const worker = async () => {
      for (let op = queue.shift(); op; op = queue.shift()) await setup(op);
    };
    await Promise.all([worker(), worker(), worker()]);
    for (const op of ops) {
      const s = await setup(op);
      const res = await uncheckedInject(t.app)(request(s));
      const known = BASELINE_NOT_2XX[`${op.method} ${op.path}`];
      const ok = res.statusCode < 300 || (known && res.statusCode < 500);
      if (!ok)
        failures.push(`${op.method} ${op.path} → ${res.statusCode} ${res.body.slice(0, 160)}`);
    }
    expect(failures, failures.join("\n")).toEqual([]);
  });

  it("refuses NULs and lone surrogates in every string field and query parameter", {
    timeout: 180_000,
  }, async () => {
    await sweep("text", (s) => {
      const schema = jsonSchemaOf(s.op);
      const cases: Case[] = [];
      for (const variant of schema ? variantsOf(schema) : []) {
        const base = s.body && variantsOf(schema ?? {}).length === 1 ? s.body : validValue(variant);
        for (const slot of stringSlots(variant)) {
          for (const [name, v] of [
            ["NUL", NUL],
            ["lone surrogate", SURROGATE],
          ] as const) {
            cases.push({
              what: `body.${label(slot)} with a ${name}`,
              req: request(s, withBody(setAt(base, slot, v))),
              expect: invalid,
            });
          }
        }
        for (const slot of recordSlots(variant)) {
          cases.push({
            what: `a NUL in a key of body.${label(slot)}`,
            req: request(s, withBody(setAt(base, [...slot, "k\u0000ey"], "v"))),
            expect: invalid,
          });
        }
      }
      const form = formSchemaOf(s.op);
      for (const field of form ? fieldsOf(form) : []) {
        if (field.schema.format === "binary") continue;
        const mp = multipartBody(
          { [String(field.path[0])]: NUL },
          { name: "file", filename: "fuzz.txt", content: "Fuzz text." },
        );
        cases.push({
          what: `form field ${label(field.path)} with a NUL`,
          req: request(s, { payload: mp.payload, headers: { "content-type": mp.contentType } }),
          expect: invalid,
        });
      }
      for (const p of queryParams(s.op)) {
        const rest = new URLSearchParams(s.query);
        rest.delete(p.name);
        const at = (raw: string) =>
          `${urlOf(s, s.params, {})}?${rest.size ? `${rest}&` : ""}${p.name}=${raw}`;
        cases.push({
          what: `query ${p.name} with a NUL`,
          req: request(s, { url: at("a%00b") }),
          expect: invalid,
        });
        cases.push({
          what: `query ${p.name} with an encoded surrogate (not UTF-8)`,
          req: request(s, { url: at("a%ED%A0%80b") }),
          expect: { mayAccept: true },
        });
      }
      return cases;
    });
  });

  it("refuses wrong types in every field and parameter, and bodies that are not objects", {
    timeout: 180_000,
  }, async () => {
    await sweep("types", (s) => {
      const schema = jsonSchemaOf(s.op);
      const cases: Case[] = [];
      if (schema) {
        for (const variant of variantsOf(schema)) {
          const base = variantsOf(schema).length === 1 && s.body ? s.body : validValue(variant);
          for (const f of fieldsOf(variant)) {
            cases.push({
              what: `body.${label(f.path)} as ${JSON.stringify(wrongTypeFor(f.schema))}`,
              req: request(s, withBody(setAt(base, f.path, wrongTypeFor(f.schema)))),
              expect: invalid,
            });
          }
        }
        for (const whole of [[], "x", 42, true]) {
          cases.push({
            what: `a body of ${JSON.stringify(whole)}`,
            req: request(s, withBody(whole)),
            expect: invalid,
          });
        }
      }
      for (const p of queryParams(s.op)) {
        const rest = new URLSearchParams(s.query);
        rest.delete(p.name);
        const numeric = p.schema?.type === "integer" || p.schema?.type === "number";
        const bad = numeric ? [`${p.name}=abc`, `${p.name}=1.5e400`] : [];
        bad.push(`${p.name}=x&${p.name}=y`);
        for (const q of bad) {
          cases.push({
            what: `query ${q}`,
            req: request(s, {
              url: `${urlOf(s, s.params, {})}?${rest.size ? `${rest}&` : ""}${q}`,
            }),
            expect: invalid,
          });
        }
      }
      return cases;
    });
  });

  it("refuses malformed JSON", async () => {
    const malformed: [string, string | Buffer, Expect][] = [
      ["truncated JSON", '{"a": ', { status: 400, code: "request.malformed_json" }],
      ["a trailing comma", '{"a": 1,}', { status: 400, code: "request.malformed_json" }],
      ["an empty body", "", { status: 400, code: "request.malformed_json" }],
      [
        "a __proto__ key",
        '{"__proto__": {"x": 1}}',
        { status: 400, code: "request.malformed_json" },
      ],
      [
        "bytes that are not UTF-8",
        Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]),
        {},
      ],
      ["arrays nested 10 000 deep", `${"[".repeat(10_000)}${"]".repeat(10_000)}`, {}],
    ];
    await sweep("json", (s) =>
      jsonSchemaOf(s.op)
        ? malformed.map(([what, payload, expect]) => ({
            what,
            req: request(s, { payload, headers: JSON_TYPE }),
            expect,
          }))
        : [],
    );
  });

  it("refuses content types and charsets the operation does not take", {
    timeout: 180_000,
  }, async () => {
    await sweep("content-type", (s) => {
      if (!s.op.operation.requestBody) return [];
      const json = JSON.stringify(s.body ?? {});
      const types: [string, Expect][] = [
        ["text/plain", { status: 415 }],
        ["application/x-www-form-urlencoded", { status: 415 }],
        ["application/xml", { status: 415 }],
        ["application/json; charset=utf-16", { status: 415 }],
        ["application/json; charset=iso-8859-1", { status: 415 }],
        ["multipart/form-data", { status: [400, 415] }],
        ["multipart/form-data; boundary=", { status: [400, 415] }],
      ];
      const cases: Case[] = types
        .filter(([type]) => !(formSchemaOf(s.op) && type.startsWith("multipart")))
        .map(([type, expect]) => ({
          what: `content-type ${type}`,
          req: request(s, { payload: json, headers: { "content-type": type } }),
          expect,
        }));
      if (formSchemaOf(s.op)) {
        cases.push({
          what: "JSON instead of a multipart form",
          req: request(s, { payload: json, headers: JSON_TYPE }),
          expect: { status: 415 },
        });
        cases.push({
          what: "a multipart body cut off before its end",
          req: request(s, {
            payload:
              '------fuzz-boundary\r\ncontent-disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhal',
            headers: { "content-type": "multipart/form-data; boundary=----fuzz-boundary" },
          }),
          expect: { status: [400, 415] },
        });
      } else {
        cases.push({
          what: "a body without a content type",
          req: request(s, {
            payload: json,
            headers: { "content-type": undefined as unknown as string },
          }),
          expect: { status: [400, 415] },
        });
      }
      return cases;
    });
  });

  it("refuses missing, invalid and ambiguous credentials", { timeout: 180_000 }, async () => {
    await sweep("credentials", (s) => {
      if (isPublic(s.op)) return [];
      const token = s.auth === "platform_admin" ? adminToken : s.a.token;
      const creds: [string, Record<string, string | string[]>][] = [
        ["no credentials", { authorization: undefined as unknown as string }],
        ["a Bearer that is no token", { authorization: "Bearer not-a-token" }],
        [
          "an unknown API key",
          { authorization: undefined as unknown as string, "x-api-key": "trk_unknown" },
        ],
        ["Basic credentials", { authorization: "Basic dXNlcjpwYXNzd29yZA==" }],
        [
          "an invalid Bearer and a valid X-API-Key",
          { authorization: "Bearer not-a-token", "x-api-key": s.a.apiKey },
        ],
        [
          "a valid Bearer and another tenant's X-API-Key",
          { authorization: `Bearer ${token}`, "x-api-key": b.apiKey },
        ],
        ["two Authorization headers", { authorization: [`Bearer ${token}`, `Bearer ${b.token}`] }],
        [
          "two X-API-Key headers",
          { authorization: undefined as unknown as string, "x-api-key": [s.a.apiKey, b.apiKey] },
        ],
      ];
      return creds.map(([what, headers]) => {
        const req = request(s);
        const merged = { ...(req.headers as Record<string, unknown>), ...headers };
        for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
        return {
          what,
          req: { ...req, headers: merged as InjectOptions["headers"] },
          expect: { status: 401 },
        };
      });
    });
  });

  it("refuses bad ids, and other tenants' ids as not found", async () => {
    const bad = [
      "not-a-uuid",
      "1",
      `${randomUUID()}x`,
      "%00",
      "a".repeat(150),
      "..%2F..%2Fhealthz",
      randomUUID(),
    ];
    await sweep("ids", (s) => {
      const names = [...s.op.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1] as string);
      const cases: Case[] = [];
      for (const name of names) {
        for (const v of bad) {
          cases.push({
            what: `${name}=${v.length > 40 ? `${v.slice(0, 12)}…(${v.length})` : v}`,
            req: request(s, { url: urlOf(s, { ...s.params, [name]: v }) }),
          });
        }
      }
      if (names.length > 0 && s.otherParams) {
        cases.push({
          what: "another tenant's id",
          req: request(s, { url: urlOf(s, s.otherParams) }),
          expect: { status: [403, 404] },
        });
      }
      return cases;
    });
  });

  it("answers 405 with Allow to a method a path does not have", async () => {
    const methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    const byPath = new Map<string, string[]>();
    for (const op of ops) byPath.set(op.path, [...(byPath.get(op.path) ?? []), op.method]);
    await sweep("methods", (s) => {
      const documented = byPath.get(s.op.path) ?? [];
      // One operation per path sends the wrong methods.
      if (documented[0] !== s.op.method) return [];
      return methods
        .filter((m) => !documented.includes(m))
        .map((m) => ({
          what: `${m} instead of ${documented.join("/")}`,
          req: request(s, {
            method: m as InjectOptions["method"],
            payload: m === "GET" ? undefined : "{}",
            headers: JSON_TYPE,
          }),
          expect: { status: 405, allow: documented },
        }));
    });
  });

  it("refuses bad percent-encoding in the path", { timeout: 180_000 }, async () => {
    await sweep("percent-encoding", (s) => {
      const names = [...s.op.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1] as string);
      const bad = ["%zz", "%E0%A4%A", "%C0%AF", "%"];
      if (names.length === 0) {
        return bad.map((v) => ({
          what: `the path ending in ${v}`,
          req: request(s, { url: `${s.op.path}${v}` }),
        }));
      }
      return bad.map((v) => ({
        what: `${names[0]}=${v}`,
        req: request(s, { url: urlOf(s, { ...s.params, [names[0] as string]: v }) }),
      }));
    });
  });

  it("answers bad requests outside the documented operations in the error shape", async () => {
    const cases: [string, InjectOptions, Expect][] = [
      [
        "an unknown route",
        { method: "GET", url: `/api/${randomBytes(4).toString("hex")}` },
        { status: 404 },
      ],
      [
        "an encoded .. under /docs/static",
        { method: "GET", url: "/docs/static/%2e%2e/%2e%2e/package.json" },
        {},
      ],
      [
        "an encoded NUL under /docs/static",
        { method: "GET", url: "/docs/static/index.html%00" },
        {},
      ],
      ["bad percent-encoding under /docs", { method: "GET", url: "/docs/%zz" }, {}],
      [
        "POST to the document",
        { method: "POST", url: "/docs/json", payload: "{}", headers: JSON_TYPE },
        { status: [404, 405] },
      ],
    ];
    const failures: string[] = [];
    for (const [what, req, e] of cases) {
      const res = await uncheckedInject(t.app)(req);
      const why = judge(res, e);
      if (why)
        failures.push(
          `${what}: ${req.method} ${req.url} → ${res.statusCode}: ${why}; ${res.body.slice(0, 160)}`,
        );
    }
    expect(failures, failures.join("\n")).toEqual([]);
  });
});
