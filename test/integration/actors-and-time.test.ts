import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestClock } from "../../src/platform/clock.js";
import { bearer, expectError, signup, startApp, type TestApp } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { settle } from "../fixtures/ingest.js";

const ACCESS_TTL_S = 600;
const REFRESH_TTL_S = 7200;

describe.each(backends)("actors and time ($name)", (backend) => {
  let t: TestApp;
  const clock = createTestClock(Date.now());
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(line, _enc, done) {
      logs.push(JSON.parse(String(line)));
      done();
    },
  });

  beforeAll(async () => {
    t = await startApp(
      backend,
      {
        ACCESS_TOKEN_TTL_SECONDS: String(ACCESS_TTL_S),
        REFRESH_TOKEN_TTL_SECONDS: String(REFRESH_TTL_S),
      },
      { workers: true, clock, logger: pino({ level: "info" }, sink) },
    );
  });
  afterAll(() => t.close());

  const profile = (token: string) =>
    t.app.inject({ url: "/api/customers/profile", headers: bearer(token) });
  const refresh = (refreshToken: string) =>
    t.app.inject({ method: "POST", url: "/api/auth/refresh", payload: { refreshToken } });

  it("an access token dies when its lifetime has passed on the clock, not before", async () => {
    const s = await signup(t.app);
    clock.advance((ACCESS_TTL_S - 1) * 1000);
    expect((await profile(s.token)).statusCode).toBe(200);
    clock.advance(2000);
    expectError(await profile(s.token), 401, "auth.token_expired");
    // The session outlives it: a refresh gives a token that works at the new time.
    const renewed = await refresh(s.refreshToken);
    expect(renewed.statusCode, renewed.body).toBe(200);
    expect((await profile(renewed.json().token)).statusCode).toBe(200);
  });

  it("a refresh token dies with its session when the session's lifetime has passed", async () => {
    const s = await signup(t.app);
    clock.advance(REFRESH_TTL_S * 1000 + 1000);
    expectError(await refresh(s.refreshToken), 401, "auth.refresh_token_invalid");
  });

  it("an access token stops with its session when the session's lifetime has passed on the clock", async () => {
    const s = await signup(t.app);
    clock.advance((REFRESH_TTL_S - 100) * 1000);
    const renewed = await refresh(s.refreshToken);
    expect(renewed.statusCode, renewed.body).toBe(200);
    expect((await profile(renewed.json().token)).statusCode).toBe(200);
    // The new access token has most of its lifetime left, but its session ends now.
    clock.advance(200 * 1000);
    expectError(await profile(renewed.json().token), 401, "auth.session_revoked");
  });

  it("a job acts as the system, for the API key whose request queued it", async () => {
    const s = await signup(t.app);
    const me = await t.app.inject({ url: "/api/auth/me", headers: { "x-api-key": s.apiKey } });
    const keyId = me.json().apiKey.id as string;
    const res = await t.app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: { "x-api-key": s.apiKey, "x-request-id": "ingest-by-key" },
      payload: { title: "Hours", content: "Open every day from nine to five." },
    });
    expect(res.statusCode, res.body).toBe(202);
    const { documentId, jobId } = res.json();
    expect((await settle(t.app, s.token, documentId)).status).toBe("completed");
    const line = logs.find(
      (l) => l.msg === "document version ingested" && l.documentId === documentId,
    );
    expect(line?.actor).toEqual({
      kind: "system",
      job: { id: jobId, name: "ingest.process" },
      causedBy: { actor: { kind: "api_key", keyId }, requestId: "ingest-by-key" },
    });
  });
});
