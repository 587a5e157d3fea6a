import { describe, expect, it } from "vitest";
import { createLruPool } from "./cache.js";

interface Res {
  key: string;
  serial: number;
  closed: boolean;
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function pool(
  max: number,
  opts: { failOpen?: Set<string>; idleMs?: number; now?: () => number } = {},
) {
  let serial = 0;
  const opened: Res[] = [];
  const p = createLruPool<Res>({
    max,
    idleMs: opts.idleMs ?? 60_000,
    ...(opts.now ? { now: opts.now } : {}),
    async open(key) {
      if (opts.failOpen?.has(key)) throw new Error(`cannot open ${key}`);
      const r = { key, serial: ++serial, closed: false };
      opened.push(r);
      return r;
    },
    close(r) {
      r.closed = true;
    },
    onCloseError() {},
  });
  const live = () => opened.filter((r) => !r.closed).map((r) => r.key);
  return { p, opened, live };
}

describe("LRU pool of open resources", () => {
  it("evicts the least recently used and never hands out a closed resource", async () => {
    const { p, live } = pool(2);
    const seen: Res[] = [];
    for (const key of ["a", "b", "a", "c", "a", "b"]) {
      await p.use(key, async (r) => {
        expect(r.closed).toBe(false);
        seen.push(r);
      });
    }
    // c pushed out b (a was used more recently); b came back and pushed out c.
    expect(live().sort()).toEqual(["a", "b"]);
    expect(seen.filter((r) => r.key === "a").map((r) => r.serial)).toEqual([1, 1, 1]);
    expect(new Set(seen.filter((r) => r.key === "b").map((r) => r.serial)).size).toBe(2);
    await p.close();
  });

  it("closes an evicted resource only once its current user is done", async () => {
    const { p, live } = pool(1);
    const release = deferred();
    const entered = deferred();
    let sawClosed: boolean | undefined;
    const long = p.use("a", async (r) => {
      entered.resolve();
      await release.promise;
      sawClosed = r.closed;
    });
    await entered.promise;
    await p.use("b", async () => {}); // evicts a, which is busy
    expect(live()).toContain("a");
    release.resolve();
    await long;
    expect(sawClosed).toBe(false);
    expect(live()).toEqual(["b"]);
    await p.close();
  });

  it("does not cache a failed open: the next use tries again", async () => {
    const failOpen = new Set(["a"]);
    const { p } = pool(2, { failOpen });
    await expect(p.use("a", async () => 1)).rejects.toThrow(/cannot open a/);
    failOpen.clear();
    await expect(p.use("a", async (r) => r.key)).resolves.toBe("a");
    await p.close();
  });

  it("closes idle resources when swept, by the injected clock", async () => {
    let clock = 0;
    const { p, live } = pool(5, { idleMs: 100, now: () => clock });
    await p.use("a", async () => {});
    clock = 50;
    await p.use("b", async () => {});
    clock = 120;
    p.sweep();
    expect(live()).toEqual(["b"]);
    await p.close();
  });

  it("close waits for running users, closes everything, then refuses new work", async () => {
    const { p, live } = pool(3);
    const release = deferred();
    const entered = deferred();
    const running = p.use("a", async () => {
      entered.resolve();
      await release.promise;
      return "finished";
    });
    await entered.promise;
    await p.use("b", async () => {});
    const closing = p.close();
    release.resolve();
    await closing;
    await expect(running).resolves.toBe("finished");
    expect(live()).toEqual([]);
    expect(p.openValues()).toEqual([]);
    await expect(p.use("c", async () => {})).rejects.toThrow(/closed/);
  });
});
