import { randomUUID } from "node:crypto";
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestClock } from "../../src/platform/clock.js";
import {
  apiKeyWithScopes,
  bearer,
  expectError,
  platformAdminToken,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";

const METRICS_TOKEN = "scrape-token-0123456789abcdef";

/** A GET on a connection of its own; resolves with the status once the body has arrived. */
function getOnce(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

interface CallRow {
  route: string;
  route_group: string;
  method: string;
  status: number;
  error_code: string | null;
  actor_type: string;
  actor_id: string | null;
  request_id: string;
  bytes_in: number;
  bytes_out: number;
  latency_ms: number;
  occurred_at: Date;
}

/** Sums a counter's series whose labels match. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

describe.each(backends)("API-call telemetry over HTTP ($name)", (backend) => {
  let t: TestApp;
  const clock = createTestClock(Date.now());
  beforeAll(async () => {
    t = await startApp(
      backend,
      { TELEMETRY_FLUSH_INTERVAL_MS: "20", LOGIN_MAX_FAILURES: "2", METRICS_TOKEN },
      { clock },
    );
  });
  afterAll(() => t.close());

  /** The tenant's recorded calls. Read from the table: no API lists raw calls (roll-ups do). */
  async function callsOf(tenantId: string): Promise<CallRow[]> {
    await t.ctx.telemetry.flush();
    return t.ctx.db.query<CallRow>(
      `select route, route_group, method, status, error_code, actor_type, actor_id, request_id,
              bytes_in, bytes_out, latency_ms, occurred_at
         from api_calls where tenant_id = $1 order by occurred_at, request_id`,
      [tenantId],
    );
  }
  const metricsText = async () => {
    const res = await t.app.inject({
      method: "GET",
      url: "/metrics",
      headers: bearer(METRICS_TOKEN),
    });
    expect(res.statusCode).toBe(200);
    return res.body;
  };

  it("records a tenant's calls: route pattern, group, actor, status, bytes, request id, time", async () => {
    const s = await signup(t.app);
    const at = clock.now();
    const created = await t.app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: { ...bearer(s.apiKey), "x-request-id": `req-${randomUUID()}` },
      payload: { title: "Telemetry", content: "hello telemetry" },
    });
    expect(created.statusCode, created.body).toBe(202);
    const id = created.json().documentId;
    const read = await t.app.inject({
      method: "GET",
      url: `/api/documents/${id}?probe=${randomUUID()}`,
      headers: bearer(s.token),
    });
    expect(read.statusCode).toBe(200);
    const calls = (await callsOf(s.tenantId)).filter((c) => c.route !== "/api/customers/api-key");
    expect(calls).toHaveLength(2);
    const post = calls.find((c) => c.method === "POST") as CallRow;
    const get = calls.find((c) => c.method === "GET") as CallRow;
    expect(post).toMatchObject({
      route: "/api/ingest/document",
      route_group: "ingest",
      method: "POST",
      status: 202,
      error_code: null,
      actor_type: "api_key",
      request_id: created.headers["x-request-id"],
    });
    expect(post.bytes_in).toBe(
      Buffer.byteLength(JSON.stringify({ title: "Telemetry", content: "hello telemetry" })),
    );
    expect(post.bytes_out).toBe(Buffer.byteLength(created.body));
    expect(post.occurred_at.getTime()).toBe(at);
    expect(get).toMatchObject({
      route: "/api/documents/:id",
      route_group: "management",
      status: 200,
      actor_type: "user",
      actor_id: s.userId,
    });
    expect(get.latency_ms).toBeGreaterThan(0);
  });

  it("records errors with the error body's code and never the raw URL", async () => {
    const s = await signup(t.app);
    const missing = randomUUID();
    const secret = `q-${randomUUID()}`;
    expectError(
      await t.app.inject({
        method: "GET",
        url: `/api/documents/${missing}?secret=${secret}`,
        headers: bearer(s.apiKey),
      }),
      404,
      "not_found",
    );
    expectError(
      await t.app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: bearer(s.apiKey),
        payload: { title: 42 },
      }),
      400,
      "validation.failed",
    );
    const calls = await callsOf(s.tenantId);
    const notFound = calls.find((c) => c.status === 404);
    expect(notFound).toMatchObject({ route: "/api/documents/:id", error_code: "not_found" });
    expect(calls.find((c) => c.status === 400)).toMatchObject({ error_code: "validation.failed" });
    const stored = JSON.stringify(calls);
    expect(stored).not.toContain(missing);
    expect(stored).not.toContain(secret);
  });

  it("attributes 401s and 403s to the tenant their credential names", async () => {
    const s = await signup(t.app);
    // Replacing the key revokes the signup key.
    const narrow = await apiKeyWithScopes(t.app, s, ["read"]);
    expectError(
      await t.app.inject({ method: "GET", url: "/api/documents", headers: bearer(s.apiKey) }),
      401,
      "auth.invalid_api_key",
    );
    expectError(
      await t.app.inject({
        method: "POST",
        url: "/api/ingest/document",
        headers: { "x-api-key": narrow },
        payload: { title: "x", content: "y" },
      }),
      403,
      "auth.scope_required",
    );
    const calls = await callsOf(s.tenantId);
    expect(calls.find((c) => c.error_code === "auth.invalid_api_key")).toMatchObject({
      status: 401,
      actor_type: "api_key",
      route: "/api/documents",
    });
    expect(calls.find((c) => c.error_code === "auth.scope_required")).toMatchObject({
      status: 403,
      actor_type: "api_key",
    });
  });

  it("attributes a call with an expired (but genuine) access token to its tenant", async () => {
    const s = await signup(t.app);
    clock.advance(2 * 86_400_000);
    expectError(
      await t.app.inject({ method: "GET", url: "/api/auth/me", headers: bearer(s.token) }),
      401,
      "auth.token_expired",
    );
    const calls = await callsOf(s.tenantId);
    expect(calls.find((c) => c.error_code === "auth.token_expired")).toMatchObject({
      status: 401,
      route: "/api/auth/me",
      actor_type: "user",
      actor_id: s.userId,
    });
  });

  it("calls without a tenant count in the process metrics only", async () => {
    const before = await metricsText();
    const total = (text: string, group: string, cls: string) =>
      sample(text, "tenantrag_http_requests_total", { route_group: group, status_class: cls });
    const [rowsBefore] = await t.ctx.db.query<{ n: number }>(
      "select count(*)::int as n from api_calls",
    );
    expectError(
      await t.app.inject({ method: "GET", url: "/api/documents" }),
      401,
      "auth.unauthenticated",
    );
    expectError(
      await t.app.inject({
        method: "GET",
        url: "/api/documents",
        headers: bearer("forged.jwt.token"),
      }),
      401,
      "auth.invalid_token",
    );
    expectError(
      await t.app.inject({ method: "GET", url: `/nowhere/${randomUUID()}` }),
      404,
      "route.not_found",
    );
    // The login throttle's 429: a login names no tenant until it succeeds.
    const s = await signup(t.app);
    const logins = await Promise.all(
      Array.from({ length: 5 }, () =>
        t.app.inject({
          method: "POST",
          url: "/api/auth/login",
          payload: { email: s.email, password: "wrong!" },
        }),
      ),
    );
    const refused = logins.filter((r) => r.statusCode === 429).length;
    expect(refused).toBe(3);
    await t.ctx.telemetry.flush();
    const after = await metricsText();
    expect(total(after, "management", "4xx") - total(before, "management", "4xx")).toBe(2);
    expect(total(after, "system", "4xx") - total(before, "system", "4xx")).toBe(1);
    expect(total(after, "auth", "4xx") - total(before, "auth", "4xx")).toBe(5);
    const [rowsAfter] = await t.ctx.db.query<{ n: number }>(
      "select count(*)::int as n from api_calls",
    );
    // Only the signup's own tenant could have rows: it made no authenticated call.
    expect(rowsAfter?.n).toBe(rowsBefore?.n);
    expect(after).toContain("tenantrag_http_request_duration_seconds_bucket");
  });

  describe("GET /metrics", () => {
    it("refuses callers without credentials (401) and tenants (403)", async () => {
      const s = await signup(t.app);
      expectError(
        await t.app.inject({ method: "GET", url: "/metrics" }),
        401,
        "auth.unauthenticated",
      );
      expectError(
        await t.app.inject({ method: "GET", url: "/metrics", headers: bearer(s.token) }),
        403,
        "auth.platform_admin_required",
      );
      expectError(
        await t.app.inject({ method: "GET", url: "/metrics", headers: bearer(s.apiKey) }),
        403,
        "auth.platform_admin_required",
      );
      expectError(
        await t.app.inject({
          method: "GET",
          url: "/metrics",
          headers: bearer(`${METRICS_TOKEN}x`),
        }),
        401,
        "auth.invalid_token",
      );
    });

    it("answers platform admins and the METRICS_TOKEN bearer in the Prometheus text format", async () => {
      // A fresh login: the test clock has moved past older tokens' expiry.
      for (const token of [await platformAdminToken(t), METRICS_TOKEN]) {
        const res = await t.app.inject({ method: "GET", url: "/metrics", headers: bearer(token) });
        expect(res.statusCode).toBe(200);
        expect(res.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
        expect(res.body).toContain("# TYPE tenantrag_http_requests_total counter");
        expect(res.body).toContain("# TYPE tenantrag_telemetry_dropped_total counter");
        expect(res.body).toContain("# TYPE tenantrag_telemetry_flush_duration_seconds histogram");
        expect(res.body).toContain("# TYPE tenantrag_job_runs_total counter");
      }
    });
  });
});

