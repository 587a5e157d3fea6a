import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { safeFetch } from "../../src/platform/fetch/safe-fetch.js";
import { fetchFailure, stubResolver } from "../fixtures/fetch.js";

// Only 127.0.0.1 ever receives traffic here; other hosts go through stub resolvers or are
// refused before any connection is made.

const MiB = 1024 * 1024;
let server: Server;
let base: string;
let port: number;
let seen: Array<{ path: string; host: string | undefined }> = [];
const closedResponses: string[] = [];

const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
  "/ok": (_req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end("<p>hello</p>");
  },
  "/redirect": (_req, res) => redirect(res, "/ok"),
  "/loop": (_req, res) => redirect(res, "/loop"),
  "/to-file": (_req, res) => redirect(res, "file:///etc/passwd"),
  "/to-ftp": (_req, res) => redirect(res, "ftp://127.0.0.1/secret"),
  "/to-metadata": (_req, res) => redirect(res, "http://169.254.169.254/latest/meta-data/"),
  "/no-location": (_req, res) => res.writeHead(302).end(),
  "/missing": (_req, res) =>
    res.writeHead(404, { "content-type": "text/plain" }).end("no such page"),
  "/endless": (_req, res) => {
    // Writes until the client goes away: only the client's byte cap ends this response.
    res.writeHead(200, { "content-type": "text/plain" });
    const chunk = Buffer.alloc(64 * 1024, "a");
    const pump = () => {
      while (!res.destroyed && res.write(chunk)) {}
      if (!res.destroyed) res.once("drain", pump);
    };
    res.once("close", () => closedResponses.push("/endless"));
    pump();
  },
  "/declared-large": (_req, res) => {
    res.writeHead(200, { "content-type": "text/plain", "content-length": String(5 * MiB) });
    res.write("a".repeat(1024));
  },
  "/gzip": (_req, res) => {
    res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip" });
    res.end(gzipSync("compressed hello"));
  },
  "/gzip-bomb": (_req, res) => {
    res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip" });
    res.end(gzipSync(Buffer.alloc(20 * MiB)));
  },
  "/stall-body": (_req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.write("first bytes, then nothing");
  },
  "/stall-head": () => {},
};

function redirect(res: ServerResponse, location: string) {
  res.writeHead(302, { location }).end();
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    seen.push({ path, host: req.headers.host });
    (routes[path] ?? ((_q, r) => r.writeHead(500).end()))(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  seen = [];
});

