import { randomBytes, randomUUID } from "node:crypto";
import type { InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../fixtures/app.js";
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
import {
  type Case,
  createFuzzHarness,
  type Expect,
  type FuzzHarness,
  JSON_TYPE,
} from "../fixtures/fuzz-harness.js";
import { uncheckedInject } from "../fixtures/openapi.js";

/**
 * Bad input on every operation of the OpenAPI document: NULs and lone surrogates in every
 * string field and query parameter, wrong types, bad and other tenants' ids, missing, invalid
 * and ambiguous credentials, wrong content types and charsets, malformed JSON, wrong methods
 * and bad percent-encoding. Every answer must be a 4xx in the one error shape (and, where the
 * class says, a given status or code); failures are reported together, per class and route.
 */

const NUL = "a\u0000b";
const SURROGATE = "a\ud800b";
/** Baselines that cannot answer 2xx here, and why. */
const BASELINE_NOT_2XX: Record<string, string> = {
  "GET /api/ingest/presigned-url": "local blob storage signs no upload URLs (409)",
  "POST /api/ingest/uploads/{id}/complete":
    "the upload's file is checked against its size (409/422)",
  "POST /api/admin/usage/rerate":
    "the generated window starts and ends at the same instant, which is refused (400 usage.invalid_window)",
};

const backend = backends[0];
if (!backend) throw new Error("no test backend");

describe(`bad input derived from the OpenAPI document (${backend.name})`, () => {
  let t: TestApp;
  let h: FuzzHarness;

  beforeAll(async () => {
    t = await startApp(backend, { ALLOW_PRIVATE_URLS: "true" });
    h = await createFuzzHarness(t);
  }, 120_000);
  afterAll(() => t.close());

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
    const queue = [...h.ops];
    const worker = async () => {
      for (let op = queue.shift(); op; op = queue.shift()) await h.setup(op);
    };
    await Promise.all([worker(), worker(), worker()]);
    for (const op of h.ops) {
      const s = await h.setup(op);
      const res = await uncheckedInject(t.app)(h.request(s));
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
    await h.sweep("text", (s) => {
      const schema = h.jsonSchemaOf(s.op);
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
              req: h.request(s, withBody(setAt(base, slot, v))),
              expect: invalid,
            });
          }
        }
        for (const slot of recordSlots(variant)) {
          cases.push({
            what: `a NUL in a key of body.${label(slot)}`,
            req: h.request(s, withBody(setAt(base, [...slot, "k\u0000ey"], "v"))),
            expect: invalid,
          });
        }
      }
      const form = h.formSchemaOf(s.op);
      for (const field of form ? fieldsOf(form) : []) {
        if (field.schema.format === "binary") continue;
        const mp = multipartBody(
          { [String(field.path[0])]: NUL },
          { name: "file", filename: "fuzz.txt", content: "Fuzz text." },
        );
        cases.push({
          what: `form field ${label(field.path)} with a NUL`,
          req: h.request(s, { payload: mp.payload, headers: { "content-type": mp.contentType } }),
          expect: invalid,
        });
      }
      for (const p of h.queryParams(s.op)) {
        const rest = new URLSearchParams(s.query);
        rest.delete(p.name);
        const at = (raw: string) =>
          `${h.urlOf(s, s.params, {})}?${rest.size ? `${rest}&` : ""}${p.name}=${raw}`;
        cases.push({
          what: `query ${p.name} with a NUL`,
          req: h.request(s, { url: at("a%00b") }),
          expect: invalid,
        });
        cases.push({
          what: `query ${p.name} with an encoded surrogate (not UTF-8)`,
          req: h.request(s, { url: at("a%ED%A0%80b") }),
          expect: { mayAccept: true },
        });
      }
      return cases;
    });
  });

  it("refuses wrong types in every field and parameter, and bodies that are not objects", {
    timeout: 180_000,
  }, async () => {
    await h.sweep("types", (s) => {
      const schema = h.jsonSchemaOf(s.op);
      const cases: Case[] = [];
      if (schema) {
        for (const variant of variantsOf(schema)) {
          const base = variantsOf(schema).length === 1 && s.body ? s.body : validValue(variant);
          for (const f of fieldsOf(variant)) {
            cases.push({
              what: `body.${label(f.path)} as ${JSON.stringify(wrongTypeFor(f.schema))}`,
              req: h.request(s, withBody(setAt(base, f.path, wrongTypeFor(f.schema)))),
              expect: invalid,
            });
          }
        }
        for (const whole of [[], "x", 42, true]) {
          cases.push({
            what: `a body of ${JSON.stringify(whole)}`,
            req: h.request(s, withBody(whole)),
            expect: invalid,
          });
        }
      }
      for (const p of h.queryParams(s.op)) {
        const rest = new URLSearchParams(s.query);
        rest.delete(p.name);
        const numeric = p.schema?.type === "integer" || p.schema?.type === "number";
        const bad = numeric ? [`${p.name}=abc`, `${p.name}=1.5e400`] : [];
        bad.push(`${p.name}=x&${p.name}=y`);
        for (const q of bad) {
          cases.push({
            what: `query ${q}`,
            req: h.request(s, {
              url: `${h.urlOf(s, s.params, {})}?${rest.size ? `${rest}&` : ""}${q}`,
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
    await h.sweep("json", (s) =>
      h.jsonSchemaOf(s.op)
        ? malformed.map(([what, payload, expect]) => ({
            what,
            req: h.request(s, { payload, headers: JSON_TYPE }),
            expect,
          }))
        : [],
    );
  });

  it("refuses content types and charsets the operation does not take", {
    timeout: 180_000,
  }, async () => {
    await h.sweep("content-type", (s) => {
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
        .filter(([type]) => !(h.formSchemaOf(s.op) && type.startsWith("multipart")))
        .map(([type, expect]) => ({
          what: `content-type ${type}`,
          req: h.request(s, { payload: json, headers: { "content-type": type } }),
          expect,
        }));
      if (h.formSchemaOf(s.op)) {
        cases.push({
          what: "JSON instead of a multipart form",
          req: h.request(s, { payload: json, headers: JSON_TYPE }),
          expect: { status: 415 },
        });
        cases.push({
          what: "a multipart body cut off before its end",
          req: h.request(s, {
            payload:
              '------fuzz-boundary\r\ncontent-disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhal',
            headers: { "content-type": "multipart/form-data; boundary=----fuzz-boundary" },
          }),
          expect: { status: [400, 415] },
        });
      } else {
        cases.push({
          what: "a body without a content type",
          req: h.request(s, {
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
    await h.sweep("credentials", (s) => {
      if (h.isPublic(s.op)) return [];
      const token = s.auth === "platform_admin" ? h.adminToken : s.a.token;
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
          { authorization: `Bearer ${token}`, "x-api-key": h.b.apiKey },
        ],
        [
          "two Authorization headers",
          { authorization: [`Bearer ${token}`, `Bearer ${h.b.token}`] },
        ],
        [
          "two X-API-Key headers",
          { authorization: undefined as unknown as string, "x-api-key": [s.a.apiKey, h.b.apiKey] },
        ],
      ];
      return creds.map(([what, headers]) => {
        const req = h.request(s);
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
    await h.sweep("ids", (s) => {
      const names = [...s.op.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1] as string);
      const cases: Case[] = [];
      for (const name of names) {
        for (const v of bad) {
          cases.push({
            what: `${name}=${v.length > 40 ? `${v.slice(0, 12)}…(${v.length})` : v}`,
            req: h.request(s, { url: h.urlOf(s, { ...s.params, [name]: v }) }),
          });
        }
      }
      if (names.length > 0 && s.otherParams) {
        cases.push({
          what: "another tenant's id",
          req: h.request(s, { url: h.urlOf(s, s.otherParams) }),
          expect: { status: [403, 404] },
        });
      }
      return cases;
    });
  });

  it("answers 405 with Allow to a method a path does not have", async () => {
    const methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    const byPath = new Map<string, string[]>();
    for (const op of h.ops) byPath.set(op.path, [...(byPath.get(op.path) ?? []), op.method]);
    await h.sweep("methods", (s) => {
      const documented = byPath.get(s.op.path) ?? [];
      // One operation per path sends the wrong methods.
      if (documented[0] !== s.op.method) return [];
      return methods
        .filter((m) => !documented.includes(m))
        .map((m) => ({
          what: `${m} instead of ${documented.join("/")}`,
          req: h.request(s, {
            method: m as InjectOptions["method"],
            payload: m === "GET" ? undefined : "{}",
            headers: JSON_TYPE,
          }),
          expect: { status: 405, allow: documented },
        }));
    });
  });

  it("refuses bad percent-encoding in the path", { timeout: 180_000 }, async () => {
    await h.sweep("percent-encoding", (s) => {
      const names = [...s.op.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1] as string);
      const bad = ["%zz", "%E0%A4%A", "%C0%AF", "%"];
      if (names.length === 0) {
        return bad.map((v) => ({
          what: `the path ending in ${v}`,
          req: h.request(s, { url: `${s.op.path}${v}` }),
        }));
      }
      return bad.map((v) => ({
        what: `${names[0]}=${v}`,
        req: h.request(s, { url: h.urlOf(s, { ...s.params, [names[0] as string]: v }) }),
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
        "encoded slashes and .. under /docs/static",
        { method: "GET", url: "/docs/static/..%2f..%2fpackage.json" },
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
      const why = h.judge(res, e);
      if (why)
        failures.push(
          `${what}: ${req.method} ${req.url} → ${res.statusCode}: ${why}; ${res.body.slice(0, 160)}`,
        );
    }
    expect(failures, failures.join("\n")).toEqual([]);
  });
});
