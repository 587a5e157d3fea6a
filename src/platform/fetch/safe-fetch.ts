import { lookup as dnsLookup } from "node:dns/promises";
import type { IncomingMessage } from "node:http";
import * as http from "node:http";
import * as https from "node:https";
import { isIP, type LookupFunction } from "node:net";
import type { Readable } from "node:stream";
import * as zlib from "node:zlib";
import { classifyAddress, isAllowedAddress } from "./address-policy.js";

export { type AddressClass, classifyAddress, isAllowedAddress } from "./address-policy.js";

/**
 * An SSRF-safe HTTP GET for URLs that tenants submit. Only http(s); every hop's host is
 * resolved once, every address checked, and the connection made to exactly those addresses
 * (a pinned `lookup`), so DNS rebinding between check and connect gains nothing. Redirects are
 * followed by hand and each target checked again. Bodies are capped and time is bounded.
 */

export type FetchErrorCode =
  | "ingestion.url_forbidden"
  | "ingestion.url_too_large"
  | "ingestion.url_timeout"
  | "ingestion.url_http_error"
  | "ingestion.url_unreachable";

export class FetchError extends Error {
  override name = "FetchError";
  constructor(
    readonly code: FetchErrorCode,
    message: string,
    /** The HTTP status, for `ingestion.url_http_error`. */
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to all its addresses; `dns.lookup` by default, a stub in tests. */
export type HostResolver = (hostname: string) => Promise<ResolvedAddress[]>;

export interface SafeFetchOptions {
  /** Allow private, loopback and link-local targets (tests, local use). Metadata stays refused. */
  allowPrivate?: boolean;
  /** Default 10 MiB, counted after decompression. */
  maxBytes?: number;
  /** For the whole fetch: resolution, redirects and body. Default 15 s. */
  timeoutMs?: number;
  /** Default 5. */
  maxRedirects?: number;
  userAgent?: string;
  /** Aborts the fetch (e.g. worker shutdown); the abort reason is thrown, not a FetchError. */
  signal?: AbortSignal;
  resolve?: HostResolver;
}

export interface SafeFetchResult {
  /** The URL that answered, after redirects. */
  finalUrl: string;
  status: number;
  /** The Content-Type header as sent, undefined when absent. */
  contentType?: string;
  body: Buffer;
}

const DEFAULT_USER_AGENT = "tenantrag/0.1 (+document ingestion)";
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

const systemResolver: HostResolver = async (hostname) => {
  const found = await dnsLookup(hostname, { all: true, verbatim: true });
  return found.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

/**
 * Checks that `url` is an http(s) URL whose host resolves only to allowed addresses, and
 * returns those addresses. A host with any refused address is refused as a whole: an attacker
 * who controls DNS could otherwise add a private address next to a public one.
 * Throws `ingestion.url_forbidden`, or `ingestion.url_unreachable` when the host does not resolve.
 */
export async function checkUrlTarget(
  url: string,
  opts: { allowPrivate?: boolean; resolve?: HostResolver } = {},
): Promise<{ url: URL; addresses: ResolvedAddress[] }> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new FetchError("ingestion.url_forbidden", "not a valid URL");
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new FetchError(
      "ingestion.url_forbidden",
      `the ${parsed.protocol} scheme is not allowed, only http(s)`,
    );
  }
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  let addresses: ResolvedAddress[];
  if (isIP(host)) {
    addresses = [{ address: host, family: isIP(host) === 6 ? 6 : 4 }];
  } else {
    try {
      addresses = await (opts.resolve ?? systemResolver)(host);
    } catch (err) {
      throw new FetchError(
        "ingestion.url_unreachable",
        `cannot resolve ${host}: ${(err as Error).message}`,
      );
    }
    if (addresses.length === 0)
      throw new FetchError("ingestion.url_unreachable", `${host} has no address`);
  }
  for (const { address } of addresses) {
    if (!isAllowedAddress(address, opts.allowPrivate ?? false)) {
      throw new FetchError(
        "ingestion.url_forbidden",
        `${host} resolves to ${address} (${classifyAddress(address)}), which may not be fetched`,
      );
    }
  }
  return { url: parsed, addresses };
}

/** GETs `url` safely; see the module comment. Throws `FetchError` for every refusal or failure. */
export async function safeFetch(
  url: string,
  opts: SafeFetchOptions = {},
): Promise<SafeFetchResult> {
  const maxBytes = opts.maxBytes ?? 10 * 1024 * 1024;
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const maxRedirects = opts.maxRedirects ?? 5;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  try {
    let current = url;
    for (let redirects = 0; ; redirects++) {
      const target = await raceAbort(checkUrlTarget(current, opts), signal);
      const res = await get(
        target.url,
        target.addresses,
        opts.userAgent ?? DEFAULT_USER_AGENT,
        signal,
      );
      const status = res.statusCode ?? 0;
      if (REDIRECTS.has(status)) {
        res.destroy();
        const location = res.headers.location;
        if (!location) {
          throw new FetchError(
            "ingestion.url_http_error",
            `HTTP ${status} without a Location`,
            status,
          );
        }
        if (redirects >= maxRedirects) {
          throw new FetchError(
            "ingestion.url_http_error",
            `more than ${maxRedirects} redirects`,
            status,
          );
        }
        current = new URL(location, target.url).href;
        continue;
      }
      if (status < 200 || status > 299) {
        res.destroy();
        throw new FetchError(
          "ingestion.url_http_error",
          `the server answered HTTP ${status}`,
          status,
        );
      }
      const body = await readCapped(res, maxBytes);
      const contentType = res.headers["content-type"];
      return { finalUrl: target.url.href, status, body, ...(contentType ? { contentType } : {}) };
    }
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (timeout.aborted) {
      throw new FetchError("ingestion.url_timeout", `no complete answer within ${timeoutMs} ms`);
    }
    if (err instanceof FetchError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? "";
    throw new FetchError(
      "ingestion.url_unreachable",
      `connection failed: ${code || (err as Error).message}`,
    );
  }
}

/** Resolves with the response head; the connection goes only to the checked `addresses`. */
function get(
  url: URL,
  addresses: ResolvedAddress[],
  userAgent: string,
  signal: AbortSignal,
): Promise<IncomingMessage> {
  const lookup: LookupFunction = (_hostname, options, callback) => {
    const wanted = options.family === 4 || options.family === 6 ? options.family : undefined;
    const usable = addresses.filter((a) => wanted === undefined || a.family === wanted);
    const first = usable[0];
    if (!first) {
      callback(
        Object.assign(new Error("no address of the requested family"), { code: "ENOTFOUND" }),
        "",
      );
    } else if (options.all) {
      callback(null, usable);
    } else {
      callback(null, first.address, first.family);
    }
  };
  const client = url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(url, {
      method: "GET",
      lookup,
      agent: false,
      signal,
      headers: {
        "user-agent": userAgent,
        accept:
          "text/html,application/xhtml+xml,application/pdf,text/markdown,text/plain;q=0.9,*/*;q=0.5",
        // We can decode gzip/deflate/br, but a plain body keeps the size cap honest.
        "accept-encoding": "identity",
      },
    });
    req.once("response", resolve);
    // Kept for the request's life: an error after the response (abort, reset) must not be an
    // unhandled 'error' event; the body reader sees it on the response.
    req.on("error", reject);
    req.end();
  });
}

