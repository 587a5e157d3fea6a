import { describe, expect, it } from "vitest";
import {
  type LimitDecision,
  mostConstrained,
  type PolicyState,
  rateLimitFields,
} from "../../src/platform/ratelimit/index.js";

const state = (p: Partial<PolicyState> & Pick<PolicyState, "policy">): PolicyState => ({
  windowSeconds: p.policy === "minute" ? 60 : 86_400,
  limit: 60,
  used: 0,
  remaining: 60,
  resetSeconds: 60,
  open: true,
  ...p,
});

const decision = (policies: PolicyState[], violated: string[] = []): LimitDecision => ({
  allowed: violated.length === 0,
  policies,
  violated,
  retryAfterSeconds: violated.length ? 1 : undefined,
});

describe("RateLimit fields (draft-ietf-httpapi-ratelimit-headers-11)", () => {
  it("lists every policy with quota, window and partition key; reports the most constrained", () => {
    const d = decision([
      state({ policy: "minute", limit: 60, used: 48, remaining: 12, resetSeconds: 40 }),
      state({ policy: "day", limit: 10_000, used: 48, remaining: 9952, resetSeconds: 80_000 }),
    ]);
    expect(rateLimitFields(d, "search")).toEqual({
      "ratelimit-policy": '"minute";q=60;w=60;pk=:c2VhcmNo:, "day";q=10000;w=86400;pk=:c2VhcmNo:',
      ratelimit: '"minute";r=12;t=40;pk=:c2VhcmNo:',
    });
    expect(rateLimitFields(d).ratelimit).toBe('"minute";r=12;t=40');
  });

  it("the day is the most constrained when it has fewer requests left", () => {
    const d = decision([
      state({ policy: "minute", remaining: 50 }),
      state({ policy: "day", limit: 100, remaining: 3, resetSeconds: 3600 }),
    ]);
    expect(mostConstrained(d).policy).toBe("day");
  });

  it("on equal remaining, the window that ends last; when refused, a violated policy", () => {
    const tie = decision([
      state({ policy: "minute", remaining: 0, resetSeconds: 30 }),
      state({ policy: "day", remaining: 0, resetSeconds: 5000 }),
    ]);
    expect(mostConstrained(tie).policy).toBe("day");
    const refused = decision(
      [
        state({ policy: "minute", remaining: 0, resetSeconds: 30 }),
        state({ policy: "day", remaining: 0, resetSeconds: 5000 }),
      ],
      ["minute"],
    );
    expect(mostConstrained(refused).policy).toBe("minute");
  });
});
