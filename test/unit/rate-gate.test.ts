import { describe, expect, it } from "vitest";
import { createRateGate, RateGateTimeout } from "../../src/platform/embeddings/rate-gate.js";

/** A clock the test moves; timers still run on real time (short waits only). */
function clock(start = 1_000_000) {
  let t = start;
  return {
    now: () => t,
    advance(ms: number) {
      t += ms;
    },
  };
}

describe("rate gate (adaptive per-key limit)", () => {
  it("lets `limit` requests in at once and the next one in when one is released", async () => {
    const gate = createRateGate({ initialConcurrency: 2, maxConcurrency: 8 });
    const far = Date.now() + 10_000;
    await gate.acquire(far);
    await gate.acquire(far);
    let third = false;
    const pending = gate.acquire(far).then(() => {
      third = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(third).toBe(false);
    gate.release({ kind: "success" });
    await pending;
    expect(third).toBe(true);
    expect(gate.state().inFlight).toBe(2);
  });

  it("halves the limit on a 429 (once per pause) and grows it back by successes", () => {
    const c = clock();
    const gate = createRateGate({ initialConcurrency: 8, maxConcurrency: 8 }, c.now);
    gate.release({ kind: "rate_limited", pauseMs: 1_000 });
    // Requests already in flight coming back 429 in the same pause are the same congestion.
    gate.release({ kind: "rate_limited", pauseMs: 1_000 });
    expect(gate.state().limit).toBe(4);
    expect(gate.state().pausedUntil).toBe(c.now() + 1_000);
    c.advance(1_000);
    gate.release({ kind: "rate_limited", pauseMs: 500 });
    expect(gate.state().limit).toBe(2);
    for (let i = 0; i < 20; i++) gate.release({ kind: "success" });
    expect(gate.state().limit).toBeGreaterThan(5);
    for (let i = 0; i < 200; i++) gate.release({ kind: "success" });
    expect(gate.state().limit).toBe(8);
    gate.release({ kind: "rate_limited", pauseMs: 0 });
    for (let i = 0; i < 30; i++) gate.release({ kind: "rate_limited", pauseMs: 0 });
    expect(gate.state().limit).toBeGreaterThanOrEqual(1);
  });

  it("refuses at once, as a timeout, when the pause outlasts the caller's deadline", async () => {
    const gate = createRateGate({ initialConcurrency: 2, maxConcurrency: 2 });
    gate.release({ kind: "rate_limited", pauseMs: 60_000 });
    await expect(gate.acquire(Date.now() + 1_000)).rejects.toBeInstanceOf(RateGateTimeout);
  });

  it("waits out a short pause, then lets the request in", async () => {
    const gate = createRateGate({ initialConcurrency: 2, maxConcurrency: 2 });
    gate.release({ kind: "rate_limited", pauseMs: 80 });
    const t0 = Date.now();
    await gate.acquire(Date.now() + 5_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(75);
  });

  it("stops waiting with the signal's reason when aborted", async () => {
    const gate = createRateGate({ initialConcurrency: 1, maxConcurrency: 1 });
    gate.release({ kind: "rate_limited", pauseMs: 5_000 });
    const ctl = new AbortController();
    const waiting = gate.acquire(Date.now() + 10_000, ctl.signal);
    ctl.abort(new Error("shutting down"));
    await expect(waiting).rejects.toThrow("shutting down");
  });
});
