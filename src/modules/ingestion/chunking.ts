import { RecursiveCharacterTextSplitter } from "@langchain/textsplitters";
import { assertNever } from "../../errors.js";

/**
 * Splitting extracted text into the chunks that are embedded and searched.
 *
 * `size` and `overlap` are the tenant's `chunkSize` and `chunkOverlap`, counted in characters,
 * where a character is a Unicode code point: an emoji counts as one and is never cut in half
 * (a lone surrogate would reach the embedder as U+FFFD).
 */

export type ChunkStrategy = "fixed" | "paragraph" | "recursive";

export interface ChunkOptions {
  /** Most characters in a chunk; every chunk respects it. */
  size: number;
  /** Characters shared by neighbouring chunks; see each strategy for how exactly. */
  overlap: number;
  strategy: ChunkStrategy;
}

/**
 * Splits `text` into chunks of at most `size` characters, none empty or blank, the same chunks
 * for the same input every time.
 *
 * - `fixed`: a window of `size` characters moved by `size − overlap`: neighbouring chunks share
 *   exactly `overlap` characters, and words are cut wherever the window ends.
 * - `recursive`: LangChain's recursive splitter: cuts at paragraph breaks, then line breaks,
 *   then sentence ends, then spaces, and only then inside words; neighbours share up to
 *   `overlap` characters of whole pieces. Chunks are trimmed.
 * - `paragraph`: whole paragraphs (split at blank lines) grouped while they fit in `size`;
 *   groups do not overlap, since a paragraph is a natural boundary. A paragraph longer than
 *   `size` is cut on its own as `recursive` does, with `overlap`.
 *
 * Asynchronous because LangChain's splitters are.
 */
export async function chunkText(text: string, opts: ChunkOptions): Promise<string[]> {
  const { size, overlap, strategy } = opts;
  if (!Number.isInteger(size) || size < 1)
    throw new RangeError(`chunk size must be a positive integer, got ${size}`);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= size) {
    throw new RangeError(`chunk overlap must be an integer in [0, ${size}), got ${overlap}`);
  }
  const normalized = text.replace(/\r\n?/g, "\n");
  switch (strategy) {
    case "fixed":
      return fixedChunks(normalized, size, overlap);
    case "recursive":
      return recursiveSplitter(size, overlap).splitText(normalized);
    case "paragraph":
      return paragraphChunks(normalized, size, overlap);
    default:
      return assertNever(strategy);
  }
}

function fixedChunks(text: string, size: number, overlap: number): string[] {
  const chars = Array.from(text);
  const step = size - overlap;
  const chunks: string[] = [];
  for (let start = 0; start < chars.length; start += step) {
    const end = Math.min(start + size, chars.length);
    const chunk = chars.slice(start, end).join("");
    if (chunk.trim() !== "") chunks.push(chunk);
    // The window reached the end: a further one would only repeat the overlap.
    if (end === chars.length) break;
  }
  return chunks;
}

async function paragraphChunks(text: string, size: number, overlap: number): Promise<string[]> {
  const paragraphs = text
    .split(/\n[ \t]*\n/)
    .map((p) => p.trim())
    .filter((p) => p !== "");
  const chunks: string[] = [];
  let group: string[] = [];
  let groupLength = 0;
  const flush = () => {
    if (group.length > 0) chunks.push(group.join("\n\n"));
    group = [];
    groupLength = 0;
  };
  for (const paragraph of paragraphs) {
    const length = codePoints(paragraph);
    if (length > size) {
      flush();
      chunks.push(...(await recursiveSplitter(size, overlap).splitText(paragraph)));
      continue;
    }
    // Two characters for the blank line that joins this paragraph to the group.
    const joined = group.length === 0 ? length : groupLength + 2 + length;
    if (joined > size) flush();
    groupLength = group.length === 0 ? length : groupLength + 2 + length;
    group.push(paragraph);
  }
  flush();
  return chunks;
}

/** Paragraph, line, sentence, clause, word, then character. */
const SEPARATORS = ["\n\n", "\n", ". ", "! ", "? ", "。", "; ", ", ", " ", ""];

/**
 * LangChain's recursive splitter with two fixes: a separator stays at the end of the piece it
 * closes (a sentence keeps its full stop, instead of the next chunk starting with ". "), and
 * the last-resort split is by code point, not by UTF-16 unit, so no surrogate pair is cut.
 */
class CodePointSplitter extends RecursiveCharacterTextSplitter {
  protected override splitOnSeparator(text: string, separator: string): string[] {
    if (separator === "") return Array.from(text);
    const pieces: string[] = [];
    let start = 0;
    for (let at = text.indexOf(separator); at !== -1; at = text.indexOf(separator, start)) {
      pieces.push(text.slice(start, at + separator.length));
      start = at + separator.length;
    }
    pieces.push(text.slice(start));
    return pieces.filter((p) => p !== "");
  }
}

function recursiveSplitter(size: number, overlap: number): CodePointSplitter {
  return new CodePointSplitter({
    chunkSize: size,
    chunkOverlap: overlap,
    separators: SEPARATORS,
    keepSeparator: true,
    lengthFunction: codePoints,
  });
}

function codePoints(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}
