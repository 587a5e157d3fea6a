import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { type AppContext, createContext } from "../../src/context.js";
import { buildApp } from "../../src/http/app.js";
import { bearer, type SignedUp, signup } from "../fixtures/app.js";
import { userContext } from "../fixtures/contexts.js";

/**
 * Embedded mode keeps everything under DATA_DIR: the PGlite files and the secrets. Stopping the
 * process and starting it again on the same directory must lose nothing: accounts, sessions
 * (the JWT secret) and encrypted tenant keys (the master key).
 */
interface Running {
  ctx: AppContext;
  app: FastifyInstance;
  close(): Promise<void>;
}

/** Starts the app as `tenantrag serve` does in embedded mode: on-disk PGlite, no db passed in. */
async function start(dataDir: string): Promise<Running> {
  const ctx = await createContext(loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: "silent" }));
  const app = await buildApp(ctx);
  await app.ready();
  return {
    ctx,
    app,
    async close() {
      await app.close();
      await ctx.close();
    },
  };
}

const PROVIDER_KEY = "sk-test-persisted-0123456789";

describe("embedded data survives a restart", () => {
  let dataDir: string;
  let running: Running | undefined;
  let owner: SignedUp;

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), "tenantrag-persist-"));
    // First start: initdb of a new data directory takes seconds.
    running = await start(dataDir);
    owner = await signup(running.app, { companyName: "Persisted Ltd" });
    const put = await running.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(owner.token),
      payload: { providerApiKey: PROVIDER_KEY, chunkSize: 1500 },
    });
    expect(put.statusCode, put.body).toBe(200);
    await running.close();
    running = undefined;
    running = await start(dataDir);
  }, 120_000);

  afterAll(async () => {
    await running?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("logs in with the same credentials", async () => {
    const app = running?.app as FastifyInstance;
    const res = await app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: owner.email, password: owner.password },
    });
    expect(res.statusCode, res.body).toBe(200);
    const me = await app.inject({ url: "/api/auth/me", headers: bearer(res.json().token) });
    expect(me.json().user.email).toBe(owner.email);
  });

  it("still accepts the access token issued before the restart", async () => {
    const app = running?.app as FastifyInstance;
    const me = await app.inject({ url: "/api/auth/me", headers: bearer(owner.token) });
    expect(me.statusCode, me.body).toBe(200);
    expect(me.json().tenant).toMatchObject({ id: owner.tenantId, name: "Persisted Ltd" });
  });

  it("still accepts the refresh token and the API key issued before the restart", async () => {
    const app = running?.app as FastifyInstance;
    const refreshed = await app.inject({
      method: "POST",
      url: "/api/auth/refresh",
      payload: { refreshToken: owner.refreshToken },
    });
    expect(refreshed.statusCode, refreshed.body).toBe(200);
    const byKey = await app.inject({ url: "/api/auth/me", headers: { "x-api-key": owner.apiKey } });
    expect(byKey.statusCode, byKey.body).toBe(200);
    expect(byKey.json().tenant.id).toBe(owner.tenantId);
  });

  it("keeps the tenant's settings and can still decrypt its provider key", async () => {
    const { app, ctx } = running as Running;
    const config = await app.inject({ url: "/api/customers/config", headers: bearer(owner.token) });
    expect(config.statusCode, config.body).toBe(200);
    expect(config.json()).toMatchObject({
      chunkSize: 1500,
      providerApiKey: { set: true, last4: PROVIDER_KEY.slice(-4) },
    });
    const key = await ctx.tenants.providerApiKey(userContext(owner.tenantId, owner.userId));
    expect(key).toBe(PROVIDER_KEY);
  });
});
