import { isIPv4, isIPv6 } from "node:net";
import { AppError } from "../../errors.js";
import type { FailureThrottle } from "../../platform/ratelimit/index.js";

/**
 * The key of a client address: IPv4 as is, IPv6 by its /64 (one subscriber's usual allocation,
 * so that rotating through its addresses does not buy new attempts), IPv4-mapped IPv6 as IPv4.
 */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1] as string;
  if (isIPv4(ip) || !isIPv6(ip)) return ip;
  const [head = "", tail] = ip.toLowerCase().split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}

function tooMany(ms: number, by: "email" | "address"): AppError {
  const retryAfter = Math.ceil(ms / 1000);
  return new AppError(
    "auth.too_many_attempts",
    by === "email"
      ? "too many failed logins for this account; try again later"
      : "too many failed logins from this address; try again later",
    { retryAfterSeconds: retryAfter },
    { "retry-after": String(retryAfter) },
  );
}

/**
 * Bounds password checks per email and per client address. A login attempt reserves a failure
 * on both budgets *before* its password is checked, so however many attempts arrive at once,
 * at most the budget of them is ever checked; the caller releases them when the password was
 * right.
 */
export function createLoginThrottle(deps: {
  byEmail: FailureThrottle;
  byAddress: FailureThrottle;
}) {
  return {
    /** Reserves one failed attempt for `email` from `ip`, or throws 429 `auth.too_many_attempts`. */
    async reserve(email: string, ip: string): Promise<{ release(): Promise<void> }> {
      const address = addressKey(ip);
      // The email first: refused reservations still count in a budget, so a flood of attempts
      // at one email from one address spends that email's budget only, not the address's.
      const byEmail = await deps.byEmail.reserve(email);
      if (!byEmail.granted) throw tooMany(byEmail.retryAfterMs, "email");
      const byAddress = await deps.byAddress.reserve(address);
      if (!byAddress.granted) {
        // No password is checked, so this email has not failed.
        await deps.byEmail.release(email);
        throw tooMany(byAddress.retryAfterMs, "address");
      }
      return {
        async release() {
          await Promise.all([deps.byEmail.release(email), deps.byAddress.release(address)]);
        },
      };
    },
  };
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>;
