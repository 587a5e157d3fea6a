import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addressKey } from "../../src/modules/auth/login-throttle.js";
import { expectError, signup, startApp, type TestApp, uniqueEmail } from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";

const MAX_PER_EMAIL = 3;
const MAX_PER_ADDRESS = 6;

let lastOctets = 0;
/** A client address of its own per test, so that tests never spend each other's budgets. */
function newAddress(): string {
  lastOctets += 1;
  return `10.${(process.pid % 200) + 1}.${Math.floor(lastOctets / 250)}.${(lastOctets % 250) + 1}`;
}

function tally(responses: LightMyRequestResponse[]) {
  const count = (status: number) => responses.filter((r) => r.statusCode === status).length;
  for (const r of responses.filter((x) => x.statusCode === 429)) {
    expectError(r, 429, "auth.too_many_attempts");
    expect(Number(r.headers["retry-after"])).toBeGreaterThan(0);
  }
  return { ok: count(200), wrong: count(401), refused: count(429) };
}

describe.each(backends)("login throttle ($name)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    // On PostgreSQL the app runs with Redis when the suite has one: the Redis throttle.
    t = await startApp(backend, {
      LOGIN_MAX_FAILURES: String(MAX_PER_EMAIL),
      LOGIN_MAX_FAILURES_PER_IP: String(MAX_PER_ADDRESS),
      LOGIN_LOCKOUT_SECONDS: "60",
    });
  });
  afterAll(() => t.close());

  const login = (email: string, password: string, remoteAddress: string) =>
    t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email, password },
      remoteAddress,
    });

  it("checks at most LOGIN_MAX_FAILURES passwords of 100 concurrent wrong logins for one email", async () => {
    const s = await signup(t.app);
    // From many addresses, so that only the email's budget applies.
    const all = await Promise.all(
      Array.from({ length: 100 }, () => login(s.email, "wrong password", newAddress())),
    );
    const n = tally(all);
    expect(n.wrong).toBe(MAX_PER_EMAIL);
    expect(n.refused).toBe(100 - MAX_PER_EMAIL);
  });

  it("of 40 concurrent logins (39 wrong, 1 right) evaluates at most the budget", async () => {
    const s = await signup(t.app);
    const attempts = Array.from({ length: 40 }, (_, i) =>
      login(s.email, i === 39 ? s.password : "wrong password", newAddress()),
    );
    const n = tally(await Promise.all(attempts));
    expect(n.ok + n.wrong).toBeLessThanOrEqual(MAX_PER_EMAIL);
    expect(n.ok).toBeLessThanOrEqual(1);
    expect(n.refused).toBe(40 - n.ok - n.wrong);
  });

  it("refuses the right password once concurrent failures have spent the budget", async () => {
    const s = await signup(t.app);
    await Promise.all(
      Array.from({ length: 20 }, () => login(s.email, "wrong password", newAddress())),
    );
    const again = await Promise.all([
      login(s.email, s.password, newAddress()),
      ...Array.from({ length: 10 }, () => login(s.email, "wrong password", newAddress())),
    ]);
    expect(tally(again).refused).toBe(11);
  });

  it("a success gives its attempt back but does not erase earlier failures", async () => {
    const s = await signup(t.app);
    const from = newAddress();
    expectError(await login(s.email, "wrong password", from), 401, "auth.invalid_credentials");
    expectError(await login(s.email, "wrong password", from), 401, "auth.invalid_credentials");
    for (let i = 0; i < 3; i++)
      expect((await login(s.email, s.password, from)).statusCode).toBe(200);
    expectError(await login(s.email, "wrong password", from), 401, "auth.invalid_credentials");
    expectError(await login(s.email, s.password, from), 429, "auth.too_many_attempts");
  });

  it("bounds failures per client address across many emails, concurrent or not", async () => {
    const from = newAddress();
    const all = await Promise.all(
      Array.from({ length: 30 }, () => login(uniqueEmail("spray"), "wrong password", from)),
    );
    const n = tally(all);
    expect(n.wrong).toBe(MAX_PER_ADDRESS);
    // The address is blocked, even for an account that has not failed; other addresses are not.
    const s = await signup(t.app);
    const blocked = expectError(
      await login(s.email, s.password, from),
      429,
      "auth.too_many_attempts",
    );
    expect(blocked.error.message).toContain("address");
    expect((await login(s.email, s.password, newAddress())).statusCode).toBe(200);
    // The refusals at the address did not spend the accounts' budgets.
    expect((await login(s.email, s.password, newAddress())).statusCode).toBe(200);
  });

  it("counts an IPv6 /64 as one address", async () => {
    const prefix = `2001:db8:${(process.pid % 9000) + 1000}:${newAddress().split(".")[3]}`;
    const all = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        login(uniqueEmail("v6"), "wrong password", `${prefix}::${(i + 1).toString(16)}`),
      ),
    );
    expect(tally(all).wrong).toBe(MAX_PER_ADDRESS);
  });
});

describe("addressKey", () => {
  it.each([
    ["192.0.2.7", "192.0.2.7"],
    ["::ffff:192.0.2.7", "192.0.2.7"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:0db8:0001:0002::9", "2001:db8:1:2::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
  ])("%s → %s", (ip, key) => {
    expect(addressKey(ip)).toBe(key);
  });
});
