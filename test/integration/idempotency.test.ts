import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppError } from "../../src/errors.js";
import { statusFor } from "../../src/http/errors.js";
import {
  createIdempotency,
  type WithIdempotency,
} from "../../src/modules/ingestion/idempotency.js";
import type { TenantContext } from "../../src/tenancy.js";
import { apiKeyContext } from "../fixtures/contexts.js";
import { allBackends, type TestDb } from "../fixtures/db.js";
import { rejectionOf } from "../fixtures/errors.js";
import { createTenant, gate } from "../fixtures/queue.js";

// The Idempotency-Key store on both databases; the HTTP side is in ingestion.test.ts.

const appError = (p: Promise<unknown>) => rejectionOf(p, AppError);

describe.each(allBackends)("Idempotency-Key store: $backend.name", ({ backend, skip }) => {
  describe.skipIf(skip)(backend.name, () => {
    let t: TestDb;
    let withIdempotency: WithIdempotency;
    let ctx: TenantContext;
    beforeAll(async () => {
      t = await backend.open();
      withIdempotency = createIdempotency(t.db);
      const tenantId = await createTenant(t.db);
      ctx = apiKeyContext(tenantId);
    });
    afterAll(() => t?.dispose());

    it("a retry that arrives while the first request runs gets 409, not a second run", async () => {
      const key = randomUUID();
      const held = gate();
      let runs = 0;
      const first = withIdempotency(ctx, key, "document", { a: 1 }, async () => {
        runs++;
        await held.opened;
        return { status: 202, body: { documentId: "d1" } };
      });
      // Let the first claim the key.
      await new Promise((r) => setTimeout(r, 50));
      const during = await appError(
        withIdempotency(ctx, key, "document", { a: 1 }, async () => {
          runs++;
          return { status: 202, body: { documentId: "d2" } };
        }),
      );
      expect(during.code).toBe("idempotency.in_progress");
      expect(statusFor(during.code)).toBe(409);
      expect(during.headers).toEqual({ "retry-after": "1" });
      // Another body under the running key is refused as reuse, not as "in progress".
      const reuse = await appError(
        withIdempotency(ctx, key, "document", { a: 2 }, async () => ({ status: 202, body: {} })),
      );
      expect(reuse.code).toBe("idempotency.key_reused");
      held.open();
      expect(await first).toEqual({ status: 202, body: { documentId: "d1" } });
      const after = await withIdempotency(ctx, key, "document", { a: 1 }, async () => {
        runs++;
        return { status: 202, body: { documentId: "d3" } };
      });
      expect(after).toEqual({ status: 202, body: { documentId: "d1" } });
      expect(runs).toBe(1);
    });

    it("many concurrent requests with one key run once and all others wait or replay", async () => {
      const key = randomUUID();
      let runs = 0;
      const outcomes = await Promise.allSettled(
        Array.from({ length: 8 }, () =>
          withIdempotency(ctx, key, "batch", { n: 8 }, async () => {
            runs++;
            await new Promise((r) => setTimeout(r, 20));
            return { status: 202, body: { run: runs } };
          }),
        ),
      );
      expect(runs).toBe(1);
      for (const o of outcomes) {
        if (o.status === "fulfilled") expect(o.value).toEqual({ status: 202, body: { run: 1 } });
        else expect((o.reason as AppError).code).toBe("idempotency.in_progress");
      }
      expect(outcomes.some((o) => o.status === "fulfilled")).toBe(true);
    });

    it("a failed request drops its claim, so a retry runs afresh", async () => {
      const key = randomUUID();
      const boom = new AppError("validation.failed", "bad");
      await expect(
        withIdempotency(ctx, key, "url", { u: 1 }, async () => Promise.reject(boom)),
      ).rejects.toBe(boom);
      const retried = await withIdempotency(ctx, key, "url", { u: 1 }, async () => ({
        status: 202,
        body: { ok: true },
      }));
      expect(retried).toEqual({ status: 202, body: { ok: true } });
    });

    it("takes over the claim of a request whose process died, once the claim has run out", async () => {
      const key = randomUUID();
      const claim = (seconds: number) =>
        t.db.query(
          `insert into idempotency_keys (tenant_id, key, route, request_hash, claimed_until)
           select $1, $2, 'document', request_hash, now() + make_interval(secs => $3)
           from (select encode(sha256(convert_to($4, 'utf8')), 'hex') as request_hash) h`,
          [ctx.tenantId, key, seconds, JSON.stringify({ a: 1 })],
        );
      await claim(60);
      const fresh = await appError(
        withIdempotency(ctx, key, "document", { a: 1 }, async () => ({ status: 202, body: {} })),
      );
      expect(fresh.code).toBe("idempotency.in_progress");
      await t.db.query("delete from idempotency_keys where key = $1", [key]);
      await claim(-1);
      const taken = await withIdempotency(ctx, key, "document", { a: 1 }, async () => ({
        status: 202,
        body: { again: true },
      }));
      expect(taken).toEqual({ status: 202, body: { again: true } });
      // A different request never takes over someone else's key.
      const other = randomUUID();
      await t.db.query(
        `insert into idempotency_keys (tenant_id, key, route, request_hash, claimed_until)
         values ($1, $2, 'document', 'x', now() - interval '1 second')`,
        [ctx.tenantId, other],
      );
      const reuse = await appError(
        withIdempotency(ctx, other, "document", { a: 1 }, async () => ({ status: 202, body: {} })),
      );
      expect(reuse.code).toBe("idempotency.key_reused");
    });

    it("a claim lasts as long as its request: short, and renewed while the request runs", async () => {
      const key = randomUUID();
      const short = createIdempotency(t.db, { claimSeconds: 1 });
      const held = gate();
      const first = short(ctx, key, "document", { b: 1 }, async () => {
        await held.opened;
        return { status: 202, body: { first: true } };
      });
      // Three leases later the request still runs, and still holds its key.
      await new Promise((r) => setTimeout(r, 3_000));
      const during = await appError(
        short(ctx, key, "document", { b: 1 }, async () => ({ status: 202, body: {} })),
      );
      expect(during.code).toBe("idempotency.in_progress");
      held.open();
      expect(await first).toEqual({ status: 202, body: { first: true } });

      // The default lease is short enough that a dead process's claim blocks a retry briefly.
      const other = randomUUID();
      const running = gate();
      const pending = withIdempotency(ctx, other, "document", { b: 2 }, async () => {
        await running.opened;
        return { status: 202, body: {} };
      });
      await new Promise((r) => setTimeout(r, 50));
      const [row] = await t.db.query<{ s: number }>(
        `select extract(epoch from claimed_until - now())::float8 as s from idempotency_keys
         where tenant_id = $1 and key = $2`,
        [ctx.tenantId, other],
      );
      expect(row?.s).toBeGreaterThan(0);
      expect(row?.s).toBeLessThanOrEqual(30);
      running.open();
      await pending;
    });

    it("keeps tenants' keys apart", async () => {
      const key = randomUUID();
      const otherTenant = await createTenant(t.db);
      const other = apiKeyContext(otherTenant);
      await withIdempotency(ctx, key, "document", { a: 1 }, async () => ({ status: 202, body: 1 }));
      const theirs = await withIdempotency(other, key, "document", { a: 1 }, async () => ({
        status: 202,
        body: 2,
      }));
      expect(theirs.body).toBe(2);
    });
  });
});
