import { randomBytes } from "node:crypto";
import type { AppContext } from "../../src/context.js";
import type { TenantContext } from "../../src/tenancy.js";
import { benchContext } from "./backends.js";
import { type Summary, summarize } from "./report.js";

/**
 * A tenant made through the tenants service, on the enterprise plan so that no plan ceiling
 * refuses a call: the benchmarks built on this measure recording, never refusing.
 */
export async function newEnterpriseTenant(app: AppContext): Promise<TenantContext> {
  const tenant = await app.db.transaction((tx) =>
    app.tenants.create(tx, { name: `bench-${randomBytes(3).toString("hex")}` }),
  );
  await app.db.query("update tenants set plan_id = 'enterprise' where id = $1", [tenant.id]);
  return benchContext(tenant.id);
}

/**
 * Times `a` (the baseline) and `b` one call at a time, in alternating blocks of `block` calls
 * after a warm-up of `warmup` calls each, so that drift of a noisy machine falls on both
 * alike. `i` counts every call of the run, warm-up included, for callers that need unique ids.
 */
export async function compareAlternating(
  ops: number,
  a: (i: number) => Promise<unknown>,
  b: (i: number) => Promise<unknown>,
  opts: { block?: number; warmup?: number } = {},
): Promise<{ a: Summary; b: Summary }> {
  const block = opts.block ?? 50;
  const sa: number[] = [];
  const sb: number[] = [];
  let i = 0;
  const run = async (fn: (i: number) => Promise<unknown>, n: number, into: number[] | null) => {
    for (let k = 0; k < n; k += 1) {
      i += 1;
      const t0 = performance.now();
      await fn(i);
      into?.push(performance.now() - t0);
    }
  };
  await run(a, opts.warmup ?? 20, null);
  await run(b, opts.warmup ?? 20, null);
  for (let done = 0; done < ops; done += block) {
    const n = Math.min(block, ops - done);
    await run(a, n, sa);
    await run(b, n, sb);
  }
  return { a: summarize(sa), b: summarize(sb) };
}
