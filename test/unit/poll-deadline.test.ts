import Fastify from "fastify";
import { afterEach, describe, expect, it, vi } from "vitest";
import { settle } from "../fixtures/ingest.js";

/**
 * The polling helpers of the tests wait on elapsed time, not on the wall clock. A CI run once
 * failed `settle` after 2.6 s of a 20 s wait, with the job still running: the wall clock had
 * moved on by more than the rest of the wait while the test ran (a step of the VM's time).
 */
describe("settle (test fixture): waits on elapsed time", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("keeps polling when the wall clock jumps ahead mid-wait", async () => {
    const app = Fastify();
    let polls = 0;
    app.get("/api/documents/:id/status", async () => {
      polls += 1;
      const done = polls >= 4;
      return {
        documentId: "d",
        status: done ? "completed" : "processing",
        activeVersion: done ? 1 : null,
        latestVersion: 1,
        error: null,
        job: {
          id: "j",
          status: done ? "completed" : "running",
          attempts: 1,
          maxAttempts: 3,
          lastError: null,
        },
      };
    });
    await app.ready();
    try {
      const realNow = Date.now.bind(Date);
      // After the first poll the wall clock stands a minute later, as after a clock step.
      vi.spyOn(Date, "now").mockImplementation(() => realNow() + (polls >= 1 ? 60_000 : 0));
      const body = await settle(app, "token", "d", 5_000);
      expect(body.status).toBe("completed");
      expect(polls).toBe(4);
    } finally {
      await app.close();
    }
  });
});
