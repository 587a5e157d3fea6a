import { Worker } from "node:worker_threads";
import {
  type DocumentKind,
  type ExtractedDocument,
  ExtractionError,
  type ExtractionErrorCode,
  type ExtractOptions,
  extractDocument,
} from "./extract.js";
import type { ExtractRequest } from "./extract.worker.js";

/** Text extraction as the pipeline calls it (extract.ts does the work). */
export interface Extractor {
  extract(
    bytes: Buffer,
    declared: DocumentKind,
    opts?: { sourceUrl?: string | undefined; sniff?: boolean },
  ): Promise<ExtractedDocument>;
  close(): Promise<void>;
}

/** Extraction in the calling thread: for tools and tests of extraction itself. */
export const inlineExtractor: Extractor = {
  extract: (bytes, declared, opts) => extractDocument(bytes, declared, extractOptions(opts)),
  close: async () => {},
};

function extractOptions(opts?: { sourceUrl?: string | undefined; sniff?: boolean }) {
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

interface Task {
  request: ExtractRequest;
  resolve(doc: ExtractedDocument): void;
  reject(err: Error): void;
}

type Reply = { ok: ExtractedDocument } | { error: { message: string; code?: ExtractionErrorCode } };

/**
 * Runs extractions in worker threads. Parsing a large HTML page or PDF is synchronous work of
 * up to seconds (bench/RESULTS.md: ~0.33 s per MB of HTML), which in the calling thread would
 * stall every request the process serves. A thread also bounds an extraction in time and
 * memory: past either limit the thread is terminated and the document fails with a code,
 * while the worker process carries on. Threads start on first use.
 */
export function createThreadExtractor(opts: ThreadExtractorOptions): Extractor {
  if (!Number.isInteger(opts.threads) || opts.threads < 1) {
    throw new RangeError("threads must be a positive integer");
  }
  const idle: Worker[] = [];
  /** Threads whose module has loaded (they say so once). */
  const loaded = new WeakMap<Worker, Promise<void>>();
  const waiting: Task[] = [];
  const busy = new Set<Worker>();
  let closed = false;

  function spawn(): Worker {
    // From the TypeScript sources (tests, `tsx`), the thread loads them through tsx too.
    const fromSource = import.meta.url.endsWith(".ts");
    const url = new URL(`./extract.worker.${fromSource ? "ts" : "js"}`, import.meta.url);
    const resourceLimits = { maxOldGenerationSizeMb: opts.maxHeapMb ?? 512 };
    const worker = fromSource
      ? new Worker(
          `import("tsx/esm/api").then((m) => m.register()).then(() => import(${JSON.stringify(url.href)}))`,
          { eval: true, resourceLimits },
        )
      : new Worker(url, { resourceLimits });
    worker.unref();
    loaded.set(
      worker,
      new Promise<void>((resolve) => {
        const onReady = (m: { ready?: boolean }) => {
          if (!m?.ready) return;
          worker.off("message", onReady);
          resolve();
        };
        worker.on("message", onReady);
      }),
    );
    return worker;
  }

  function run(worker: Worker, task: Task): void {
    busy.add(worker);
    let settled = false;
    const finish = (fn: () => void, reusable: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      worker.off("message", onMessage);
      worker.off("error", onError);
      worker.off("exit", onExit);
      busy.delete(worker);
      fn();
      if (reusable && !closed) release(worker);
      else {
        void worker.terminate();
        if (!closed) next();
      }
    };
    const onMessage = (reply: Reply | { ready: true }) => {
      if ("ready" in reply) return;
      if ("ok" in reply) finish(() => task.resolve(reply.ok), true);
      else {
        const { message, code } = reply.error;
        const err = code ? new ExtractionError(code, message) : new Error(message);
        finish(() => task.reject(err), true);
      }
    };
    const failed = (message: string) =>
      finish(() => task.reject(new ExtractionError("ingestion.extraction_failed", message)), false);
    const onError = (err: Error) => failed(`the extraction thread failed: ${err.message}`);
    const onExit = (code: number) => failed(`the extraction thread exited (code ${code})`);
    let timer: NodeJS.Timeout | undefined;
    const startTimer = () => {
      if (settled) return;
      timer = setTimeout(
        () =>
          finish(
            () =>
              task.reject(
                new ExtractionError(
                  "ingestion.extraction_timeout",
                  `extracting the text took longer than ${opts.timeoutMs} ms`,
                ),
              ),
            false,
          ),
        opts.timeoutMs,
      );
    };
    worker.on("message", onMessage);
    worker.on("error", onError);
    worker.on("exit", onExit);
    // The bytes are copied once into a buffer the thread then owns. The thread reads its
    // messages once loaded, and the time limit counts from then.
    const bytes = new Uint8Array(task.request.bytes);
    worker.postMessage({ ...task.request, bytes }, [bytes.buffer]);
    void loaded.get(worker)?.then(startTimer);
  }

  function release(worker: Worker): void {
    const task = waiting.shift();
    if (task) run(worker, task);
    else idle.push(worker);
  }

  /** Starts the next waiting task on a new thread, if a slot is free. */
  function next(): void {
    if (waiting.length === 0 || busy.size + idle.length >= opts.threads) return;
    run(spawn(), waiting.shift() as Task);
  }

  return {
    extract(bytes, declared, extractOpts) {
      if (closed) return Promise.reject(new Error("the extractor is closed"));
      return new Promise<ExtractedDocument>((resolve, reject) => {
        const request: ExtractRequest = {
          bytes,
          declared,
          ...extractOptions(extractOpts),
        };
        const task: Task = { request, resolve, reject };
        const worker = idle.pop();
        if (worker) run(worker, task);
        else {
          waiting.push(task);
          next();
        }
      });
    },

    /** Stops every thread; extractions still running or waiting fail. Idempotent. */
    async close() {
      if (closed) return;
      closed = true;
      for (const task of waiting.splice(0)) task.reject(new Error("the extractor is closed"));
      await Promise.all([...idle.splice(0), ...busy].map((w) => w.terminate()));
    },
  };
}
