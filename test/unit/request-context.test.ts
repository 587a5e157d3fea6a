import { randomUUID } from "node:crypto";
import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import {
  createAuthHook,
  platformContext,
  routedRequest,
  tenantContext,
} from "../../src/http/auth-hook.js";
import { errorHandler } from "../../src/http/error-handler.js";
import { ingestionJobTypes } from "../../src/modules/ingestion/ingestion.jobs.js";
import {
  causeOf,
  jobContext,
  type Principal,
  type TenantContext,
  USER_AGENT_MAX_CHARS,
} from "../../src/tenancy.js";

const tenantId = randomUUID();
const user: Principal = {
  kind: "user",
  userId: randomUUID(),
  tenantId,
  role: "member",
  sessionId: randomUUID(),
};
const apiKey: Principal = {
  kind: "api_key",
  keyId: randomUUID(),
  tenantId,
  role: "admin",
  scopes: ["ingest", "read"],
};
const admin: Principal = { kind: "platform_admin", userId: randomUUID(), sessionId: randomUUID() };

/**
 * The auth hook over a fake credential check, in a Fastify app configured as http/app.ts does
 * it: `trustProxy` is TRUST_PROXY as parsed by config.ts.
 */
async function appFor(principal: Principal, opts: { trustProxy?: boolean } = {}) {
  const app = Fastify({ trustProxy: opts.trustProxy ?? false });
  app.decorateRequest("principal", undefined);
  app.decorateRequest("requestMeta", undefined);
  app.setErrorHandler(errorHandler);
  app.addHook("onRequest", createAuthHook({ authenticate: async () => principal }));
  app.get("/tenant", { config: { scope: "read" } }, async (req) => ({
    ctx: tenantContext(req),
    id: req.id,
  }));
  app.get("/admin", { config: { auth: "platform_admin" } }, async (req) => platformContext(req));
  app.get("/public", { config: { auth: "public" } }, async (req) => routedRequest(req));
  await app.ready();
  return app;
}

describe("the context the auth hook builds", () => {
  const peer = "203.0.113.9";
  const forwarded = { "x-forwarded-for": "198.51.100.7, 10.0.0.1" };

  it("takes the peer's address and ignores X-Forwarded-For without TRUST_PROXY", async () => {
    const app = await appFor(user);
    const res = await app.inject({ url: "/tenant", remoteAddress: peer, headers: forwarded });
    expect(res.json().ctx.request.ip).toBe(peer);
  });

  it("takes the client address X-Forwarded-For reports with TRUST_PROXY", async () => {
    const app = await appFor(user, { trustProxy: true });
    const res = await app.inject({ url: "/tenant", remoteAddress: peer, headers: forwarded });
    expect(res.json().ctx.request.ip).toBe("198.51.100.7");
  });

  it("carries the request id and the user agent, cut to a bound, or null without one", async () => {
    const app = await appFor(user);
    const res = await app.inject({ url: "/tenant", headers: { "user-agent": "n8n/1.0" } });
    const { ctx, id } = res.json();
    expect(ctx.request).toMatchObject({ id, userAgent: "n8n/1.0" });
    const long = await app.inject({ url: "/tenant", headers: { "user-agent": "x".repeat(2000) } });
    expect(long.json().ctx.request.userAgent).toBe("x".repeat(USER_AGENT_MAX_CHARS));
    const none = await app.inject({ url: "/tenant", headers: { "user-agent": "" } });
    expect(none.json().ctx.request.userAgent).toBeNull();
  });

  it("acts as the user, with role and session, for the user's tenant", async () => {
    const res = await (await appFor(user)).inject({ url: "/tenant" });
    expect(res.json().ctx).toMatchObject({ tenantId, actor: user });
  });

  it("acts as the API key, with its scopes, for the key's tenant", async () => {
    const res = await (await appFor(apiKey)).inject({ url: "/tenant" });
    expect(res.json().ctx).toMatchObject({ tenantId, actor: apiKey });
  });

  it("gives a platform admin a platform context, never a tenant one", async () => {
    const app = await appFor(admin);
    const res = await app.inject({ url: "/admin", remoteAddress: peer });
    expect(res.json()).toMatchObject({ actor: admin, request: { ip: peer } });
    expect((await app.inject({ url: "/tenant" })).json().error.code).toBe("auth.tenant_required");
  });

  it("describes the request on public routes too, where nobody is authenticated", async () => {
    const app = await appFor(user);
    const res = await app.inject({
      url: "/public",
      remoteAddress: peer,
      headers: { "user-agent": "curl/8.5" },
    });
    expect(res.json()).toMatchObject({ ip: peer, userAgent: "curl/8.5" });
  });
});

describe("the context of a job", () => {
  const request = { id: "req-42", ip: "198.51.100.7", userAgent: "n8n/1.0" };
  const job = { id: randomUUID(), name: "ingest.process" };

  it("acts as the system, with the job, for the actor whose request caused it", () => {
    const byKey: TenantContext = { tenantId, actor: apiKey, request };
    const cause = causeOf(byKey);
    // By id only: what authorized the request (role, scopes) is not the job's to reuse.
    expect(cause).toEqual({
      actor: { kind: "api_key", keyId: (apiKey as { keyId: string }).keyId },
      requestId: "req-42",
    });
    const ctx = jobContext({ tenantId, job, causedBy: cause });
    expect(ctx).toEqual({
      tenantId,
      actor: { kind: "system", job, causedBy: cause },
      request: null,
    });
    // A job that enqueues another passes the first cause on.
    expect(causeOf(ctx)).toEqual(cause);
  });

  it("names a user or a widget visitor by id when they cause one", () => {
    const byUser = causeOf({ tenantId, actor: user, request });
    expect(byUser?.actor).toEqual({ kind: "user", userId: (user as { userId: string }).userId });
    const visitorId = randomUUID();
    const byVisitor = causeOf({
      tenantId,
      actor: { kind: "widget_visitor", visitorId, tenantId },
      request,
    });
    expect(byVisitor?.actor).toEqual({ kind: "widget_visitor", visitorId });
  });

  it("has no cause when nobody asked for it", () => {
    const ctx = jobContext({ tenantId, job, causedBy: null });
    expect(ctx.actor).toEqual({ kind: "system", job, causedBy: null });
    expect(causeOf(ctx)).toBeNull();
  });

  it("reads the cause from the payload, which older jobs do not carry", () => {
    const schema = ingestionJobTypes["ingest.process"].schema;
    const payload = { tenantId, documentId: randomUUID(), version: 1 };
    expect(schema.parse(payload).causedBy).toBeUndefined();
    const causedBy = { actor: { kind: "user", userId: randomUUID() }, requestId: null };
    expect(schema.parse({ ...payload, causedBy }).causedBy).toEqual(causedBy);
    expect(
      schema.safeParse({ ...payload, causedBy: { actor: { kind: "worker" }, requestId: null } })
        .success,
    ).toBe(false);
  });
});
