import { describe, expect, it } from "vitest";
import { csvField, csvLine } from "../../src/modules/usage/export.js";
import {
  deserializeSketch,
  LN_GAMMA,
  mergeSketches,
  newSketch,
  serializeSketch,
  sketchFromBuckets,
} from "../../src/modules/usage/sketch.js";

describe("latency sketches", () => {
  it("built from SQL-style bucket counts, answer as a sketch fed every value does", () => {
    const values = Array.from({ length: 20_000 }, (_, i) => 0.5 + ((i * 7919) % 10_007) / 3);
    const counts = new Map<number, number>();
    for (const v of values) {
      const k = Math.ceil(Math.log(v) / LN_GAMMA);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    const fromBuckets = sketchFromBuckets([...counts].map(([bucket, n]) => ({ bucket, n })));
    const direct = newSketch();
    for (const v of values) direct.accept(v);
    for (const q of [0.5, 0.95, 0.99]) {
      expect(fromBuckets.getValueAtQuantile(q)).toBeCloseTo(direct.getValueAtQuantile(q), 9);
    }
  });

  it("survive serialisation and merge; zeros included; bad bytes are refused", () => {
    const a = newSketch();
    const b = newSketch();
    for (let i = 0; i < 1000; i++) a.accept(1 + i);
    for (let i = 0; i < 10; i++) b.accept(0);
    const back = deserializeSketch(serializeSketch(a));
    expect(back.count).toBe(1000);
    expect(back.getValueAtQuantile(0.95)).toBeCloseTo(a.getValueAtQuantile(0.95), 9);
    const merged = mergeSketches([serializeSketch(a), null, serializeSketch(b)]);
    expect(merged?.count).toBe(1010);
    expect(merged?.getValueAtQuantile(0)).toBe(0);
    expect(mergeSketches([null])).toBeNull();
    expect(() => deserializeSketch(new Uint8Array([2, 0, 0]))).toThrow(/format/);
  });
});

describe("CSV (RFC 4180)", () => {
  it("quotes only fields with a comma, quote, CR or LF, doubling quotes; lines end with CRLF", () => {
    expect(csvField("plain")).toBe("plain");
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField("a,b")).toBe('"a,b"');
    expect(csvField("two\nlines")).toBe('"two\nlines"');
    expect(csvField("cr\r")).toBe('"cr\r"');
    expect(csvField(null)).toBe("");
    expect(csvField(12.5)).toBe("12.5");
    expect(csvField(new Date("2027-01-01T00:00:00Z"))).toBe("2027-01-01T00:00:00.000Z");
    expect(csvLine(["a", "b,c", null])).toBe('a,"b,c",\r\n');
  });
});
