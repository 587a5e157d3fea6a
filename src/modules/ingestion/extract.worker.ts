import { parentPort } from "node:worker_threads";
import {
  type DocumentKind,
  type ExtractedDocument,
  ExtractionError,
  type ExtractionErrorCode,
  extractDocument,
} from "./extract.js";

/** One task of extract-pool.ts's threads: a request in, the text or the error out. */
export interface ExtractRequest {
  /** Names the task in its `started` message. */
  id: number;
  bytes: Uint8Array;
  declared: DocumentKind;
  sourceUrl?: string;
  sniff?: boolean;
}

/** A document's own failure travels as a value: a thrown error would lose its code. */
export type ExtractReply =
  | { ok: ExtractedDocument }
  | { error: { message: string; code?: ExtractionErrorCode } };

/** Posted when a task starts, so that its time limit leaves out its wait in the queue. */
export interface StartedMessage {
  started: number;
}

export default async function extract(req: ExtractRequest): Promise<ExtractReply> {
  parentPort?.postMessage({ started: req.id } satisfies StartedMessage);
  try {
    const { sourceUrl, sniff } = req;
    const opts = { ...(sourceUrl ? { sourceUrl } : {}), ...(sniff !== undefined ? { sniff } : {}) };
    return { ok: await extractDocument(Buffer.from(req.bytes), req.declared, opts) };
  } catch (err) {
    const e = err as Error;
    return {
      error: {
        message: e?.message ?? String(err),
        ...(err instanceof ExtractionError ? { code: err.code } : {}),
      },
    };
  }
}
