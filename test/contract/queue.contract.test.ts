import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { InvalidJobError, NonRetryableError } from "../../src/platform/queue/index.js";
import {
  createTenant,
  diesAfterCommit,
  gate,
  handlers,
  manualClock,
  type QueueHarness,
  queueAdapters,
  sleep,
  type TestQueue,
  waitFor,
} from "../fixtures/queue.js";

describe.each(queueAdapters)("JobQueue port: $name", ({ name, skip, open }) => {
  describe.skipIf(skip)(`${name} adapter`, () => {
    let h: QueueHarness;
    let tenantId: string;
    beforeAll(async () => {
      h = await open();
    });
    afterAll(() => h?.dispose());
    afterEach(() => h.reset());

    const fresh = async () => {
      tenantId = await createTenant(h.db);
      return tenantId;
    };
    const jobOf = (q: TestQueue, id: string) => q.get(tenantId, id);
    const until = (q: TestQueue, id: string, status: string) =>
      waitFor(`job ${id} to be ${status}`, async () => {
        const job = await jobOf(q, id);
        return job?.status === status ? job : undefined;
      });
    const rowsOfTenant = async () =>
      (
        await h.db.query<{ n: number }>("select count(*) as n from jobs where tenant_id = $1", [
          tenantId,
        ])
      )[0]?.n;

    it("runs the handler with the validated payload and records the job completed", async () => {
      await fresh();
      const q = h.make();
      const seen: unknown[] = [];
      q.work(
        handlers(async (job) => {
          seen.push({ id: job.id, attempt: job.attempt, payload: job.payload });
        }),
      );
      // An unknown key is stripped by the schema: the handler gets the parsed payload.
      const payload = { tenantId, n: 7, extra: "dropped" } as { tenantId: string; n: number };
      const { id } = await q.enqueue("test.echo", payload);
      const job = await until(q, id, "completed");
      expect(seen).toEqual([{ id, attempt: 1, payload: { tenantId, n: 7 } }]);
      expect(job).toMatchObject({ id, tenantId, type: "test.echo", attempts: 1, lastError: null });
      expect(job.startedAt).toBeInstanceOf(Date);
      expect(job.finishedAt?.getTime()).toBeGreaterThanOrEqual(job.startedAt?.getTime() ?? 0);
    });

    it("refuses an invalid payload, type or option on enqueue and writes nothing", async () => {
      await fresh();
      const q = h.make();
      const bad = { tenantId, n: "seven" } as unknown as { tenantId: string; n: number };
      await expect(q.enqueue("test.echo", bad)).rejects.toThrow(InvalidJobError);
      await expect(q.enqueue("test.echo", bad)).rejects.toThrow(/test\.echo.*n/);
      await expect(q.enqueue("test.nope" as "test.echo", { tenantId, n: 1 })).rejects.toThrow(
        /Unknown job type/,
      );
      await expect(q.enqueue("test.echo", { tenantId: "acme", n: 1 })).rejects.toThrow(
        InvalidJobError,
      );
      await expect(q.enqueue("test.echo", { tenantId, n: 1 }, { priority: 500 })).rejects.toThrow(
        /priority/,
      );
      expect(await rowsOfTenant()).toBe(0);
    });

    it("retries a failing job with exponential backoff until it succeeds", async () => {
      await fresh();
      const q = h.make({ backoffBaseMs: 50 });
      const runs: Array<{ attempt: number; at: number }> = [];
      q.work(
        handlers(async ({ attempt }) => {
          runs.push({ attempt, at: Date.now() });
          if (attempt < 3) throw new Error(`boom ${attempt}`);
        }),
      );
      const { id } = await q.enqueue("test.echo", { tenantId, n: 1 });
      const job = await until(q, id, "completed");
      expect(job.attempts).toBe(3);
      expect(job.lastError).toMatch(/boom 2/);
      expect(runs.map((r) => r.attempt)).toEqual([1, 2, 3]);
      const [r1, r2, r3] = runs as [(typeof runs)[0], (typeof runs)[0], (typeof runs)[0]];
      // 50 ms after the first failure, 100 ms after the second (1 ms for timer rounding).
      expect(r2.at - r1.at).toBeGreaterThanOrEqual(49);
      expect(r3.at - r2.at).toBeGreaterThanOrEqual(99);
    });

    it("gives up after maxAttempts: the job is dead with its last error, logged with its id", async () => {
      await fresh();
      const q = h.make({ backoffBaseMs: 20 });
      let calls = 0;
      q.work(
        handlers(async ({ attempt }) => {
          calls++;
          throw new Error(`boom ${attempt}`);
        }),
      );
      const { id } = await q.enqueue("test.echo", { tenantId, n: 1 }, { maxAttempts: 2 });
      const job = await until(q, id, "dead");
      expect(job).toMatchObject({ attempts: 2, maxAttempts: 2 });
      expect(job.lastError).toMatch(/boom 2/);
      expect(job.finishedAt).toBeInstanceOf(Date);
      await sleep(150); // a third attempt would have started 40 ms after the second failure
      expect(calls).toBe(2);
      expect(h.logs.some((l) => (l.level as number) >= 50 && l.jobId === id)).toBe(true);
    });

    it("fails a job at once when its handler throws NonRetryableError", async () => {
      await fresh();
      const q = h.make({ backoffBaseMs: 20 });
      let calls = 0;
      q.work(
        handlers(async () => {
          calls++;
          throw new NonRetryableError("unsupported file", "test.unsupported");
        }),
      );
      const { id } = await q.enqueue("test.echo", { tenantId, n: 1 }, { maxAttempts: 3 });
      const job = await until(q, id, "failed");
      expect(job.attempts).toBe(1);
      expect(job.lastError).toMatch(/unsupported file/);
      await sleep(100);
      expect(calls).toBe(1);
    });

    it("fails without running the handler a job whose payload no longer validates", async () => {
      await fresh();
      const q = h.make();
      let calls = 0;
      q.work(
        handlers(
          async () => {},
          async () => void calls++,
        ),
      );
      const payload = { tenantId, validUntil: Date.now() + 100 };
      const { id } = await q.enqueue("test.expiring", payload, { delayMs: 300 });
      const job = await until(q, id, "failed");
      expect(job.attempts).toBe(1);
      expect(job.lastError).toMatch(/expired/);
      expect(calls).toBe(0);
    });

    it("runs ready jobs by priority, and in enqueue order within a priority", async () => {
      await fresh();
      const q = h.make();
      const order: number[] = [];
      const low = await q.enqueue("test.echo", { tenantId, n: -10 }, { priority: -10 });
      await q.enqueue("test.echo", { tenantId, n: 1 });
      await q.enqueue("test.echo", { tenantId, n: 10 }, { priority: 10 });
      await q.enqueue("test.echo", { tenantId, n: 2 });
      q.work(
        handlers(async ({ payload }) => void order.push(payload.n)),
        { concurrency: 1 },
      );
      await until(q, low.id, "completed");
      expect(order).toEqual([10, 1, 2, -10]);
    });

    it("does not start a delayed job before its delay, and runs other jobs meanwhile", async () => {
      await fresh();
      const q = h.make();
      const started: Record<number, number> = {};
      q.work(
        handlers(async ({ payload }) => {
          started[payload.n] = Date.now();
        }),
      );
      const t0 = Date.now();
      const delayed = await q.enqueue("test.echo", { tenantId, n: 1 }, { delayMs: 400 });
      const now = await q.enqueue("test.echo", { tenantId, n: 2 });
      await until(q, now.id, "completed");
      await until(q, delayed.id, "completed");
      // Enqueued second, started first; and the delayed one not before its delay.
      expect(
        Object.entries(started)
          .sort((a, b) => a[1] - b[1])
          .map(([n]) => n),
      ).toEqual(["2", "1"]);
      expect((started[1] as number) - t0).toBeGreaterThanOrEqual(400);
    });

    it("runs `concurrency` handlers at once, never more", async () => {
      await fresh();
      const q = h.make();
      let active = 0;
      let peak = 0;
      q.work(
        handlers(async () => {
          peak = Math.max(peak, ++active);
          await sleep(120);
          active--;
        }),
        { concurrency: 3 },
      );
      const items = Array.from({ length: 9 }, (_, n) => ({
        type: "test.echo" as const,
        payload: { tenantId, n },
      }));
      const ids = await q.enqueueBatch(items);
      for (const { id } of ids) await until(q, id, "completed");
      expect(peak).toBe(3);
    });

    it("enqueues a batch all or nothing, ids in input order", async () => {
      await fresh();
      const q = h.make();
      const bad = { tenantId, n: 1.5 };
      await expect(
        q.enqueueBatch([
          { type: "test.echo", payload: { tenantId, n: 1 } },
          { type: "test.echo", payload: bad },
          { type: "test.echo", payload: { tenantId, n: 3 } },
        ]),
      ).rejects.toThrow(InvalidJobError);
      expect(await rowsOfTenant()).toBe(0);
      // One job of a tenant that does not exist: the store refuses it, and the others with it.
      await expect(
        q.enqueueBatch([
          { type: "test.echo", payload: { tenantId, n: 1 } },
          { type: "test.echo", payload: { tenantId: randomUUID(), n: 2 } },
        ]),
      ).rejects.toThrow();
      expect(await rowsOfTenant()).toBe(0);

      const seen = new Map<string, number>();
      q.work(handlers(async ({ id, payload }) => void seen.set(id, payload.n)));
      const ids = await q.enqueueBatch(
        [4, 5, 6].map((n) => ({ type: "test.echo" as const, payload: { tenantId, n } })),
      );
      for (const { id } of ids) await until(q, id, "completed");
      expect(ids.map(({ id }) => seen.get(id))).toEqual([4, 5, 6]);
    });

    it("takes a job id from the caller once; a second enqueue of that id fails and writes nothing", async () => {
      await fresh();
      const q = h.make();
      const seen: number[] = [];
      q.work(handlers(async (job) => void seen.push(job.payload.n)));
      const jobId = randomUUID();
      expect(await q.enqueue("test.echo", { tenantId, n: 1 }, { jobId })).toEqual({ id: jobId });
      await until(q, jobId, "completed");
      await expect(q.enqueue("test.echo", { tenantId, n: 2 }, { jobId })).rejects.toThrow();
      await expect(q.enqueue("test.echo", { tenantId, n: 3 }, { jobId: "j-1" })).rejects.toThrow(
        InvalidJobError,
      );
      expect(await rowsOfTenant()).toBe(1);
      expect(seen).toEqual([1]);
    });

    it("recover() brings back a job recorded as queued that never reached the workers, and runs nothing twice", async () => {
      await fresh();
      const q = h.make();
      const seen: number[] = [];
      q.work(handlers(async (job) => void seen.push(job.payload.n)));
      const done = await q.enqueue("test.echo", { tenantId, n: 1 });
      await until(q, done.id, "completed");
      // The row of a job whose process died before handing it over (embedded: the row is all).
      const lost = randomUUID();
      await h.db.query(
        `insert into jobs (id, tenant_id, type, payload, created_at, run_at)
         values ($1, $2, 'test.echo', $3::jsonb, now() - interval '10 minutes', now() - interval '10 minutes')`,
        [lost, tenantId, JSON.stringify({ tenantId, n: 2 })],
      );
      const waiting = await q.enqueue("test.echo", { tenantId, n: 3 }, { delayMs: 60_000 });
      // Embedded: the row is the job, nothing to bring back. BullMQ: recover() hands the row to
      // Redis, unless the relay's own pass (after the enqueue above commits, fair scheduling
      // hands every tenant its due rows) got there first; either way it runs once.
      const recovered = await q.recover(60_000);
      if (name.startsWith("embedded")) expect(recovered).toBe(0);
      else expect([0, 1]).toContain(recovered);
      await until(q, lost, "completed");
      // A second pass, and one that sees the delayed job too, change nothing.
      await q.recover(0);
      await q.recover(0);
      await sleep(300);
      expect(seen.sort()).toEqual([1, 2]);
      expect((await jobOf(q, waiting.id))?.status).toBe("queued");
      expect((await jobOf(q, done.id))?.attempts).toBe(1);
    });

    it("get() answers only for the job's own tenant", async () => {
      const other = await createTenant(h.db);
      await fresh();
      const q = h.make();
      const { id } = await q.enqueue("test.echo", { tenantId, n: 1 });
      expect(await q.get(tenantId, id)).toMatchObject({ id, tenantId, status: "queued" });
      expect(await q.get(other, id)).toBeUndefined();
      expect(await q.get(tenantId, randomUUID())).toBeUndefined();
      expect(await q.get(tenantId, "not-a-uuid")).toBeUndefined();
    });

    it("starts a job enqueued in this process at once, not at the next poll", async () => {
      await fresh();
      const q = h.make({ pollMs: 60_000 });
      let startedAt = 0;
      q.work(
        handlers(async () => {
          startedAt = Date.now();
        }),
      );
      await sleep(100); // let the worker find the queue empty and go idle
      const t0 = Date.now();
      const { id } = await q.enqueue("test.echo", { tenantId, n: 1 });
      await waitFor("the job to start", () => startedAt, 2_000);
      expect(startedAt - t0).toBeLessThan(1_000);
      await until(q, id, "completed");
    });

    it("runs a job again elsewhere when its worker dies, and completes it once", async () => {
      await fresh();
      const timings = { leaseMs: 400, pollMs: 50 };
      const a = h.makeKillable(timings);
      const stuck = gate();
      const aStarted = gate();
      a.queue.work(
        handlers(async () => {
          aStarted.open();
          await stuck.opened; // ignores its signal: it is "hung"
          throw new Error("late failure of a worker that was given up for dead");
        }),
      );
      const { id } = await a.queue.enqueue("test.echo", { tenantId, n: 1 });
      await aStarted.opened;
      await a.kill();

      const b = await h.makeOther(timings);
      let bRuns = 0;
      b.work(handlers(async () => void bRuns++));
      const done = await until(b, id, "completed");
      expect(bRuns).toBe(1);
      expect(done.attempts).toBe(2);

      // The old worker resuming must not record its outcome over the new run's.
      a.revive();
      stuck.open();
      await sleep(150);
      expect(await b.get(tenantId, id)).toEqual(done);
      expect(bRuns).toBe(1);
    });

    it("close() waits for a running job to finish, after aborting its signal", async () => {
      await fresh();
      const q = h.make();
      const started = gate();
      let abortedDuringRun = false;
      let finished = false;
      q.work(
        handlers(async ({ signal }) => {
          started.open();
          await sleep(300);
          abortedDuringRun = signal.aborted;
          finished = true;
        }),
      );
      const { id } = await q.enqueue("test.echo", { tenantId, n: 1 });
      await started.opened;
      await q.close(5_000);
      expect(finished).toBe(true);
      expect(abortedDuringRun).toBe(true);
      expect((await q.get(tenantId, id))?.status).toBe("completed");
    });

    it("close() stops waiting after the grace; the unfinished job runs again elsewhere", async () => {
      await fresh();
      const timings = { leaseMs: 400, pollMs: 50 };
      const q = h.make(timings);
      const started = gate();
      const hung = gate();
      q.work(
        handlers(async () => {
          started.open();
          await hung.opened; // ignores its signal
        }),
      );
      const { id } = await q.enqueue("test.echo", { tenantId, n: 1 });
      await started.opened;
      const t0 = Date.now();
      await q.close(200);
      // It waited the grace, then returned with the handler still hung.
      expect(Date.now() - t0).toBeGreaterThanOrEqual(195);
      expect((await q.get(tenantId, id))?.status).toBe("running");

      const next = await h.makeOther(timings);
      next.work(handlers(async () => {}));
      expect(await until(next, id, "completed")).toMatchObject({ attempts: 2 });
      hung.open();
    });

    it("a job stopped by close() runs again later, without using up an attempt", async () => {
      await fresh();
      const q = h.make();
      const started = gate();
      q.work(
        handlers(({ signal }) => {
          started.open();
          return new Promise((_, reject) => {
            signal.addEventListener("abort", () => reject(new Error("aborted")), { once: true });
          });
        }),
      );
      const { id } = await q.enqueue("test.echo", { tenantId, n: 1 }, { maxAttempts: 1 });
      await started.opened;
      await q.close(5_000);
      expect((await q.get(tenantId, id))?.status).toBe("queued");

      const next = await h.makeOther();
      next.work(handlers(async () => {}));
      await until(next, id, "completed");
    });

    it("never runs a job twice when two workers with their own connections share the queue", async () => {
      await fresh();
      const runs = new Map<string, number>();
      const both = handlers(async ({ id }) => {
        runs.set(id, (runs.get(id) ?? 0) + 1);
        await sleep(2);
      });
      const a = h.make();
      const b = await h.makeOther();
      const items = Array.from({ length: 50 }, (_, n) => ({
        type: "test.echo" as const,
        payload: { tenantId, n },
      }));
      a.work(both, { concurrency: 4 });
      b.work(both, { concurrency: 4 });
      const ids = await a.enqueueBatch(items);
      for (const { id } of ids) await until(a, id, "completed");
      expect(runs.size).toBe(50);
      expect([...runs.values()].every((n) => n === 1)).toBe(true);
    });
    describe("fair across tenants", () => {
      // The jobs a test leaves queued must not take turns in the next one.
      afterEach(() => h.db.query("delete from jobs where status = 'queued'"));

      /** Waits for a job of `tenant` (not necessarily the test's first) to complete. */
      const completed = (q: TestQueue, tenant: string, id: string) =>
        waitFor(
          `job ${id} to complete`,
          async () => {
            const job = await q.get(tenant, id);
            return job?.status === "completed";
          },
          20_000,
        );
      /** `n` jobs of the tenant, enqueued in one batch. */
      const bulk = (q: TestQueue, tenant: string, n: number, from = 0) =>
        q.enqueueBatch(
          Array.from({ length: n }, (_, i) => ({
            type: "test.echo" as const,
            payload: { tenantId: tenant, n: from + i },
          })),
        );

      for (const concurrency of [1, 3]) {
        it(`runs another tenant's job among the first few while one tenant has 200 queued (concurrency ${concurrency})`, async () => {
          const a = await fresh();
          const b = await createTenant(h.db);
          const q = h.make();
          const started: Array<{ tenant: string; n: number }> = [];
          await bulk(q, a, 200);
          const single = await q.enqueue("test.echo", { tenantId: b, n: 0 });
          q.work(
            handlers(async ({ payload }) => {
              started.push({ tenant: payload.tenantId, n: payload.n });
              await sleep(5);
            }),
            { concurrency },
          );
          await completed(q, b, single.id);
          const position = started.findIndex((s) => s.tenant === b);
          // FIFO would run it 201st. BullMQ: behind at most the window of A's jobs in Redis.
          expect(position).toBeGreaterThanOrEqual(0);
          expect(position).toBeLessThanOrEqual(concurrency + 5);
          // A's jobs start in A's order with one worker slot.
          const ofA = started.filter((s) => s.tenant === a).map((s) => s.n);
          if (concurrency === 1) expect(ofA).toEqual([...ofA].sort((x, y) => x - y));
        });
      }

      it.skipIf(!name.startsWith("embedded"))(
        "takes turns in claim order, not by the clock: a turn stamped ahead (a clock stepped back) holds no tenant back",
        async () => {
          const a = await fresh();
          const b = await createTenant(h.db);
          // B was last served when the clock read an hour ahead of now, as a wall clock
          // stepped back after that claim leaves it.
          await h.db.query(
            `insert into job_tenant_turns (tenant_key, last_claimed_at, turn)
             values ($1, now() + interval '1 hour', nextval('job_tenant_turn_seq'))`,
            [b],
          );
          const q = h.make();
          const started: string[] = [];
          await bulk(q, a, 100);
          const single = await q.enqueue("test.echo", { tenantId: b, n: 0 });
          q.work(
            handlers(async ({ payload }) => {
              started.push(payload.tenantId);
              await sleep(5);
            }),
            { concurrency: 1 },
          );
          await completed(q, b, single.id);
          // By the clock B would come last, after A's 100; by claim order it is second.
          expect(started.indexOf(b)).toBe(1);
        },
      );

      it("runs a tenant's jobs beyond its window as earlier ones finish, not at the periodic relay", async () => {
        const a = await fresh();
        // The periodic relay waits a minute: only the hand-over after each finished job can
        // bring the jobs past the first window (BullMQ: 4 in Redis) to the workers in time.
        const q = h.make({ relayMs: 60_000 });
        const ids = await bulk(q, a, 12);
        q.work(
          handlers(async () => {
            await sleep(5);
          }),
          { concurrency: 2 },
        );
        for (const { id } of ids) await completed(q, a, id);
        // A new job after the backlog is gone is handed over at once too.
        const late = await q.enqueue("test.echo", { tenantId: a, n: 99 });
        await completed(q, a, late.id);
      });

      it("schedules a batch committed in the caller's transaction as fairly as any other", async () => {
        const a = await fresh();
        const b = await createTenant(h.db);
        const q = h.make();
        const started: string[] = [];
        await h.db.transaction((tx) =>
          q.enqueueBatch(
            Array.from({ length: 200 }, (_, n) => ({
              type: "test.echo" as const,
              payload: { tenantId: a, n },
            })),
            { tx },
          ),
        );
        const single = await q.enqueue("test.echo", { tenantId: b, n: 0 });
        q.work(
          handlers(async ({ payload }) => {
            started.push(payload.tenantId);
            await sleep(5);
          }),
          { concurrency: 2 },
        );
        await completed(q, b, single.id);
        const position = started.indexOf(b);
        expect(position).toBeGreaterThanOrEqual(0);
        expect(position).toBeLessThanOrEqual(2 + 5);
      });

      it("lets no tenant starve: two bulk loads share the workers turn by turn", async () => {
        const a = await fresh();
        const c = await createTenant(h.db);
        const q = h.make();
        await bulk(q, a, 200);
        // Enqueued after all of A's: FIFO would run none of them before A's 200.
        const cIds = await bulk(q, c, 200);
        const started: string[] = [];
        q.work(
          handlers(async ({ payload }) => void started.push(payload.tenantId)),
          { concurrency: 2 },
        );
        const ours = () => started.filter((t) => t === a || t === c);
        await waitFor("60 jobs to start", () => ours().length >= 60);
        const first = ours().slice(0, 60);
        expect(first.filter((t) => t === a).length).toBeGreaterThanOrEqual(20);
        expect(first.filter((t) => t === c).length).toBeGreaterThanOrEqual(20);
        await completed(q, c, cIds[199]?.id as string);
      });

      it("holds the per-tenant cap across two workers with their own connections", async () => {
        const a = await fresh();
        const b = await createTenant(h.db);
        const active = new Map<string, number>();
        const peak = new Map<string, number>();
        let peakAll = 0;
        const both = handlers(async ({ payload }) => {
          const now = (active.get(payload.tenantId) ?? 0) + 1;
          active.set(payload.tenantId, now);
          peak.set(payload.tenantId, Math.max(peak.get(payload.tenantId) ?? 0, now));
          peakAll = Math.max(
            peakAll,
            [...active.values()].reduce((x, y) => x + y, 0),
          );
          await sleep(25);
          active.set(payload.tenantId, (active.get(payload.tenantId) ?? 1) - 1);
        });
        const w1 = h.make({ tenantConcurrency: 2 });
        const w2 = await h.makeOther({ tenantConcurrency: 2 });
        const ids = [...(await bulk(w1, a, 24)), ...(await bulk(w1, b, 12))];
        w1.work(both, { concurrency: 4 });
        w2.work(both, { concurrency: 4 });
        for (const [i, { id }] of ids.entries()) await completed(w1, i < 24 ? a : b, id);
        expect(peak.get(a)).toBe(2);
        expect(peak.get(b)).toBeLessThanOrEqual(2);
        // The cap is per tenant: the two tenants did run at the same time.
        expect(peakAll).toBeGreaterThan(2);
      });

      it("runs one FIFO across tenants when fairness is off", async () => {
        const a = await fresh();
        const b = await createTenant(h.db);
        const q = h.make({ fair: false });
        await bulk(q, a, 20);
        const single = await q.enqueue("test.echo", { tenantId: b, n: 0 });
        const started: string[] = [];
        q.work(
          handlers(async ({ payload }) => void started.push(payload.tenantId)),
          { concurrency: 1 },
        );
        await completed(q, b, single.id);
        expect(started.indexOf(b)).toBe(20);
      });
    });

    describe("enqueue in the caller's transaction", () => {
      it("a rolled-back transaction enqueues nothing, single or batch", async () => {
        await fresh();
        const q = h.make();
        const seen: number[] = [];
        q.work(handlers(async (job) => void seen.push(job.payload.n)));
        await expect(
          h.db.transaction(async (tx) => {
            await q.enqueue("test.echo", { tenantId, n: 1 }, { tx });
            await q.enqueueBatch(
              [2, 3].map((n) => ({ type: "test.echo" as const, payload: { tenantId, n } })),
              { tx },
            );
            throw new Error("the business write failed");
          }),
        ).rejects.toThrow(/business write/);
        // A job enqueued after it runs; the rolled-back ones never existed.
        const after = await q.enqueue("test.echo", { tenantId, n: 4 });
        await until(q, after.id, "completed");
        expect(seen).toEqual([4]);
        expect(await rowsOfTenant()).toBe(1);
      });

      it("a committed transaction's jobs run, once each, with what it wrote", async () => {
        await fresh();
        const q = h.make();
        const seen: Array<{ n: number; title: string | undefined }> = [];
        q.work(
          handlers(async ({ payload }) => {
            // The job sees the business row written in its transaction.
            const [row] = await h.db.query<{ name: string }>(
              "select name from tenants where id = $1",
              [payload.tenantId],
            );
            seen.push({ n: payload.n, title: row?.name });
          }),
        );
        const ids = await h.db.transaction(async (tx) => {
          await tx.query("update tenants set name = $2 where id = $1", [tenantId, `t-${tenantId}`]);
          const one = await q.enqueue("test.echo", { tenantId, n: 1 }, { tx });
          const more = await q.enqueueBatch(
            [2, 3].map((n) => ({ type: "test.echo" as const, payload: { tenantId, n } })),
            { tx },
          );
          return [one, ...more];
        });
        for (const { id } of ids) await until(q, id, "completed");
        expect(seen.map((s) => s.n).sort()).toEqual([1, 2, 3]);
        expect(seen.every((s) => s.title === `t-${tenantId}`)).toBe(true);
      });

      it("a committed job starts at once, not at the next poll or relay pass", async () => {
        // Only the transaction's after-commit hook can start it in time: the job row is
        // written with the typed builder over `tx`, the hook is called on the same handle.
        await fresh();
        const q = h.make({ pollMs: 60_000, relayMs: 60_000 });
        let startedAt = 0;
        q.work(
          handlers(async () => {
            startedAt = Date.now();
          }),
        );
        await sleep(300); // let the worker go idle and the relay make its first pass
        const t0 = Date.now();
        const { id } = await h.db.transaction((tx) =>
          q.enqueue("test.echo", { tenantId, n: 1 }, { tx }),
        );
        await waitFor("the job to start", () => startedAt, 5_000);
        expect(startedAt - t0).toBeLessThan(2_000);
        await until(q, id, "completed");
      });

      it("a committed job runs even if its process dies between the commit and the hand-over", async () => {
        await fresh();
        const dying = h.make();
        const { id } = await h.db.transaction((tx) =>
          dying.enqueue("test.echo", { tenantId, n: 1 }, { tx: diesAfterCommit(tx) }),
        );
        await dying.close(0);
        expect((await h.db.query("select 1 from jobs where id = $1", [id])).length).toBe(1);

        // A fresh process: its relay (BullMQ) or its claim (embedded) finds the row.
        const next = await h.makeOther();
        const seen: number[] = [];
        next.work(handlers(async (job) => void seen.push(job.payload.n)));
        await until(next, id, "completed");
        expect(seen).toEqual([1]);
      });
    });

    describe("scheduled jobs", () => {
      /** The recorded runs of the test.tick schedule whose payload carries `n`. */
      const runsOf = async (n: number) =>
        h.db.query<{ id: string; status: string }>(
          `select id, status from jobs
           where type = 'test.tick' and tenant_id is null and payload->>'n' = $1
           order by created_at`,
          [String(n)],
        );

      it("two workers declaring one schedule run its due time exactly once", async () => {
        const key = `tick-${randomUUID()}`;
        const a = h.make();
        const b = await h.makeOther();
        const ran: Array<{ worker: string; n: number }> = [];
        const tickOf = (worker: string) =>
          handlers(
            async () => {},
            async () => {},
            async ({ payload }) => void ran.push({ worker, n: payload.n }),
          );
        // Both processes declare it at start, as worker processes do.
        await a.schedule(key, "test.tick", { tenantId: null, n: 1 }, { everyMs: 3_600_000 });
        await b.schedule(key, "test.tick", { tenantId: null, n: 1 }, { everyMs: 3_600_000 });
        a.work(tickOf("a"), { concurrency: 2 });
        b.work(tickOf("b"), { concurrency: 2 });
        const [run] = await waitFor("the first run", async () => {
          const rows = await runsOf(1);
          return rows.length > 0 && rows.every((r) => r.status === "completed") ? rows : undefined;
        });
        // Both workers go on looking for due work; the next due time is an hour away.
        const marker = await a.enqueue("test.echo", { tenantId: await fresh(), n: 0 });
        await until(a, marker.id, "completed");
        await sleep(300);
        expect(ran).toHaveLength(1);
        expect(ran[0]?.n).toBe(1);
        expect((await runsOf(1)).map((r) => r.id)).toEqual([run?.id]);
      });

      it.skipIf(!name.startsWith("embedded"))(
        "follows its cron expression by the queue's clock: each due time once, missed ones once",
        async () => {
          const clock = manualClock(new Date("2031-03-01T10:00:30Z"));
          const key = `cron-${randomUUID()}`;
          const a = h.make({ clock });
          const b = await h.makeOther({ clock });
          const ran: number[] = [];
          const tick = handlers(
            async () => {},
            async () => {},
            async ({ payload }) => void ran.push(payload.n),
          );
          await a.schedule(key, "test.tick", { tenantId: null, n: 7 }, { cron: "*/5 * * * *" });
          a.work(tick);
          b.work(tick);
          const nextRun = async () =>
            (
              await h.db.query<{ next_run_at: Date }>(
                "select next_run_at from job_schedules where key = $1",
                [key],
              )
            )[0]?.next_run_at.toISOString();
          const completed = (n: number) =>
            waitFor(`${n} completed runs`, async () => {
              const rows = await runsOf(7);
              return rows.length === n && rows.every((r) => r.status === "completed");
            });
          expect(await nextRun()).toBe("2031-03-01T10:05:00.000Z");

          clock.set(new Date("2031-03-01T10:05:00Z"));
          await completed(1);
          await waitFor("the schedule to move on", async () =>
            (await nextRun()) === "2031-03-01T10:10:00.000Z" ? true : undefined,
          );
          // Three due times pass while nothing looks: one run for them, then the next one.
          clock.set(new Date("2031-03-01T10:21:00Z"));
          await completed(2);
          await waitFor("the schedule to move on again", async () =>
            (await nextRun()) === "2031-03-01T10:25:00.000Z" ? true : undefined,
          );
          expect(ran).toEqual([7, 7]);
          // Declaring it again (a restart) keeps its due time; a new timing replaces it.
          await b.schedule(key, "test.tick", { tenantId: null, n: 7 }, { cron: "*/5 * * * *" });
          expect(await nextRun()).toBe("2031-03-01T10:25:00.000Z");
          await b.schedule(key, "test.tick", { tenantId: null, n: 7 }, { cron: "0 * * * *" });
          expect(await nextRun()).toBe("2031-03-01T11:00:00.000Z");
        },
      );

      it("refuses a bad timing or payload when declared", async () => {
        const q = h.make();
        await expect(
          q.schedule("bad", "test.tick", { tenantId: null, n: 1 }, { cron: "every minute" }),
        ).rejects.toThrow(/cron/);
        await expect(
          q.schedule("bad", "test.tick", { tenantId: null, n: 1 }, { everyMs: 0 }),
        ).rejects.toThrow(/everyMs/);
        await expect(
          q.schedule("bad", "test.tick", { tenantId: null, n: 1.5 }, { everyMs: 1_000 }),
        ).rejects.toThrow(InvalidJobError);
      });
    });
  });
});
