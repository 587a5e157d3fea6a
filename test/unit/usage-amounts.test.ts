import { describe, expect, it } from "vitest";
import { unitOf, usageEventId } from "../../src/modules/usage/ledger.js";
import { plainDecimal, usdAmount } from "../../src/modules/usage/usage.schemas.js";

describe("usage amounts and ids", () => {
  it("writes JSON numbers as the exact decimals they were written as", () => {
    expect(plainDecimal(2e-8)).toBe("0.00000002");
    expect(plainDecimal(1.3e-7)).toBe("0.00000013");
    expect(plainDecimal(0.5)).toBe("0.5");
    expect(plainDecimal(1e21)).toBe("1000000000000000000000");
    expect(plainDecimal(1.25e22)).toBe("12500000000000000000000");
  });

  it("takes prices as strings or numbers within the book's scale, and refuses the rest", () => {
    expect(usdAmount.parse("0.000000020")).toBe("0.000000020");
    expect(usdAmount.parse(0)).toBe("0");
    expect(usdAmount.parse(2e-8)).toBe("0.00000002");
    expect(usdAmount.parse("999999999.000000000000001")).toBe("999999999.000000000000001");
    for (const bad of [
      -1,
      "-1",
      "1e-8",
      " 1",
      "1.",
      ".5",
      "1000000000",
      "0.0000000000000001",
      1e21,
    ])
      expect(usdAmount.safeParse(bad).success, String(bad)).toBe(false);
  });

  it("derives one event id per (tenant, metric, subject), and each metric's unit", () => {
    const t = "9f0e0c4e-7d0a-4c43-9a39-0d1f3d8a5b11";
    const id = usageEventId(t, "embedding_tokens", { type: "document_version", id: "v1" });
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(usageEventId(t, "embedding_tokens", { type: "document_version", id: "v1" })).toBe(id);
    expect(usageEventId(t, "search_queries", { type: "document_version", id: "v1" })).not.toBe(id);
    expect(usageEventId(t, "embedding_tokens", { type: "search", id: "v1" })).not.toBe(id);
    expect(unitOf("chat_output_tokens")).toBe("output_token");
    expect(unitOf("storage_bytes")).toBe("byte");
    expect(unitOf("documents_stored")).toBe("document");
  });
});
