import { describe, expect, it } from "vitest";
import { type ChunkStrategy, chunkText } from "../../src/modules/ingestion/chunking.js";

const STRATEGIES: ChunkStrategy[] = ["fixed", "paragraph", "recursive"];

/** Length in characters as chunking counts them: code points. */
const len = (s: string) => Array.from(s).length;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const SENTENCES = [
  "Tenants keep their documents apart.",
  "Every query is filtered by tenant.",
  "Chunks are embedded in batches!",
  "Is the overlap exact?",
  "Search returns the best chunks first.",
];
/** A document of several paragraphs of several sentences, ~2 000 characters. */
const DOCUMENT = Array.from({ length: 12 }, (_, p) =>
  Array.from({ length: 4 }, (_, s) => SENTENCES[(p + s) % SENTENCES.length]).join(" "),
).join("\n\n");

describe("chunkText: fixed", () => {
  it("cuts windows of exactly `size` characters whose neighbours share exactly `overlap`", async () => {
    const text = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(10);
    const chunks = await chunkText(text, { size: 50, overlap: 12, strategy: "fixed" });
    for (const chunk of chunks.slice(0, -1)) expect(chunk.length).toBe(50);
    for (let i = 1; i < chunks.length; i++) {
      expect((chunks[i] as string).slice(0, 12)).toBe((chunks[i - 1] as string).slice(-12));
    }
    // Dropping each overlap gives the text back: nothing lost, nothing repeated beyond it.
    expect(chunks.map((c, i) => (i === 0 ? c : c.slice(12))).join("")).toBe(text);
  });

  it("ends with the text's end and adds no chunk that only repeats the overlap", async () => {
    const chunks = await chunkText("x".repeat(100), { size: 40, overlap: 10, strategy: "fixed" });
    expect(chunks.map((c) => c.length)).toEqual([40, 40, 40]);
    const exact = await chunkText("y".repeat(70), { size: 40, overlap: 10, strategy: "fixed" });
    expect(exact.map((c) => c.length)).toEqual([40, 40]);
  });

  it("partitions the text when there is no overlap", async () => {
    const chunks = await chunkText(DOCUMENT, { size: 100, overlap: 0, strategy: "fixed" });
    expect(chunks.join("")).toBe(DOCUMENT);
  });

  it("counts an emoji as one character and never cuts one in half", async () => {
    const text = "🙂a🎉b".repeat(25);
    const chunks = await chunkText(text, { size: 7, overlap: 3, strategy: "fixed" });
    for (const chunk of chunks) {
      expect(LONE_SURROGATE.test(chunk)).toBe(false);
      expect(len(chunk)).toBeLessThanOrEqual(7);
    }
    expect(len(chunks[0] as string)).toBe(7);
    expect(Array.from(chunks[1] as string).slice(0, 3)).toEqual(
      Array.from(chunks[0] as string).slice(-3),
    );
  });
});

describe("chunkText: recursive", () => {
  it("keeps every chunk within size and cuts between sentences, not inside words", async () => {
    const chunks = await chunkText(DOCUMENT, { size: 120, overlap: 30, strategy: "recursive" });
    const words = new Set(DOCUMENT.split(/\s+/));
    for (const chunk of chunks) {
      expect(len(chunk)).toBeLessThanOrEqual(120);
      for (const word of chunk.split(/\s+/)) expect(words.has(word)).toBe(true);
      expect(chunk).toMatch(/[.!?]$/); // sentences keep their full stop
    }
  });

  it("covers the whole text, in order", async () => {
    const chunks = await chunkText(DOCUMENT, { size: 150, overlap: 0, strategy: "recursive" });
    expect(chunks.join(" ").replace(/\s+/g, " ")).toBe(DOCUMENT.replace(/\s+/g, " "));
  });

  it("repeats the end of a chunk at the start of the next when overlap allows", async () => {
    const text = Array.from({ length: 60 }, (_, i) => `w${i}`).join(" ");
    const chunks = await chunkText(text, { size: 40, overlap: 15, strategy: "recursive" });
    for (let i = 1; i < chunks.length; i++) {
      const firstWord = (chunks[i] as string).split(" ")[0] as string;
      expect((chunks[i - 1] as string).split(" ")).toContain(firstWord);
    }
  });

  it("splits a word longer than size into pieces within size", async () => {
    const word = "antidisestablishmentarianism".repeat(5);
    const chunks = await chunkText(`short ${word} end`, {
      size: 25,
      overlap: 0,
      strategy: "recursive",
    });
    for (const chunk of chunks) expect(len(chunk)).toBeLessThanOrEqual(25);
    expect(chunks.join("")).toContain(word);
  });

  it("cuts a run of emoji between characters, never inside one", async () => {
    const text = "🙂🎉🔑".repeat(20);
    const chunks = await chunkText(text, { size: 7, overlap: 2, strategy: "recursive" });
    for (const chunk of chunks) {
      expect(len(chunk)).toBeLessThanOrEqual(7);
      expect(LONE_SURROGATE.test(chunk)).toBe(false);
    }
    expect(chunks.length).toBeGreaterThan(8);
  });

  it("splits CJK text and emoji without breaking characters", async () => {
    const text = "多租户检索增强生成后端。每个租户的数据彼此隔离。🔒🔑🗝️".repeat(8);
    const chunks = await chunkText(text, { size: 15, overlap: 0, strategy: "recursive" });
    for (const chunk of chunks) {
      expect(len(chunk)).toBeLessThanOrEqual(15);
      expect(LONE_SURROGATE.test(chunk)).toBe(false);
    }
    expect(chunks.join("")).toBe(text);
  });
});

