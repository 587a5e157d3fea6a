/**
 * Waiting between attempts at a remote call (the embedding and chat providers): what the
 * server asked for, exponential backoff otherwise, and a sleep that stops on abort.
 */

const MAX_BACKOFF_MS = 8_000;

/** What the provider asked for: retry-after-ms, else Retry-After in seconds or as HTTP date. */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number | undefined {
  const ms = Number.parseFloat(headers?.get("retry-after-ms") ?? "");
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const value = headers?.get("retry-after")?.trim();
  if (!value) return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return Number.parseFloat(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Exponential, capped at 8 s, with up to 25 % jitter so that many callers do not retry in step. */
export function backoffMs(retry: number, initialMs: number): number {
  return Math.min(initialMs * 2 ** retry, MAX_BACKOFF_MS) * (1 - Math.random() * 0.25);
}

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
