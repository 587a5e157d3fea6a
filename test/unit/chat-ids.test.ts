import { describe, expect, it } from "vitest";
import { chatId, confidenceOf, tenantNamespace, uuidV5 } from "../../src/modules/chat/index.js";
import { isUuid } from "../../src/platform/ids.js";

const TENANT_A = "6d1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b";
const TENANT_B = "0a9b8c7d-6e5f-4a3b-9c1d-2e3f4a5b6c7d";

describe("chat ids", () => {
  it("is RFC 9562 UUIDv5 (the RFC's DNS example)", () => {
    expect(uuidV5("www.example.com", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")).toBe(
      "2ed6657d-e927-568b-95e1-2665a8aea6a2",
    );
  });

  it("maps an outside id to a UUID, the same every time, different per tenant", () => {
    const a = chatId(TENANT_A, "session", "test_123");
    expect(isUuid(a)).toBe(true);
    expect(a[14]).toBe("5");
    expect(chatId(TENANT_A, "session", "test_123")).toBe(a);
    expect(chatId(TENANT_B, "session", "test_123")).not.toBe(a);
    expect(a).toBe(uuidV5("session:test_123", tenantNamespace(TENANT_A)));
  });

  it("keeps sessions and users apart, and uses a UUID as is (lower-cased)", () => {
    expect(chatId(TENANT_A, "user", "test_123")).not.toBe(chatId(TENANT_A, "session", "test_123"));
    const uuid = "8F14E45F-CEEA-467F-A0E6-1B2C3D4E5F60";
    expect(chatId(TENANT_A, "session", uuid)).toBe(uuid.toLowerCase());
    expect(chatId(TENANT_B, "session", uuid)).toBe(uuid.toLowerCase());
  });
});

describe("chat confidence", () => {
  const passages = [{ id: 1, title: "Refunds", text: "Refunds are paid within five days." }];

  it("is 0 without an answer or without a citation", () => {
    expect(confidenceOf("refunds paid when", passages, { noAnswer: true, support: 1 }, 1)).toBe(0);
    expect(confidenceOf("refunds paid when", passages, { noAnswer: false, support: 1 }, 0)).toBe(0);
  });

  it("averages what retrieval found of the question with the model's support", () => {
    // Terms: refund, paid, kayak. Passages hold 2 of 3; the model's support is 0.5.
    expect(
      confidenceOf("Are refunds paid for a kayak?", passages, { noAnswer: false, support: 0.5 }, 1),
    ).toBe(Math.round(((2 / 3 + 0.5) / 2) * 1000) / 1000);
    expect(confidenceOf("refunds paid", passages, { noAnswer: false, support: 1 }, 1)).toBe(1);
  });
});
