import type { FastifyRequest } from "fastify";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { toErrorResponse } from "../../src/http/error-handler.js";

const request = (socketDestroyed: boolean) =>
  ({
    id: "req-1",
    log: pino({ level: "silent" }),
    raw: { socket: { destroyed: socketDestroyed } },
  }) as unknown as FastifyRequest;

const reset = () => Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });

describe("toErrorResponse for connection resets", () => {
  it("answers a client that went away with 400 request.aborted", () => {
    const res = toErrorResponse(
      Object.assign(new Error("aborted"), { code: "ECONNRESET" }),
      request(true),
    );
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("request.aborted");
  });

  it("keeps a reset of the server's own connections (database, fetch) a 500", () => {
    const res = toErrorResponse(reset(), request(false));
    expect(res.status).toBe(500);
    expect(res.body).toMatchObject({ error: { code: "internal" }, requestId: "req-1" });
  });
});
