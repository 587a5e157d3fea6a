import { parentPort } from "node:worker_threads";
import { type DocumentKind, ExtractionError, extractDocument } from "./extract.js";

/** One extraction thread of extract-pool.ts: a request in, the text or the error out. */
export interface ExtractRequest {
  bytes: Uint8Array;
  declared: DocumentKind;
  sourceUrl?: string;
  sniff?: boolean;
}

// Loaded: the time limit of the first request starts now, not while the thread starts up.
parentPort?.postMessage({ ready: true });

parentPort?.on("message", async (req: ExtractRequest) => {
  try {
    const { sourceUrl, sniff } = req;
    const opts = { ...(sourceUrl ? { sourceUrl } : {}), ...(sniff !== undefined ? { sniff } : {}) };
    const doc = await extractDocument(Buffer.from(req.bytes), req.declared, opts);
    parentPort?.postMessage({ ok: doc });
  } catch (err) {
    const e = err as Error;
    parentPort?.postMessage({
      error: {
        message: e?.message ?? String(err),
        code: err instanceof ExtractionError ? err.code : undefined,
      },
    });
  }
});