/**
 * The body, decompressed if the server compressed it anyway, refused past `maxBytes` of
 * decoded bytes (a small gzip can expand a thousandfold). Destroying the response closes the
 * connection, so the server stops sending.
 */
async function readCapped(res: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const tooLarge = () =>
    new FetchError("ingestion.url_too_large", `the response is larger than ${maxBytes} bytes`);
  const declared = Number(res.headers["content-length"]);
  const encoding = (res.headers["content-encoding"] ?? "identity").trim().toLowerCase();
  if (encoding === "identity" && declared > maxBytes) {
    res.destroy();
    throw tooLarge();
  }
  const decoder = decoderFor(encoding);
  if (decoder === null) {
    res.destroy();
    throw new FetchError(
      "ingestion.url_http_error",
      `unsupported Content-Encoding ${encoding}`,
      res.statusCode,
    );
  }
  const stream: Readable = decoder ? res.pipe(decoder) : res;
  if (decoder) res.on("error", (err) => decoder.destroy(err));
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream) {
      total += (chunk as Buffer).length;
      if (total > maxBytes) throw tooLarge();
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof FetchError) throw err;
    if (decoder && (err as NodeJS.ErrnoException).code?.startsWith("Z_")) {
      throw new FetchError(
        "ingestion.url_http_error",
        "the response body could not be decompressed",
        res.statusCode,
      );
    }
    throw err;
  } finally {
    res.destroy();
    decoder?.destroy();
  }
  return Buffer.concat(chunks, total);
}

/** undefined: no decoding needed; null: an encoding we cannot decode. */
function decoderFor(
  encoding: string,
): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | undefined | null {
  switch (encoding) {
    case "identity":
      return undefined;
    case "gzip":
    case "x-gzip":
      return zlib.createGunzip();
    case "deflate":
      return zlib.createInflate();
    case "br":
      return zlib.createBrotliDecompress();
    default:
      return null;
  }
}

/** DNS lookups cannot be cancelled, but the fetch need not wait for them. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
