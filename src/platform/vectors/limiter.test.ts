import { describe, expect, it } from "vitest";
import { createLimiter } from "./limiter.js";

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("createLimiter", () => {
  it("runs at most max calls at once and starts the others in arrival order", async () => {
    const limit = createLimiter(2);
    const gates = Array.from({ length: 5 }, () => deferred<number>());
    const started: number[] = [];
    let running = 0;
    let peak = 0;
    const results = gates.map((g, i) =>
      limit(async () => {
        started.push(i);
        running++;
        peak = Math.max(peak, running);
        try {
          return await g.promise;
        } finally {
          running--;
        }
      }),
    );
    await tick();
    expect(started).toEqual([0, 1]);
    gates[1]?.resolve(1);
    await tick();
    expect(started).toEqual([0, 1, 2]);
    gates[0]?.resolve(0);
    gates[2]?.resolve(2);
    await tick();
    expect(started).toEqual([0, 1, 2, 3, 4]);
    gates[3]?.resolve(3);
    gates[4]?.resolve(4);
    expect(await Promise.all(results)).toEqual([0, 1, 2, 3, 4]);
    expect(peak).toBe(2);
  });

  it("a failing call gives its slot back and its caller gets the error", async () => {
    const limit = createLimiter(1);
    const failing = limit(async () => {
      throw new Error("boom");
    });
    const next = limit(async () => "ran");
    await expect(failing).rejects.toThrow("boom");
    expect(await next).toBe("ran");
    // The slot is free again: a call now starts at once.
    let startedAt = -1;
    const order: string[] = [];
    const p = limit(async () => {
      startedAt = order.push("call");
    });
    order.push("after");
    await p;
    expect(startedAt).toBe(1);
  });

  it("refuses a bound that is not a positive integer", () => {
    expect(() => createLimiter(0)).toThrow(RangeError);
    expect(() => createLimiter(1.5)).toThrow(RangeError);
  });
});
