import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TenantLock } from "../../src/platform/vectors/index.js";
import { deferred, lockCases } from "../fixtures/vectors.js";

describe.each(lockCases)("TenantLock: $name", (lc) => {
  describe.skipIf(lc.skip)(lc.name, () => {
    let locks: TenantLock[];
    let dispose: () => Promise<void>;
    beforeAll(async () => {
      ({ locks, dispose } = await lc.open(2));
    });
    afterAll(() => dispose?.());

    it("lets one holder at a time run for a tenant, across holders, in order", async () => {
      const [a, b] = locks as [TenantLock, TenantLock];
      const tenant = randomUUID();
      const events: string[] = [];
      const release = deferred();
      const entered = deferred();
      const first = a.withLock(tenant, async () => {
        events.push("first in");
        entered.resolve();
        await release.promise;
        events.push("first out");
        return 1;
      });
      await entered.promise;
      const second = b.withLock(tenant, async () => {
        events.push("second in");
        return 2;
      });
      // Give the second every chance to enter too early.
      await new Promise((r) => setTimeout(r, 50));
      expect(events).toEqual(["first in"]);
      release.resolve();
      expect(await Promise.all([first, second])).toEqual([1, 2]);
      expect(events).toEqual(["first in", "first out", "second in"]);
    });

    it("releases the lock when fn throws, and re-throws its error", async () => {
      const [a, b] = locks as [TenantLock, TenantLock];
      const tenant = randomUUID();
      const boom = new Error("boom");
      await expect(a.withLock(tenant, async () => Promise.reject(boom))).rejects.toBe(boom);
      await expect(b.withLock(tenant, async () => "next")).resolves.toBe("next");
    });

    it.skipIf(!lc.parallelTenants)("lets different tenants proceed in parallel", async () => {
      const [a, b] = locks as [TenantLock, TenantLock];
      const release = deferred();
      const entered = deferred();
      const holder = a.withLock(randomUUID(), async () => {
        entered.resolve();
        await release.promise;
      });
      await entered.promise;
      // Would hang (and time out) if tenant B waited for tenant A.
      await expect(b.withLock(randomUUID(), async () => "other tenant")).resolves.toBe(
        "other tenant",
      );
      release.resolve();
      await holder;
    });
  });
});