describe.each(backends)("graceful shutdown under load ($name)", (backend) => {
  it("loses no call: 2 000 concurrent requests, closed mid-load, give as many rows as responses", {
    timeout: 120_000,
  }, async () => {
    const t = await startApp(backend, {
      TELEMETRY_BATCH_SIZE: "100",
      TELEMETRY_FLUSH_INTERVAL_MS: "1000",
    });
    let closed = false;
    try {
      const s = await signup(t.app);
      let answered = 0;
      let closing: Promise<void> | undefined;
      const requests = Array.from({ length: 2000 }, (_, i) =>
        t.app
          .inject({
            method: "GET",
            url: i % 2 ? "/api/auth/me" : "/api/customers/config",
            headers: bearer(s.apiKey),
          })
          .then((res) => {
            answered += 1;
            // Close once a quarter has answered: the rest are in flight or not yet started.
            if (answered === 500) closing = t.app.close();
            return res;
          }),
      );
      const settled = await Promise.allSettled(requests);
      await closing;
      await t.ctx.telemetry.close();
      closed = true;
      const responses = settled.filter((r) => r.status === "fulfilled").length;
      expect(responses).toBeGreaterThanOrEqual(500);
      const [row] = await t.ctx.db.query<{ n: number; ids: number }>(
        "select count(*)::int as n, count(distinct request_id)::int as ids from api_calls where tenant_id = $1",
        [s.tenantId],
      );
      expect(row).toEqual({ n: responses, ids: responses });
    } finally {
      if (!closed) await t.ctx.telemetry.close();
      await t.close();
    }
  });

  it("loses no call on a real server closed mid-load: rows = responses the clients received", {
    timeout: 120_000,
  }, async () => {
    const t = await startApp(backend, {
      TELEMETRY_BATCH_SIZE: "50",
      TELEMETRY_FLUSH_INTERVAL_MS: "1000",
    });
    let closed = false;
    try {
      const s = await signup(t.app);
      const address = await t.app.listen({ port: 0, host: "127.0.0.1" });
      let answered = 0;
      let closing: Promise<void> | undefined;
      const statuses: number[] = [];
      const requests = Array.from({ length: 600 }, () =>
        // One connection per request (no keep-alive), so that close waits for no idle socket.
        getOnce(`${address}/api/auth/me`, bearer(s.apiKey)).then((status) => {
          statuses.push(status);
          answered += 1;
          if (answered === 150) closing = t.app.close();
        }),
      );
      await Promise.allSettled(requests);
      await closing;
      await t.ctx.telemetry.close();
      closed = true;
      // Fastify answers requests that arrive on an open connection once closing has begun with
      // 503 before any hook runs (no tenant resolved, nothing recorded); every other response is a row.
      const recorded = statuses.filter((st) => st !== 503).length;
      expect(recorded).toBeGreaterThanOrEqual(150);
      const [row] = await t.ctx.db.query<{ n: number }>(
        "select count(*)::int as n from api_calls where tenant_id = $1 and route = '/api/auth/me'",
        [s.tenantId],
      );
      expect(row?.n).toBe(recorded);
    } finally {
      if (!closed) await t.ctx.telemetry.close();
      await t.close();
    }
  });
});
