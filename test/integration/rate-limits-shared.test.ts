import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import pg from "pg";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { type AppContext, createContext } from "../../src/context.js";
import { buildApp } from "../../src/http/app.js";
import { generateSigningKeyPem } from "../../src/platform/crypto/signing.js";
import { bearer, dropQueueKeys, expectError, signup } from "../fixtures/app.js";
import { TEST_DATABASE_URL, TEST_REDIS_URL } from "../fixtures/db.js";

const rand = () => randomBytes(5).toString("hex");

/**
 * Two API processes behind a load balancer, as server mode deploys them: two contexts, each
 * with its own database pool and its own Redis connection, sharing PostgreSQL and Redis only.
 * A tenant's limit is one budget across both.
 */
describe.skipIf(!TEST_DATABASE_URL || !TEST_REDIS_URL)(
  "rate limits across two API processes",
  () => {
    const database = `tr_rl_${rand()}`;
    const queuePrefix = `tenantrag-test-${rand()}`;
    const dirs: string[] = [];
    let admin: pg.Client;
    const contexts: AppContext[] = [];
    const apps: FastifyInstance[] = [];

    beforeAll(async () => {
      admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await admin.connect();
      await admin.query(`create database ${database}`);
      const url = new URL(TEST_DATABASE_URL as string);
      url.pathname = `/${database}`;
      const shared = {
        DATABASE_URL: url.toString(),
        REDIS_URL: TEST_REDIS_URL as string,
        QUEUE_PREFIX: queuePrefix,
        JWT_SECRET: randomBytes(32).toString("hex"),
        MASTER_KEY: randomBytes(32).toString("hex"),
        AUDIT_SIGNING_KEY: generateSigningKeyPem(),
        LOG_LEVEL: "silent",
      };
      for (const migrations of ["auto", "check"] as const) {
        const dir = mkdtempSync(path.join(tmpdir(), "tenantrag-rl-"));
        dirs.push(dir);
        const ctx = await createContext(loadConfig({ ...shared, DATA_DIR: dir }), {
          logger: pino({ level: "silent" }),
          migrations,
        });
        contexts.push(ctx);
        const app = await buildApp(ctx);
        await app.ready();
        apps.push(app);
      }
    });

    afterAll(async () => {
      for (const app of apps) await app.close();
      for (const ctx of contexts) await ctx.close();
      await dropQueueKeys(TEST_REDIS_URL as string, queuePrefix);
      await admin?.query(`drop database if exists ${database} with (force)`);
      await admin?.end();
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    });

    it("of 60 concurrent searches spread over both processes, exactly the limit of 7 pass", async () => {
      const [a, b] = apps as [FastifyInstance, FastifyInstance];
      const s = await signup(a);
      const put = await a.inject({
        method: "PUT",
        url: "/api/customers/config",
        headers: bearer(s.token),
        payload: { rateLimitPerMinute: 7 },
      });
      expect(put.statusCode, put.body).toBe(200);
      const all = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          (i % 2 === 0 ? a : b).inject({
            method: "POST",
            url: "/api/search",
            headers: bearer(s.token),
            payload: { query: "opening hours" },
          }),
        ),
      );
      const ok = all.filter((r) => r.statusCode === 200);
      expect(ok).toHaveLength(7);
      // Each count was seen once, whichever process served it.
      expect(ok.map((r) => r.headers.ratelimit).sort()).toEqual(
        [0, 1, 2, 3, 4, 5, 6].map((n) => expect.stringContaining(`;r=${n};`)),
      );
      for (const r of all.filter((x) => x.statusCode !== 200)) {
        expectError(r, 429, "rate_limit.exceeded");
        expect(Number(r.headers["retry-after"])).toBeGreaterThan(0);
      }
      // The status route of either process reads the same shared windows.
      for (const app of apps) {
        const status = await app.inject({
          url: "/api/metrics/rate-limits",
          headers: bearer(s.token),
        });
        const search = status.json().groups.find((g: { group: string }) => g.group === "search");
        expect(search.windows[0]).toMatchObject({ limit: 7, used: 7, remaining: 0 });
      }
    });
  },
);