describe("chunkText: paragraph", () => {
  const paragraphs = DOCUMENT.split("\n\n");

  it("groups whole paragraphs while they fit, and never cuts one that fits", async () => {
    const size = 400;
    const chunks = await chunkText(DOCUMENT, { size, overlap: 50, strategy: "paragraph" });
    expect(chunks.length).toBeLessThan(paragraphs.length);
    const groups = chunks.map((c) => c.split("\n\n"));
    expect(groups.flat()).toEqual(paragraphs); // every paragraph whole, once, in order
    for (const [i, chunk] of chunks.entries()) {
      expect(len(chunk)).toBeLessThanOrEqual(size);
      // A group closes only when the next paragraph would not fit.
      const next = groups[i + 1]?.[0];
      if (next) expect(len(chunk) + 2 + len(next)).toBeGreaterThan(size);
    }
  });

  it("cuts a paragraph longer than size on its own, keeping its neighbours whole", async () => {
    const long = SENTENCES.join(" ").repeat(4);
    const text = `Short intro.\n\n${long}\n\nShort outro.`;
    const chunks = await chunkText(text, { size: 100, overlap: 20, strategy: "paragraph" });
    expect(chunks[0]).toBe("Short intro.");
    expect(chunks.at(-1)).toBe("Short outro.");
    for (const chunk of chunks) expect(len(chunk)).toBeLessThanOrEqual(100);
    expect(chunks.length).toBeGreaterThan(3);
  });
});

describe("chunkText: every strategy", () => {
  it.each(STRATEGIES)(
    "%s: yields no empty or blank chunks, even from blank-heavy text",
    async (strategy) => {
      const text = `\n\n   \n\nfirst part\n\n\n\n\t\n${" ".repeat(80)}\n\nsecond part\n\n   \n`;
      const chunks = await chunkText(text, { size: 20, overlap: 5, strategy });
      expect(chunks.length).toBeGreaterThan(0);
      for (const chunk of chunks) expect(chunk.trim()).not.toBe("");
      expect(chunks.join(" ")).toContain("first part");
      expect(chunks.join(" ")).toContain("second part");
    },
  );

  it.each(STRATEGIES)("%s: returns nothing for empty text", async (strategy) => {
    expect(await chunkText("", { size: 100, overlap: 10, strategy })).toEqual([]);
    expect(await chunkText(" \n\n ", { size: 100, overlap: 10, strategy })).toEqual([]);
  });

  it.each(STRATEGIES)("%s: is deterministic and within size", async (strategy) => {
    const opts = { size: 200, overlap: 40, strategy };
    const first = await chunkText(DOCUMENT, opts);
    expect(await chunkText(DOCUMENT, opts)).toEqual(first);
    for (const chunk of first) expect(len(chunk)).toBeLessThanOrEqual(200);
  });

  it.each(STRATEGIES)("%s: keeps a text shorter than size as one chunk", async (strategy) => {
    expect(await chunkText("One small document.", { size: 1000, overlap: 200, strategy })).toEqual([
      "One small document.",
    ]);
  });

  it.each([
    [100, 100],
    [100, 150],
    [100, -1],
    [0, 0],
    [10.5, 2],
  ])("refuses size %d with overlap %d", async (size, overlap) => {
    await expect(chunkText(DOCUMENT, { size, overlap, strategy: "recursive" })).rejects.toThrow(
      RangeError,
    );
  });
});
