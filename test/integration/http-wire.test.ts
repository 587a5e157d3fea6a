import type { AddressInfo } from "node:net";
import net from "node:net";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";

/**
 * What a real client sees on the wire: parser errors, timeouts and aborted requests happen on
 * the socket, below what `inject` can send, so these tests talk to a listening server. The
 * HTTP layer does not depend on the database, so one backend is enough.
 */

const REQUEST_TIMEOUT_MS = 1000;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  // biome-ignore lint/suspicious/noExplicitAny: checked by the assertions
  body: any;
  elapsedMs: number;
  /** Every byte received, to count responses. */
  raw: string;
}

function parse(raw: string, elapsedMs: number): RawResponse {
  const [head = "", ...rest] = raw.split("\r\n\r\n");
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(":");
    headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  const text = rest.join("\r\n\r\n").split(/\r\nHTTP\/1\.1 /)[0] ?? "";
  return {
    status: Number(statusLine.split(" ")[1]),
    headers,
    body: text ? JSON.parse(text) : undefined,
    elapsedMs,
    raw,
  };
}

/** Asserts the one error shape, its code, and that the body quotes the id of the header. */
function expectWireError(res: RawResponse, status: number, code: string) {
  expect(res.status, JSON.stringify(res)).toBe(status);
  expect(res.headers["content-type"]).toMatch(/^application\/json/);
  expect(res.body.error.code).toBe(code);
  expect(typeof res.body.error.message).toBe("string");
  expect(res.body.requestId).toMatch(/\S/);
  expect(res.headers["x-request-id"]).toBe(res.body.requestId);
}

