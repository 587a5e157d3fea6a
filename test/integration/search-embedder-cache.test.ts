import { randomBytes } from "node:crypto";
import pino from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type AppContext, createContext } from "../../src/context.js";
import { createTestClock } from "../../src/platform/clock.js";
import type { Db } from "../../src/platform/db/index.js";
import {
  bearer,
  GENEROUS_RATE_LIMITS,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { apiKeyContext } from "../fixtures/contexts.js";
import { backends } from "../fixtures/db.js";
import { type FakeOpenAI, startFakeOpenAI } from "../fixtures/fake-openai.js";

const PLATFORM_KEY = `sk-platform-${randomBytes(8).toString("hex")}`;

/** The same database for a second process; closing that process leaves it open. */
function shared(db: Db): Db {
  return new Proxy(db, {
    get(target, key) {
      if (key === "close") return async () => {};
      const value = Reflect.get(target, key);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/**
 * The tenant's embedding settings are cached for searches (tenants service,
 * `embeddingSettings`): a configuration change must still decide the embedder of the next
 * search in the process that made it, and within the cache's TTL in every other process.
 */
describe.each(backends)("search embeds with the tenant's current settings ($name)", (backend) => {
  const clock = createTestClock(Date.now());
  let fake: FakeOpenAI;
  let a: TestApp;
  let other: AppContext;

  beforeAll(async () => {
    fake = await startFakeOpenAI({ keys: [PLATFORM_KEY] });
    a = await startApp(
      backend,
      { OPENAI_BASE_URL: fake.url, OPENAI_API_KEY: PLATFORM_KEY },
      { clock },
    );
    // A second API process of the same deployment: same settings, same database and storage.
    other = await createContext(a.ctx.config, {
      db: shared(a.ctx.db),
      logger: pino({ level: "silent" }),
      migrations: "skip",
      clock,
      tenantRateLimits: GENEROUS_RATE_LIMITS,
    });
  });
  afterAll(async () => {
    await other?.close();
    await a?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  const queriesSeen = () => fake.requests.flatMap((r) => r.inputs);

  async function searchHttp(s: SignedUp, query: string) {
    const res = await a.app.inject({
      method: "POST",
      url: "/api/search",
      headers: bearer(s.token),
      payload: { query, mode: "hybrid" },
    });
    expect(res.statusCode, res.body).toBe(200);
  }

  async function setProvider(s: SignedUp, embeddingProvider: "local" | "openai") {
    const res = await a.app.inject({
      method: "PUT",
      url: "/api/customers/config",
      headers: bearer(s.token),
      payload: { embeddingProvider },
    });
    expect(res.statusCode, res.body).toBe(200);
  }

  it("the next search after a configuration change uses the new embedder", async () => {
    const s = await signup(a.app);
    await searchHttp(s, "before the change");
    await searchHttp(s, "before the change");
    expect(queriesSeen()).toEqual([]);

    await setProvider(s, "openai");
    await searchHttp(s, "after the change");
    expect(queriesSeen()).toEqual(["after the change"]);

    await setProvider(s, "local");
    await searchHttp(s, "back to local");
    expect(queriesSeen()).toEqual(["after the change"]);
  });

  it("another process sees the change once its cache entry is older than the TTL (5 s)", async () => {
    const s = await signup(a.app);
    const ctx = apiKeyContext(s.tenantId);
    const searchOther = (query: string) =>
      other.search.search(ctx, { query, mode: "vector", limit: 5 });
    await searchOther("cached as local");
    expect(queriesSeen()).toEqual([]);

    await setProvider(s, "openai");
    await searchHttp(s, "here at once");
    expect(queriesSeen()).toEqual(["here at once"]);

    // The other process read the settings less than the TTL ago: still the local embedder.
    clock.advance(4_000);
    await searchOther("there, still local");
    expect(queriesSeen()).toEqual(["here at once"]);

    clock.advance(1_000);
    await searchOther("there after the TTL");
    expect(queriesSeen()).toEqual(["here at once", "there after the TTL"]);
  });
});
