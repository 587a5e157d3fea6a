/**
 * Text extraction: how long documents take to extract, and how long the calling thread stalls
 * meanwhile, with extraction in the calling thread (`inlineExtractor`) and in worker threads
 * (`createThreadExtractor`, what the pipeline uses). The stall is the largest lag of a 1 ms
 * timer during the extraction: what every other request of the process waits at worst.
 *
 *   npm run bench:extract -- --repeat=5
 *
 * Inputs: HTML articles of ~1 MB and ~5 MB (paragraphs of prose in <article>), and PDFs of 100
 * and 500 pages (test/fixtures/pdf.ts), each extracted `repeat` times per mode after one
 * warm-up; the median is reported.
 */

import type { DocumentKind } from "../src/modules/ingestion/extract.js";
import {
  createThreadExtractor,
  type Extractor,
  inlineExtractor,
} from "../src/modules/ingestion/extract-pool.js";
import { buildPdf } from "../test/fixtures/pdf.js";
import { intOption, ms, printFooter, printHeader, ratio, summarize, table } from "./lib/report.js";

const opts = { repeat: intOption("repeat", 5) };

const PARA =
  "<p>The harbour lantern shines over the copper meadow while the falcon circles the quarry.</p>";
const html = (paragraphs: number) =>
  Buffer.from(
    `<html><head><title>Bench</title></head><body><article>${PARA.repeat(paragraphs)}</article></body></html>`,
  );
const WORDS = "harbour lantern copper meadow violet granite saffron orchard falcon quarry".split(
  " ",
);
const pdf = (pages: number) =>
  buildPdf(
    Array.from({ length: pages }, (_, p) => `${WORDS[p % WORDS.length]} page ${p} of the report`),
  );

const INPUTS: Array<{ name: string; bytes: Buffer; kind: DocumentKind }> = [
  { name: "HTML ~1 MB", bytes: html(11_000), kind: "html" },
  { name: "HTML ~5 MB", bytes: html(55_000), kind: "html" },
  { name: "PDF 100 pages", bytes: pdf(100), kind: "pdf" },
  { name: "PDF 500 pages", bytes: pdf(500), kind: "pdf" },
];

/** One extraction: its wall time and the worst lag of a 1 ms timer meanwhile. */
async function once(extractor: Extractor, bytes: Buffer, kind: DocumentKind) {
  let worst = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 1);
  const t0 = performance.now();
  await extractor.extract(bytes, kind);
  const wall = performance.now() - t0;
  // Let the timer run once more: a stall shows as the lag of its next tick.
  await new Promise((r) => setTimeout(r, 5));
  clearInterval(timer);
  return { wall, stall: worst };
}

async function main() {
  printHeader("tenantrag text-extraction benchmark", opts);
  const threaded = createThreadExtractor({ threads: 1, timeoutMs: 600_000 });
  const rows: Array<Array<string | number>> = [];
  const ratios: Array<Array<string | number>> = [];
  try {
    for (const input of INPUTS) {
      const result: Record<string, { wall: number; stall: number }> = {};
      for (const [mode, extractor] of [
        ["calling thread", inlineExtractor],
        ["worker thread", threaded],
      ] as const) {
        await once(extractor, input.bytes, input.kind);
        const walls: number[] = [];
        const stalls: number[] = [];
        for (let i = 0; i < opts.repeat; i++) {
          const r = await once(extractor, input.bytes, input.kind);
          walls.push(r.wall);
          stalls.push(r.stall);
        }
        result[mode] = { wall: summarize(walls).p50, stall: summarize(stalls).p50 };
        rows.push([
          input.name,
          `${(input.bytes.length / 1024 ** 2).toFixed(2)} MB`,
          mode,
          ms(summarize(walls).p50),
          ms(summarize(stalls).p50),
        ]);
        console.log(`  ${input.name} · ${mode}: ${ms(summarize(walls).p50)} ms`);
      }
      const inline = result["calling thread"] as { wall: number; stall: number };
      const worker = result["worker thread"] as { wall: number; stall: number };
      ratios.push([input.name, ratio(worker.wall, inline.wall), ratio(worker.stall, inline.stall)]);
    }
  } finally {
    await threaded.close();
  }
  console.log("\n## Extraction (median of the repeats)\n");
  table(["input", "size", "mode", "wall ms", "longest stall ms"], rows);
  console.log("## Worker thread / calling thread, same run\n");
  table(["input", "wall", "stall"], ratios);
}

await main();
printFooter();
