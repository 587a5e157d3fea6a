import pino from "pino";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  catalogHandlers,
  defineJobs,
  registryOf,
  typeOptionsOf,
} from "../../src/platform/queue/catalog.js";
import { createJobMetrics } from "../../src/platform/queue/metrics.js";
import { NonRetryableError } from "../../src/platform/queue/queue.js";

const types = {
  "a.run": { schema: z.object({ tenantId: z.uuid() }), maxAttempts: 5, backoff: { baseMs: 10 } },
  "b.sweep": { schema: z.object({ tenantId: z.null() }) },
};
const logger = pino({ level: "silent" });
const ctx = (attempt: number, maxAttempts = 3) => ({
  id: "00000000-0000-4000-8000-000000000001",
  payload: { tenantId: null },
  attempt,
  maxAttempts,
  signal: new AbortController().signal,
});

describe("job catalog", () => {
  it("merges the types into a registry and the queue's per-type options", () => {
    expect(Object.keys(registryOf(types))).toEqual(["a.run", "b.sweep"]);
    expect(typeOptionsOf(types)).toEqual({
      "a.run": { maxAttempts: 5, backoffBaseMs: 10 },
      "b.sweep": {},
    });
  });

  it("wraps every handler once: outcomes, retries and duration per job name", async () => {
    const metrics = createJobMetrics();
    let calls = 0;
    const jobs = defineJobs(types, {
      "a.run": async () => {
        calls++;
        if (calls === 1) throw new Error("transient");
        if (calls === 3) throw new NonRetryableError("bad input");
      },
      "b.sweep": async () => {},
    });
    const handlers = catalogHandlers(registryOf(types), jobs, { logger, metrics });
    await expect(handlers["a.run"](ctx(1) as never)).rejects.toThrow("transient");
    await handlers["a.run"](ctx(2) as never);
    await expect(handlers["a.run"](ctx(1) as never)).rejects.toThrow(NonRetryableError);
    await handlers["b.sweep"](ctx(1) as never);
    const snap = metrics.snapshot();
    expect(snap["a.run"]?.outcomes).toEqual({
      completed: 1,
      retried: 1,
      failed: 1,
      interrupted: 0,
    });
    expect(snap["a.run"]?.retries).toBe(1);
    expect(snap["b.sweep"]?.outcomes.completed).toBe(1);
    expect(snap["a.run"]?.durationMsTotal).toBeGreaterThanOrEqual(0);
  });

  it("refuses a job with two handlers, one not registered, or a registered job without one", () => {
    const metrics = createJobMetrics();
    const jobs = defineJobs(types, { "a.run": async () => {}, "b.sweep": async () => {} });
    const registry = registryOf(types);
    expect(() => catalogHandlers(registry, [...jobs, ...jobs], { logger, metrics })).toThrow(
      /two handlers/,
    );
    expect(() => catalogHandlers(registry, jobs.slice(0, 1), { logger, metrics })).toThrow(
      /no handler.*b\.sweep/,
    );
    expect(() =>
      catalogHandlers(registryOf({ "a.run": types["a.run"] }), jobs, { logger, metrics }),
    ).toThrow(/not registered/);
  });
});
