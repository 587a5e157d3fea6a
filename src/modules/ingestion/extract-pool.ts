import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Piscina } from "piscina";
import {
  type DocumentKind,
  type ExtractedDocument,
  ExtractionError,
  type ExtractOptions,
  extractDocument,
} from "./extract.js";
import type { ExtractReply, ExtractRequest, StartedMessage } from "./extract.worker.js";

export interface ExtractCallOptions {
  sourceUrl?: string | undefined;
  sniff?: boolean;
  /** Aborting stops the extraction (its thread is replaced); it rejects with the reason. */
  signal?: AbortSignal | undefined;
}

/** Text extraction as the pipeline calls it (extract.ts does the work). */
export interface Extractor {
  extract(
    bytes: Buffer,
    declared: DocumentKind,
    opts?: ExtractCallOptions,
  ): Promise<ExtractedDocument>;
  close(): Promise<void>;
}

/** Extraction in the calling thread: for tools and tests of extraction itself. */
export const inlineExtractor: Extractor = {
  extract: (bytes, declared, opts) => {
    opts?.signal?.throwIfAborted();
    return extractDocument(bytes, declared, extractOptions(opts));
  },
  close: async () => {},
};

function extractOptions(opts?: ExtractCallOptions) {
  const out: ExtractOptions = {};
  if (opts?.sourceUrl) out.sourceUrl = opts.sourceUrl;
  if (opts?.sniff !== undefined) out.sniff = opts.sniff;
  return out;
}

export interface ThreadExtractorOptions {
  /** Extractions run at once; more wait their turn. */
  threads: number;
  /** An extraction still running after this long is stopped (its thread is replaced). */
  timeoutMs: number;
  /** Heap limit of each thread: a document that needs more fails alone. */
  maxHeapMb?: number;
}

/**
 * The thread's module. From the TypeScript sources (tests, `tsx`) it is the .ts file, which
 * the thread loads through tsx's loader; from the build, the .js file beside this one.
 */
function workerModule(): { filename: string; execArgv?: string[] } {
  const fromSource = import.meta.url.endsWith(".ts");
  const filename = fileURLToPath(
    new URL(`./extract.worker.${fromSource ? "ts" : "js"}`, import.meta.url),
  );
  if (!fromSource) return { filename };
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
  return { filename, execArgv: ["--import", tsx] };
}

const isStarted = (m: unknown): m is StartedMessage =>
  typeof m === "object" && m !== null && typeof (m as StartedMessage).started === "number";

/**
 * Runs extractions in worker threads (a piscina pool). Parsing a large HTML page or PDF is
 * synchronous work of up to seconds (bench/RESULTS.md: ~0.33 s per MB of HTML), which in the
 * calling thread would stall every request the process serves. A thread also bounds an
 * extraction in time and memory: past either limit the thread is terminated and replaced, and
 * the document fails with a code, while the worker process carries on.
 *
 * The threads start together on first use and stay. The time limit counts from the moment a
 * thread starts the task (the thread says so), not from the call: a document waiting its
 * turn behind slow ones has not used any of its time.
 */
export function createThreadExtractor(opts: ThreadExtractorOptions): Extractor {
  if (!Number.isInteger(opts.threads) || opts.threads < 1) {
    throw new RangeError("threads must be a positive integer");
  }
  /** Tasks that have been handed out, by id: each starts its own time limit. */
  const starting = new Map<number, () => void>();
  let lastId = 0;
  let pool: Piscina<ExtractRequest, ExtractReply> | undefined;
  let closed = false;

  function poolOf(): Piscina<ExtractRequest, ExtractReply> {
    if (pool) return pool;
    pool = new Piscina<ExtractRequest, ExtractReply>({
      ...workerModule(),
      // As many threads as the bound, kept: piscina 5.3 replaces a thread lost to an abort or
      // a crash only up to `minThreads`, and below that leaves queued tasks waiting for good.
      minThreads: opts.threads,
      maxThreads: opts.threads,
      idleTimeout: Number.POSITIVE_INFINITY,
      resourceLimits: { maxOldGenerationSizeMb: opts.maxHeapMb ?? 512 },
      recordTiming: false,
    });
    pool.on("message", (m: unknown) => {
      if (isStarted(m)) starting.get(m.started)?.();
    });
    return pool;
  }

  const closedError = () => new Error("the extractor is closed");

  async function run(
    bytes: Buffer,
    declared: DocumentKind,
    extractOpts?: ExtractCallOptions,
  ): Promise<ExtractedDocument> {
    const id = ++lastId;
    const deadline = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    starting.set(id, () => {
      timer = setTimeout(() => deadline.abort(), opts.timeoutMs);
    });
    const caller = extractOpts?.signal;
    // The bytes are copied once into a buffer the thread then owns.
    const copy = new Uint8Array(bytes);
    const request: ExtractRequest = { id, bytes: copy, declared, ...extractOptions(extractOpts) };
    let reply: ExtractReply;
    try {
      reply = await poolOf().run(request, {
        transferList: [copy.buffer],
        signal: caller ? AbortSignal.any([caller, deadline.signal]) : deadline.signal,
      });
    } catch (err) {
      if (closed) throw closedError();
      if (caller?.aborted) throw caller.reason;
      if (deadline.signal.aborted) {
        throw new ExtractionError(
          "ingestion.extraction_timeout",
          `extracting the text took longer than ${opts.timeoutMs} ms`,
        );
      }
      // The thread died under the document (out of memory, a crash): piscina replaces it.
      throw new ExtractionError(
        "ingestion.extraction_failed",
        `the extraction thread failed: ${(err as Error).message}`,
      );
    } finally {
      starting.delete(id);
      clearTimeout(timer);
    }
    if ("ok" in reply) return reply.ok;
    const { message, code } = reply.error;
    throw code ? new ExtractionError(code, message) : new Error(message);
  }

  return {
    extract(bytes, declared, extractOpts) {
      if (closed) return Promise.reject(closedError());
      return run(bytes, declared, extractOpts);
    },

    /** Stops every thread; extractions still running or waiting fail. Idempotent. */
    async close() {
      if (closed) return;
      closed = true;
      await pool?.destroy();
    },
  };
}
