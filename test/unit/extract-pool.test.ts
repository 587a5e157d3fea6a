import { afterAll, describe, expect, it } from "vitest";
import { ExtractionError } from "../../src/modules/ingestion/extract.js";
import {
  createThreadExtractor,
  inlineExtractor,
} from "../../src/modules/ingestion/extract-pool.js";
import { rejectionOf } from "../fixtures/errors.js";
import { buildPdf } from "../fixtures/pdf.js";

const extractionError = (p: Promise<unknown>) => rejectionOf(p, ExtractionError);

const PARA = "<p>The harbour lantern shines over the copper meadow while the falcon circles.</p>";
const page = (paragraphs: number) =>
  Buffer.from(
    `<html><head><title>Harbour notes</title></head><body><article>${PARA.repeat(paragraphs)}</article></body></html>`,
  );

describe("extraction in worker threads", () => {
  const extractor = createThreadExtractor({ threads: 2, timeoutMs: 30_000 });
  afterAll(() => extractor.close());

  it("gives the same text, title and page count as extraction in the calling thread", async () => {
    const pdf = buildPdf(["Opening hours are nine to five.", "Closed on Mondays."]);
    for (const [bytes, kind] of [
      [page(20), "html"],
      [pdf, "pdf"],
      [Buffer.from("# Menu\n\nSoup of the day."), "md"],
    ] as const) {
      expect(await extractor.extract(bytes, kind)).toEqual(
        await inlineExtractor.extract(bytes, kind),
      );
    }
  });

  it("reports a document's extraction error with its code, and goes on working", async () => {
    const corrupt = Buffer.concat([Buffer.from("%PDF-1.7\n"), Buffer.alloc(300, 0x41)]);
    const err = await extractionError(extractor.extract(corrupt, "pdf"));
    expect(err.code).toBe("ingestion.pdf_corrupt");
    expect((await extractor.extract(page(1), "html")).title).toBe("Harbour notes");
  });

  it("leaves the calling thread free while a large page is parsed", async () => {
    // Parsing is synchronous: in the calling thread, nothing else runs until it is done, so a
    // timer set now would fire only after the extraction has resolved.
    const big = page(20_000);
    const order: string[] = [];
    const timer = new Promise<void>((resolve) =>
      setTimeout(() => {
        order.push("timer");
        resolve();
      }, 5),
    );
    const threaded = extractor.extract(big, "html").then(() => order.push("extracted"));
    await Promise.all([timer, threaded]);
    expect(order).toEqual(["timer", "extracted"]);

    order.length = 0;
    const inline = inlineExtractor.extract(big, "html").then(() => order.push("extracted"));
    const timer2 = new Promise<void>((resolve) =>
      setTimeout(() => {
        order.push("timer");
        resolve();
      }, 5),
    );
    await Promise.all([timer2, inline]);
    expect(order).toEqual(["extracted", "timer"]);
  });

  it("runs more extractions than threads, each once, all answered", async () => {
    const texts = await Promise.all(
      Array.from({ length: 7 }, (_, i) =>
        extractor.extract(Buffer.from(`document number ${i}`), "txt"),
      ),
    );
    expect(texts.map((d) => d.text)).toEqual(
      Array.from({ length: 7 }, (_, i) => `document number ${i}`),
    );
  });
});

describe("extraction limits", () => {
  it("stops an extraction past its time limit with a code, and the next one runs", async () => {
    const slow = createThreadExtractor({ threads: 1, timeoutMs: 200 });
    try {
      const err = await extractionError(slow.extract(page(40_000), "html"));
      expect(err.code).toBe("ingestion.extraction_timeout");
      expect((await slow.extract(Buffer.from("still here"), "txt")).text).toBe("still here");
    } finally {
      await slow.close();
    }
  });

  it("gives a document waiting for a thread its whole time limit once it starts", async () => {
    const slow = createThreadExtractor({ threads: 1, timeoutMs: 200 });
    try {
      // The second waits longer than 200 ms for the one thread (and its replacement): it must
      // still run, because its time counts only from its own start.
      const first = extractionError(slow.extract(page(40_000), "html"));
      const second = slow.extract(Buffer.from("waited its turn"), "txt");
      expect((await first).code).toBe("ingestion.extraction_timeout");
      expect((await second).text).toBe("waited its turn");
    } finally {
      await slow.close();
    }
  });

  it("stops an extraction when its caller aborts, with the caller's reason", async () => {
    const pool = createThreadExtractor({ threads: 1, timeoutMs: 60_000 });
    try {
      const controller = new AbortController();
      const reason = new Error("the job was cancelled");
      const aborted = pool
        .extract(page(40_000), "html", { signal: controller.signal })
        .catch((e: unknown) => e);
      const queued = pool.extract(Buffer.from("next in line"), "txt");
      setTimeout(() => controller.abort(reason), 100);
      expect(await aborted).toBe(reason);
      // The thread was stopped and replaced: what waited behind it runs.
      expect((await queued).text).toBe("next in line");
      await expect(
        pool.extract(Buffer.from("x"), "txt", { signal: AbortSignal.abort(reason) }),
      ).rejects.toBe(reason);
    } finally {
      await pool.close();
    }
  });

  it("fails a document that needs more memory than a thread may use, not the process", async () => {
    const small = createThreadExtractor({ threads: 1, timeoutMs: 60_000, maxHeapMb: 16 });
    try {
      const err = await extractionError(small.extract(page(60_000), "html"));
      expect(err.code).toBe("ingestion.extraction_failed");
      expect((await small.extract(Buffer.from("after"), "txt")).text).toBe("after");
    } finally {
      await small.close();
    }
  });

  it("refuses work once closed, and fails what was waiting", async () => {
    const closing = createThreadExtractor({ threads: 1, timeoutMs: 60_000 });
    const running = closing.extract(page(20_000), "html").catch((e: unknown) => e);
    const queued = closing.extract(Buffer.from("queued"), "txt").catch((e: unknown) => e);
    await closing.close();
    expect(await running).toBeInstanceOf(Error);
    expect(String(await queued)).toMatch(/closed/);
    await expect(closing.extract(Buffer.from("x"), "txt")).rejects.toThrow(/closed/);
  });
});
