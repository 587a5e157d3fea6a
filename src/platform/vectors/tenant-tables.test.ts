import { describe, expect, it } from "vitest";
import { fragmentLimit } from "./tenant-tables.js";

describe("fragmentLimit: when a write compacts a table", () => {
  it("keeps small tables at the minimum, grows one fragment per 100 rows, stops at the maximum", () => {
    expect(fragmentLimit(0, 32, 256)).toBe(32);
    expect(fragmentLimit(3_200, 32, 256)).toBe(32);
    expect(fragmentLimit(10_000, 32, 256)).toBe(100);
    expect(fragmentLimit(10_001, 32, 256)).toBe(101);
    expect(fragmentLimit(1_000_000, 32, 256)).toBe(256);
  });

  it("is fixed when the maximum is the minimum, and off when the minimum is 0", () => {
    expect(fragmentLimit(1_000_000, 32, 32)).toBe(32);
    expect(fragmentLimit(1_000_000, 0, 256)).toBe(0);
  });
});
