import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  constantTimeEqual,
  decryptSecret,
  encryptSecret,
  hashPassword,
  randomToken,
  sha256Hex,
  verifyPassword,
} from "../../src/platform/crypto/index.js";

const key = randomBytes(32);
const IV_BYTES = 12;
const TAG_BYTES = 16;

describe("encryptSecret / decryptSecret (AES-256-GCM)", () => {
  it.each([
    ["an API key", "sk-live-0123456789abcdef"],
    ["the empty string", ""],
    ["non-ASCII text", "clé secrète — 秘密 🔑"],
    ["a long value", "x".repeat(10_000)],
  ])("round-trips %s", (_label, plaintext) => {
    expect(decryptSecret(key, encryptSecret(key, plaintext))).toBe(plaintext);
  });

  it("does not contain the plaintext", () => {
    const plaintext = "sk-live-visible-secret";
    const sealed = encryptSecret(key, plaintext);
    expect(sealed.includes(Buffer.from(plaintext))).toBe(false);
    expect(sealed.length).toBe(IV_BYTES + TAG_BYTES + Buffer.byteLength(plaintext));
  });

  it("uses a fresh IV each time, so equal secrets give different ciphertexts", () => {
    const a = encryptSecret(key, "same secret");
    const b = encryptSecret(key, "same secret");
    expect(a.equals(b)).toBe(false);
    expect(a.subarray(0, IV_BYTES).equals(b.subarray(0, IV_BYTES))).toBe(false);
    expect(decryptSecret(key, a)).toBe(decryptSecret(key, b));
  });

  it.each([
    ["the IV", 0],
    ["the tag", IV_BYTES + 3],
    ["the ciphertext", IV_BYTES + TAG_BYTES + 2],
  ])("detects a flipped byte in %s", (_label, index) => {
    const sealed = encryptSecret(key, "sk-live-0123456789abcdef");
    const tampered = Buffer.from(sealed);
    tampered[index] = (tampered[index] as number) ^ 0x01;
    expect(() => decryptSecret(key, tampered)).toThrow();
    // The original is untouched and still opens.
    expect(decryptSecret(key, sealed)).toBe("sk-live-0123456789abcdef");
  });

  it("detects truncated data", () => {
    const sealed = encryptSecret(key, "sk-live-0123456789abcdef");
    expect(() => decryptSecret(key, sealed.subarray(0, sealed.length - 1))).toThrow();
    expect(() => decryptSecret(key, sealed.subarray(0, IV_BYTES + TAG_BYTES))).toThrow();
  });

  it("refuses to open with another key", () => {
    const sealed = encryptSecret(key, "sk-live-0123456789abcdef");
    expect(() => decryptSecret(randomBytes(32), sealed)).toThrow();
  });

  it("refuses a key that is not 32 bytes", () => {
    expect(() => encryptSecret(randomBytes(16), "x")).toThrow();
  });
});

describe("hashPassword / verifyPassword", () => {
  it("hashes with argon2id and verifies the right password only", async () => {
    const hash = await hashPassword("correct horse battery");
    expect(hash.startsWith("$argon2id$")).toBe(true);
    expect(hash).not.toContain("correct horse battery");
    expect(await verifyPassword(hash, "correct horse battery")).toBe(true);
    expect(await verifyPassword(hash, "correct horse batterY")).toBe(false);
    expect(await verifyPassword(hash, "")).toBe(false);
  });

  it("salts: the same password hashes differently each time", async () => {
    const [a, b] = await Promise.all([
      hashPassword("same password"),
      hashPassword("same password"),
    ]);
    expect(a).not.toBe(b);
    expect(await verifyPassword(b, "same password")).toBe(true);
  });

  it.each([
    ["garbage", "not a hash"],
    ["empty", ""],
    ["a truncated argon2 hash", "$argon2id$v=19$m=65536,t=3,p=4$"],
    ["a bcrypt hash", "$2b$10$abcdefghijklmnopqrstuu5bQ0nE2rGxT3pdk3H0nZ0J8u8bXk0aK"],
  ])("returns false, not an error, for %s", async (_label, hash) => {
    await expect(verifyPassword(hash, "anything")).resolves.toBe(false);
  });
});

describe("tokens and hashes", () => {
  it("randomToken is the prefix and 43 base64url characters (32 bytes) by default", () => {
    const token = randomToken("trk_");
    expect(token).toMatch(/^trk_[A-Za-z0-9_-]{43}$/);
    expect(randomToken("trk_")).not.toBe(token);
  });

  it("randomToken honours the byte count", () => {
    expect(randomToken("", 16)).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it("sha256Hex is the lowercase hex SHA-256", () => {
    expect(sha256Hex("abc")).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });

  it("constantTimeEqual compares contents, including strings of different lengths", () => {
    expect(constantTimeEqual("token-a", "token-a")).toBe(true);
    expect(constantTimeEqual("token-a", "token-b")).toBe(false);
    expect(constantTimeEqual("token", "token-a")).toBe(false);
  });
});
