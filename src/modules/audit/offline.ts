import { createReadStream, existsSync, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { keyIdOf, loadPublicKey } from "../../platform/crypto/signing.js";
import {
  createChainVerifier,
  type DigestInput,
  type RowInput,
  type VerifyResult,
} from "./verify.js";

/**
 * `tenantrag audit verify FILE --public-key KEY`: checks an export of `GET /api/audit/export`
 * with no database and no server, only the file and the deployment's public key (which the
 * auditor got from `GET /api/audit/public-key` or from the operator, not from the file).
 *
 * Exit codes: 0 the chain holds; 1 it does not (the message names the first broken row or
 * digest); 2 the file or the key cannot be read.
 */

export class OfflineVerifyError extends Error {
  override name = "OfflineVerifyError";
}

export interface OfflineResult extends VerifyResult {
  chainId: string | null;
}

interface Header {
  type: "header";
  chainId: string;
  prevHash: string | null;
  toEnd: boolean;
  headSeq: number;
  keyId: string;
}

/** The key as given: a file holding it, or the PEM / base64 DER text itself. */
export function readPublicKeyArg(arg: string) {
  const text = existsSync(arg) ? readFileSync(arg, "utf8") : arg;
  try {
    return loadPublicKey(text);
  } catch (err) {
    throw new OfflineVerifyError(`--public-key ${(err as Error).message}`);
  }
}

async function* lines(file: string): AsyncGenerator<{ n: number; value: unknown }> {
  const input = createReadStream(file, { encoding: "utf8" });
  const rl = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let n = 0;
  try {
    for await (const line of rl) {
      n += 1;
      if (line.trim() === "") continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        value = { type: "malformed" };
      }
      yield { n, value };
    }
  } finally {
    rl.close();
    input.destroy();
  }
}

const broken = (reason: string): OfflineResult => ({
  ok: false,
  checked: 0,
  firstBrokenId: null,
  firstBrokenSeq: null,
  digestsChecked: 0,
  firstBrokenDigestId: null,
  reason,
  chainId: null,
});

/** Verifies an export file; reads it twice (digests first, then rows), holding one line at a time. */
export async function verifyExportFile(file: string, publicKeyArg: string): Promise<OfflineResult> {
  const publicKey = readPublicKeyArg(publicKeyArg);
  if (!existsSync(file)) throw new OfflineVerifyError(`${file}: no such file`);
  try {
    return await verifyFile(file, publicKey);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) {
      throw new OfflineVerifyError(`${file}: cannot be read (${code})`);
    }
    throw err;
  }
}

async function verifyFile(
  file: string,
  publicKey: ReturnType<typeof loadPublicKey>,
): Promise<OfflineResult> {
  let header: Header | undefined;
  const digests: DigestInput[] = [];
  const anchors: RowInput[] = [];
  for await (const { n, value } of lines(file)) {
    const v = value as { type?: string };
    if (n === 1 || v.type === "header") {
      if (v.type !== "header" || n !== 1)
        return broken(`line ${n}: the header must be line 1, and only there`);
      header = v as Header;
    } else if (v.type === "digest") digests.push(v as DigestInput);
    else if (v.type === "anchor") anchors.push(v as RowInput);
    else if (v.type !== "row") return broken(`line ${n}: not a header, row, anchor or digest`);
  }
  if (!header) return broken("the file is empty: not an audit export");
  // A chain younger than its first digest has no signature to fail: without this, another
  // deployment's key (an auditor's mix-up) would pass it. The header is not signed; its digests are.
  const given = keyIdOf(publicKey);
  if (header.keyId !== given) {
    return {
      ...broken(
        `the export was made with signing key ${String(header.keyId)}, not the given key ${given}`,
      ),
      chainId: header.chainId,
    };
  }
  const verifier = createChainVerifier({
    publicKey,
    prevHash: header.prevHash ?? undefined,
    toEnd: header.toEnd === true,
    head: undefined,
  });
  const stray = digests.find((d) => d.chain_id !== header?.chainId);
  if (stray)
    return broken(`digest ${stray.id}: belongs to chain ${stray.chain_id}, not ${header.chainId}`);
  verifier.digests(digests);
  for (const a of anchors) verifier.retentionRow(a);
  let lastSeq = 0;
  for await (const { value } of lines(file)) {
    const v = value as { type?: string } & RowInput;
    if (v.type !== "row") continue;
    if (v.chain_id !== header.chainId) {
      return {
        ...broken(`row ${v.id}: belongs to chain ${v.chain_id}, not ${header.chainId}`),
        chainId: header.chainId,
      };
    }
    verifier.row(v);
    lastSeq = v.seq;
  }
  const result = verifier.finish();
  if (result.ok && header.toEnd && typeof header.headSeq === "number" && header.headSeq > lastSeq) {
    return {
      ...result,
      ok: false,
      firstBrokenSeq: lastSeq + 1,
      reason: `rows ${lastSeq + 1}..${header.headSeq} are missing from the end of the export`,
      chainId: header.chainId,
    };
  }
  return { ...result, chainId: header.chainId };
}

/** The one line the CLI prints. */
export function describeResult(file: string, r: OfflineResult): string {
  if (r.ok) {
    return `OK: ${file}: chain ${r.chainId}: ${r.checked} rows and ${r.digestsChecked} signed digests verified`;
  }
  const at = r.firstBrokenId
    ? `first broken row ${r.firstBrokenId}${r.firstBrokenSeq !== null ? ` (seq ${r.firstBrokenSeq})` : ""}`
    : r.firstBrokenDigestId
      ? `first broken digest ${r.firstBrokenDigestId}`
      : "broken";
  return `BROKEN: ${file}: ${at}: ${r.reason}`;
}