describe.each(backends.slice(0, 1))("HTTP on the wire ($name)", (backend) => {
  let t: TestApp;
  let port: number;
  const lines: Array<{ level: number; msg: string; [k: string]: unknown }> = [];
  beforeAll(async () => {
    const logger = pino(
      { level: "debug" },
      { write: (line: string) => void lines.push(JSON.parse(line)) },
    );
    t = await startApp(backend, { REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) }, { logger });
    await t.app.listen({ port: 0, host: "127.0.0.1" });
    port = (t.app.server.address() as AddressInfo).port;
  });
  afterAll(() => t.close());

  /**
   * Sends `head` (and then `trickle`, one byte each `everyMs`) and collects the answer until
   * the server closes the connection; `abortAfterMs` closes it from this side instead.
   */
  function send(
    head: string,
    opts: { trickle?: string; everyMs?: number; abortAfterMs?: number } = {},
  ): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1");
      const started = Date.now();
      let out = "";
      let timer: NodeJS.Timeout | undefined;
      socket.setEncoding("latin1");
      socket.on("data", (d: string) => {
        out += d;
      });
      socket.on("error", () => {});
      socket.on("close", () => {
        clearInterval(timer);
        resolve(parse(out, Date.now() - started));
      });
      socket.write(head, "latin1");
      if (opts.trickle) {
        let i = 0;
        timer = setInterval(() => {
          if (i < (opts.trickle as string).length && socket.writable) {
            socket.write((opts.trickle as string)[i++] as string);
          }
        }, opts.everyMs ?? 200);
      }
      if (opts.abortAfterMs !== undefined) setTimeout(() => socket.destroy(), opts.abortAfterMs);
      setTimeout(() => {
        socket.destroy();
        reject(new Error(`no answer within 10 s; got ${JSON.stringify(out)}`));
      }, 10_000).unref();
    });
  }

  const errorLines = () => lines.filter((l) => l.level >= 50);

  describe("slow and aborted requests", () => {
    it("cuts off a body trickled byte by byte with 408 request.timeout, quoting its id", async () => {
      const res = await send(
        "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nX-Request-Id: slow-body-1\r\n" +
          "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n",
        { trickle: "x".repeat(200), everyMs: 200 },
      );
      expectWireError(res, 408, "request.timeout");
      expect(res.body.requestId).toBe("slow-body-1");
      expect(res.elapsedMs).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100);
      expect(res.elapsedMs).toBeLessThan(REQUEST_TIMEOUT_MS + 1500);
    });

    it("answers a request refused before its body arrived once: its later timeout sends nothing more", async () => {
      const res = await send(
        "POST /api/ingest/document HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
          "Content-Length: 200\r\n\r\n",
        { trickle: "x".repeat(200), everyMs: 100 },
      );
      expectWireError(res, 401, "auth.unauthenticated");
      expect(res.raw.match(/HTTP\/1\.1 \d{3} /g)).toHaveLength(1);
    });

    it("cuts off headers that never end with 408", async () => {
      const res = await send("GET /healthz HTTP/1.1\r\nHost: x\r\n", {
        trickle: "X-Slow: abcdefghijklmnopqrstuvwxyz",
        everyMs: 100,
      });
      expectWireError(res, 408, "request.timeout");
      expect(res.body.requestId).toMatch(UUID_RE);
      expect(res.elapsedMs).toBeLessThan(REQUEST_TIMEOUT_MS + 1500);
    });

    it("logs neither a timeout nor a client that went away mid-body as an error", async () => {
      const before = lines.length;
      await send(
        "POST /api/auth/signup HTTP/1.1\r\nHost: x\r\nX-Request-Id: gone-1\r\n" +
          "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n" +
          '{"email": "a@b.test",',
        { abortAfterMs: 150 },
      );
      // The server notices the reset a moment later.
      await expect
        .poll(() => lines.slice(before).some((l) => l.reqId === "gone-1" && /abort/.test(l.msg)))
        .toBe(true);
      await send(
        "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
          "Content-Length: 50\r\n\r\n{",
      );
      expect(errorLines(), JSON.stringify(errorLines())).toEqual([]);
      const aborted = lines.find((l) => l.reqId === "gone-1" && /abort/.test(l.msg));
      expect(aborted?.level).toBeLessThanOrEqual(30);
    });
  });

  describe("requests that are not valid HTTP", () => {
    it.each([
      [
        "conflicting Content-Length headers",
        "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
      ],
      [
        "Content-Length with Transfer-Encoding",
        "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n" +
          "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      ],
      [
        "a bad chunk size",
        "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
          "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
      ],
      [
        "a control character in a header",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\u0001b\r\n\r\n",
      ],
      ["a request line that is not HTTP", "HELLO THERE\r\n\r\n"],
    ])("answers %s with 400 request.malformed in the error shape", async (_label, raw) => {
      const res = await send(raw);
      expectWireError(res, 400, "request.malformed");
      expect(res.body.requestId).toMatch(UUID_RE);
      expect(res.headers.connection).toBe("close");
    });

    it("answers an HTTP/1.1 request without Host with 400 request.malformed; HTTP/1.0 may omit it", async () => {
      const res = await send("GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
      expectWireError(res, 400, "request.malformed");
      const old = await send("GET /healthz HTTP/1.0\r\n\r\n");
      expect(old.status).toBe(200);
    });

    it("answers headers over the size limit with 431 request.headers_too_large", async () => {
      const res = await send(
        `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
      );
      expectWireError(res, 431, "request.headers_too_large");
    });
  });

  describe("URLs the router cannot take", () => {
    const get = (url: string) =>
      send(`GET ${url} HTTP/1.1\r\nHost: x\r\nX-Request-Id: url-1\r\nConnection: close\r\n\r\n`);

    it("answers bad percent-encoding with 400 request.malformed_url and the request id", async () => {
      const res = await get("/api/documents/%E0%A4%A");
      expectWireError(res, 400, "request.malformed_url");
      expect(res.body.requestId).toBe("url-1");
    });

    it("answers an over-long path parameter with 414 request.uri_too_long", async () => {
      const res = await get(`/api/documents/${"a".repeat(150)}`);
      expectWireError(res, 414, "request.uri_too_long");
    });

    it.each([
      "/docs/static/%2e%2e/%2e%2e/package.json",
      "/docs/static/..%2f..%2fpackage.json",
      "/docs/static/%2e%2e%2f%2e%2e%2fpackage.json",
    ])("does not serve files outside the documentation: %s", async (url) => {
      const res = await get(url);
      // The static plugin refuses the path (not_found), or no route matches it at all.
      expect(["not_found", "route.not_found"]).toContain(res.body?.error?.code);
      expectWireError(res, 404, res.body.error.code);
      expect(JSON.stringify(res.body)).not.toContain("tenantrag");
    });
  });
});
