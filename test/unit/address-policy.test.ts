import { describe, expect, it } from "vitest";
import {
  checkUrlTarget,
  classifyAddress,
  isAllowedAddress,
} from "../../src/platform/fetch/safe-fetch.js";
import { fetchFailure, stubResolver } from "../fixtures/fetch.js";

// The SSRF address policy and the per-hop target check, with stub resolvers: no traffic at all.
// Fetching itself (redirects re-checked, caps, timeouts) is in test/integration/safe-fetch.test.ts.

describe("address policy", () => {
  it.each([
    ["10.0.0.1", "private"],
    ["10.255.255.255", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.254", "private"],
    ["192.168.1.1", "private"],
    ["127.0.0.1", "loopback"],
    ["127.12.34.56", "loopback"],
    ["169.254.1.1", "link-local"],
    ["169.254.169.254", "metadata"],
    ["100.64.0.1", "cgnat"],
    ["100.127.255.254", "cgnat"],
    ["0.0.0.0", "unspecified"],
    ["224.0.0.1", "multicast"],
    ["255.255.255.255", "reserved"],
    ["::1", "loopback"],
    ["::", "unspecified"],
    ["fc00::1", "unique-local"],
    ["fd12:3456:789a::1", "unique-local"],
    ["fe80::1", "link-local"],
    ["fe80::1%eth0", "link-local"],
    ["febf:ffff::1", "link-local"],
    ["ff02::1", "multicast"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::ffff:10.0.0.1", "private"],
    ["::ffff:169.254.169.254", "metadata"],
    ["64:ff9b::a00:1", "private"], // NAT64 of 10.0.0.1
    ["2002:c0a8:0101::1", "private"], // 6to4 of 192.168.1.1
    ["fd00:ec2::254", "metadata"],
  ])("refuses %s (%s)", (address, kind) => {
    expect(classifyAddress(address)).toBe(kind);
    expect(isAllowedAddress(address, false)).toBe(false);
  });

  it.each([
    "8.8.8.8",
    "1.1.1.1",
    "172.15.255.255",
    "172.32.0.1",
    "100.63.255.255",
    "100.128.0.1",
    "192.169.0.1",
    "11.0.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
  ])("allows the public address %s", (address) => {
    expect(classifyAddress(address)).toBe("public");
    expect(isAllowedAddress(address, false)).toBe(true);
  });

  it("opens private targets when allowed, but never cloud metadata", () => {
    for (const address of ["127.0.0.1", "10.0.0.1", "::1", "fd12::1", "169.254.1.1"]) {
      expect(isAllowedAddress(address, true)).toBe(true);
    }
    for (const address of [
      "169.254.169.254",
      "::ffff:169.254.169.254",
      "fd00:ec2::254",
      "100.100.100.200",
    ]) {
      expect(isAllowedAddress(address, true)).toBe(false);
    }
  });

  it("refuses what is not an IP address, whatever the setting", () => {
    expect(classifyAddress("example.com")).toBe("invalid");
    expect(isAllowedAddress("example.com", true)).toBe(false);
    expect(isAllowedAddress("", false)).toBe(false);
  });
});

describe("checkUrlTarget", () => {
  const resolve = stubResolver({
    "public.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "internal.example": ["10.0.0.5"],
    "mixed.example": ["93.184.216.34", "127.0.0.1"],
    "metadata.example": ["169.254.169.254"],
  });

  it("passes a public host and returns the addresses to connect to", async () => {
    const target = await checkUrlTarget("https://public.example/start", { resolve });
    expect(target.addresses.map((a) => a.address)).toEqual([
      "93.184.216.34",
      "2606:2800:220:1:248:1893:25c8:1946",
    ]);
  });

  it("refuses a public page's redirect to a host that resolves privately", async () => {
    await checkUrlTarget("https://public.example/start", { resolve });
    const err = await fetchFailure(checkUrlTarget("http://internal.example/admin", { resolve }));
    expect(err.code).toBe("ingestion.url_forbidden");
    expect(err.message).toContain("10.0.0.5");
  });

  it("refuses a host with any private address among public ones", async () => {
    expect((await fetchFailure(checkUrlTarget("http://mixed.example/", { resolve }))).code).toBe(
      "ingestion.url_forbidden",
    );
  });

  it("refuses metadata hosts even when private targets are allowed", async () => {
    const err = await fetchFailure(
      checkUrlTarget("http://metadata.example/", { resolve, allowPrivate: true }),
    );
    expect(err.code).toBe("ingestion.url_forbidden");
  });

  it.each([
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://2130706433/", // 127.0.0.1 as a number
    "http://0x7f.1/",
    "http://[fe80::1]/",
    "http://0.0.0.0:8080/",
  ])("refuses the literal address in %s without resolving", async (url) => {
    const before = resolve.calls.length;
    expect((await fetchFailure(checkUrlTarget(url, { resolve }))).code).toBe(
      "ingestion.url_forbidden",
    );
    expect(resolve.calls.length).toBe(before);
  });
});
