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

    // Not on PGlite: its one connection is busy with the reader's transaction, so lock holders
    // wait for the reader (embedded mode uses the in-process lock).
    it.skipIf(!lc.parallelTenants)(
      "shows a long reader to the tenant's lock holders while it runs, without blocking them",
      async () => {
        const [a, b] = locks as [TenantLock, TenantLock];
        const tenant = randomUUID();
        const other = randomUUID();
        const active = (lock: TenantLock, t: string) =>
          lock.withLock(t, (held) => held.longReaderActive());
        expect(await active(b, tenant)).toBe(false);
        const release = deferred();
        const entered = deferred();
        const reading = a.withLongReader(tenant, async () => {
          entered.resolve();
          await release.promise;
          return "read";
        });
        await entered.promise;
        // Another holder sees it (would time out if the reader blocked writers).
        expect(await active(b, tenant)).toBe(true);
        expect(await active(a, tenant)).toBe(true);
        // A second long reader of the same tenant is not kept waiting either.
        await expect(b.withLongReader(tenant, async () => "second")).resolves.toBe("second");
        expect(await active(b, tenant)).toBe(true);
        expect(await active(b, other)).toBe(false);
        release.resolve();
        expect(await reading).toBe("read");
        expect(await active(b, tenant)).toBe(false);
        // A failing reader stops counting too.
        const boom = new Error("boom");
        await expect(a.withLongReader(tenant, async () => Promise.reject(boom))).rejects.toBe(boom);
        expect(await active(b, tenant)).toBe(false);
      },
    );

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