describe("safeFetch: targets", () => {
  it("refuses a loopback server by default, without connecting to it", async () => {
    expect((await fetchFailure(safeFetch(`${base}/ok`))).code).toBe("ingestion.url_forbidden");
    const resolve = stubResolver({ "app.test": ["127.0.0.1"] });
    expect((await fetchFailure(safeFetch(`http://app.test:${port}/ok`, { resolve }))).code).toBe(
      "ingestion.url_forbidden",
    );
    expect(seen).toEqual([]);
  });

  it("fetches a loopback server when private targets are allowed", async () => {
    const res = await safeFetch(`${base}/ok`, { allowPrivate: true });
    expect(res).toMatchObject({
      finalUrl: `${base}/ok`,
      status: 200,
      contentType: "text/html; charset=utf-8",
    });
    expect(res.body.toString()).toBe("<p>hello</p>");
  });

  it("connects to the address it checked, resolving each host once, and keeps the Host header", async () => {
    const resolve = stubResolver({ "app.test": ["127.0.0.1"] });
    const res = await safeFetch(`http://app.test:${port}/redirect`, {
      allowPrivate: true,
      resolve,
    });
    expect(res.body.toString()).toBe("<p>hello</p>");
    expect(res.finalUrl).toBe(`http://app.test:${port}/ok`);
    expect(resolve.calls).toEqual(["app.test", "app.test"]); // one per hop, none at connect time
    expect(seen).toEqual([
      { path: "/redirect", host: `app.test:${port}` },
      { path: "/ok", host: `app.test:${port}` },
    ]);
  });

  it.each([
    "file:///etc/passwd",
    "ftp://127.0.0.1/",
    "data:text/plain,hi",
    "javascript:alert(1)",
    "not a url",
  ])("refuses %s", async (url) => {
    expect((await fetchFailure(safeFetch(url, { allowPrivate: true }))).code).toBe(
      "ingestion.url_forbidden",
    );
  });

  it.each(["/to-file", "/to-ftp", "/to-metadata"])(
    "checks redirect targets again: %s is refused",
    async (path) => {
      const err = await fetchFailure(safeFetch(`${base}${path}`, { allowPrivate: true }));
      expect(err.code).toBe("ingestion.url_forbidden");
      expect(seen.map((s) => s.path)).toEqual([path]);
    },
  );

  it("stops after maxRedirects", async () => {
    const err = await fetchFailure(
      safeFetch(`${base}/loop`, { allowPrivate: true, maxRedirects: 3 }),
    );
    expect(err.code).toBe("ingestion.url_http_error");
    expect(seen).toHaveLength(4);
  });

  it("reports a host that does not resolve, or a closed port, as unreachable", async () => {
    const resolve = stubResolver({ "empty.test": [] });
    expect((await fetchFailure(safeFetch("http://nowhere.test/", { resolve }))).code).toBe(
      "ingestion.url_unreachable",
    );
    expect((await fetchFailure(safeFetch("http://empty.test/", { resolve }))).code).toBe(
      "ingestion.url_unreachable",
    );
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const err = await fetchFailure(
      safeFetch(`http://127.0.0.1:${closedPort}/`, { allowPrivate: true }),
    );
    expect(err.code).toBe("ingestion.url_unreachable");
  });
});

describe("safeFetch: responses", () => {
  it("reports a 404 as an HTTP error with its status", async () => {
    const err = await fetchFailure(safeFetch(`${base}/missing`, { allowPrivate: true }));
    expect(err).toMatchObject({ code: "ingestion.url_http_error", status: 404 });
    expect(
      (await fetchFailure(safeFetch(`${base}/no-location`, { allowPrivate: true }))).status,
    ).toBe(302);
  });

  it("aborts an endless body at maxBytes and closes the connection", async () => {
    const err = await fetchFailure(
      safeFetch(`${base}/endless`, { allowPrivate: true, maxBytes: MiB }),
    );
    expect(err.code).toBe("ingestion.url_too_large");
    await expect.poll(() => closedResponses).toContain("/endless");
  });

  it("refuses a body whose declared length is over maxBytes", async () => {
    const err = await fetchFailure(
      safeFetch(`${base}/declared-large`, { allowPrivate: true, maxBytes: MiB }),
    );
    expect(err.code).toBe("ingestion.url_too_large");
  });

  it("decompresses a gzip body, and caps the decompressed size (a zip bomb is refused)", async () => {
    const res = await safeFetch(`${base}/gzip`, { allowPrivate: true });
    expect(res.body.toString()).toBe("compressed hello");
    const err = await fetchFailure(
      safeFetch(`${base}/gzip-bomb`, { allowPrivate: true, maxBytes: MiB }),
    );
    expect(err.code).toBe("ingestion.url_too_large");
  });

  it.each(["/stall-body", "/stall-head"])(
    "times out on a server that stalls (%s)",
    async (path) => {
      const started = Date.now();
      const err = await fetchFailure(
        safeFetch(`${base}${path}`, { allowPrivate: true, timeoutMs: 300 }),
      );
      expect(err.code).toBe("ingestion.url_timeout");
      expect(Date.now() - started).toBeLessThan(5_000);
    },
  );

  it("stops when the caller aborts, with the caller's reason", async () => {
    const controller = new AbortController();
    const reason = new Error("worker shutting down");
    setTimeout(() => controller.abort(reason), 100);
    await expect(
      safeFetch(`${base}/stall-head`, { allowPrivate: true, signal: controller.signal }),
    ).rejects.toBe(reason);
  });
});
