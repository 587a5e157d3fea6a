import { type LimitDecision, mostConstrained } from "./request-limiter.js";

/**
 * The IETF rate-limit fields, as draft-ietf-httpapi-ratelimit-headers-11 (May 2026) defines
 * them: Structured Field Lists (RFC 9651) whose items are the policies' names as Strings.
 *
 * - `RateLimit-Policy`: every policy: `q` its quota, `w` its window in seconds, `pk` the
 *   partition key (a Byte Sequence) when the quota is allocated per partition.
 * - `RateLimit`: the service limit of the most constrained policy: `r` the quota left, `t` the
 *   seconds until its window ends, and the same `pk`.
 */
export interface RateLimitFields {
  ratelimit: string;
  "ratelimit-policy": string;
}

/** `partitionKey` is sent as the bytes of its UTF-8 text (base64 inside colons). */
export function rateLimitFields(decision: LimitDecision, partitionKey?: string): RateLimitFields {
  const pk =
    partitionKey === undefined ? "" : `;pk=:${Buffer.from(partitionKey).toString("base64")}:`;
  const policy = decision.policies
    .map((p) => `${sfString(p.policy)};q=${p.limit};w=${p.windowSeconds}${pk}`)
    .join(", ");
  const current = mostConstrained(decision);
  return {
    ratelimit: `${sfString(current.policy)};r=${current.remaining};t=${current.resetSeconds}${pk}`,
    "ratelimit-policy": policy,
  };
}

/** An sf-string: printable ASCII with `"` and `\` escaped (policy names are ours, plain words). */
function sfString(value: string): string {
  if (!/^[\x20-\x7e]*$/.test(value)) throw new Error(`not an sf-string: ${value}`);
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
