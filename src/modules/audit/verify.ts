import type { KeyObject } from "node:crypto";
import { keyIdOf, verifyText } from "../../platform/crypto/signing.js";
import {
  type DigestContent,
  digestHash,
  GENESIS_HASH,
  type HashedRow,
  type Json,
  rowHash,
} from "./canonical.js";

/**
 * The verification of one chain, shared by `GET /api/audit/verify` (rows from the database)
 * and `tenantrag audit verify` (rows from an export file): no database here. Rows are fed in
 * seq order (`row`), the chain's digests before them (`digests`), then `finish` tells.
 *
 * What is checked: each row's hash over its content; each row's `prev_hash` against the row
 * before it and its seq against that row's seq + 1; the chain's start (seq 1 after the genesis
 * hash, or the start the last retention row anchors); each digest's hash, its signature by the
 * given public key and its key id, its link to the previous digest, its row count, and that its
 * last row is the row of that seq with that hash (a row a digest covers that is missing from
 * the end of the chain is a truncated tail).
 */

/** The event type of the retention job's row, which anchors a chain's new start. */
export const RETENTION_EVENT = "audit.retention";

export interface RowInput extends HashedRow {
  hash: string;
}

export interface DigestInput extends DigestContent {
  hash: string;
  signature: string;
}

export interface VerifyResult {
  ok: boolean;
  /** Rows checked. */
  checked: number;
  /** The first row (lowest seq) found altered, missing before or missing after; null when ok. */
  firstBrokenId: string | null;
  firstBrokenSeq: number | null;
  digestsChecked: number;
  /** The first digest refused (bad hash, signature, key or link); null when none was. */
  firstBrokenDigestId: string | null;
  /** What was found, for people; null when ok. */
  reason: string | null;
}

export interface VerifyOptions {
  publicKey: KeyObject;
  /**
   * The hash of the row just before the first one fed (a window not starting at the chain's
   * start): its link is checked against it. Undefined: the first row fed is the chain's first.
   */
  prevHash?: string | undefined;
  /** The chain's end is fed (not a window closed before it): a digest's missing rows are a truncated tail. */
  toEnd: boolean;
  /** The chain head's (seq, hash) when known (the database's audit_chains): checked against the last row. */
  head?: { seq: number; hash: string } | undefined;
}

interface Broken {
  id: string | null;
  seq: number;
  reason: string;
}

export function createChainVerifier(opts: VerifyOptions) {
  const keyId = keyIdOf(opts.publicKey);
  let checked = 0;
  let broken: Broken | undefined;
  let brokenDigest: { id: string; reason: string } | undefined;
  let digestsChecked = 0;
  let prev: { id: string; seq: number; hash: string; selfOk: boolean } | undefined;
  let first: { id: string; seq: number; prevHash: string } | undefined;
  /** The last retention row's anchor: the chain's first kept seq and the hash before it. */
  let anchor: { seq: number; prevHash: string; from: number } | undefined;
  /** A retention row's anchor, when it is the chain's latest so far. */
  const takeAnchor = (r: RowInput) => {
    if (r.event_type !== RETENTION_EVENT || (anchor && anchor.from > r.seq)) return;
    const v = r.new_values as { [k: string]: Json } | null;
    if (v && typeof v.firstKeptSeq === "number" && typeof v.firstKeptPrevHash === "string") {
      anchor = { seq: v.firstKeptSeq, prevHash: v.firstKeptPrevHash, from: r.seq };
    }
  };
  /** Digests by the seq of their last row, for the rows to meet. */
  const bySeq = new Map<number, DigestInput[]>();
  let digests: DigestInput[] = [];

  const mark = (b: Broken) => {
    if (!broken || b.seq < broken.seq) broken = b;
  };
  const markDigest = (id: string, reason: string) => {
    brokenDigest ??= { id, reason };
  };

  return {
    /** The chain's digests, any order; checked at once (signature, key, hash, links). */
    digests(list: readonly DigestInput[]) {
      digests = [...list].sort((a, b) => a.last_seq - b.last_seq);
      let before: DigestInput | undefined;
      for (const d of digests) {
        digestsChecked += 1;
        if (digestHash(d) !== d.hash)
          markDigest(d.id, `digest ${d.id}: its hash does not match its content`);
        else if (d.key_id !== keyId)
          markDigest(
            d.id,
            `digest ${d.id}: signed by key ${d.key_id}, not by the given key ${keyId}`,
          );
        else if (!verifyText(opts.publicKey, d.hash, d.signature))
          markDigest(d.id, `digest ${d.id}: its signature is not valid for the given key`);
        else if ((d.prev_digest_hash ?? null) !== (before?.hash ?? null))
          markDigest(d.id, `digest ${d.id}: does not chain to the digest before it`);
        else if (d.row_count !== d.last_seq - (before?.last_seq ?? 0))
          markDigest(d.id, `digest ${d.id}: its row count does not match its seqs`);
        const at = bySeq.get(d.last_seq) ?? [];
        at.push(d);
        bySeq.set(d.last_seq, at);
        before = d;
      }
    },

    /**
     * The chain's latest retention row, when it lies outside the rows fed (a window): its
     * anchor accounts for the rows before the chain's first kept one. Its hash is checked.
     */
    retentionRow(r: RowInput) {
      if (rowHash(r) !== r.hash) {
        mark({
          id: r.id,
          seq: r.seq,
          reason: `row ${r.id} (seq ${r.seq}): its hash does not match its content`,
        });
      } else takeAnchor(r);
    },

    row(r: RowInput) {
      checked += 1;
      const selfOk = rowHash(r) === r.hash;
      if (!selfOk)
        mark({
          id: r.id,
          seq: r.seq,
          reason: `row ${r.id} (seq ${r.seq}): its hash does not match its content`,
        });
      if (prev) {
        if (r.seq !== prev.seq + 1) {
          mark({
            id: r.id,
            seq: r.seq,
            reason: `row ${r.id} (seq ${r.seq}): rows ${prev.seq + 1}..${r.seq - 1} are missing before it`,
          });
        } else if (r.prev_hash !== prev.hash) {
          // Both hashes hold: the earlier row was rewritten with a recomputed hash (the later
          // row's prev_hash, which its own hash covers, is the original).
          if (selfOk && prev.selfOk)
            mark({
              id: prev.id,
              seq: prev.seq,
              reason: `row ${prev.id} (seq ${prev.seq}): rewritten (the next row links to another hash)`,
            });
          else
            mark({
              id: r.id,
              seq: r.seq,
              reason: `row ${r.id} (seq ${r.seq}): does not link to the row before it`,
            });
        }
      } else {
        first = { id: r.id, seq: r.seq, prevHash: r.prev_hash };
        if (opts.prevHash !== undefined) {
          if (r.prev_hash !== opts.prevHash)
            mark({
              id: r.id,
              seq: r.seq,
              reason: `row ${r.id} (seq ${r.seq}): does not link to the row before it`,
            });
        } else if (r.seq === 1 && r.prev_hash !== GENESIS_HASH) {
          mark({
            id: r.id,
            seq: r.seq,
            reason: `row ${r.id} (seq 1): does not start from the genesis hash`,
          });
        }
      }
      if (selfOk) takeAnchor(r);
      for (const d of bySeq.get(r.seq) ?? []) {
        if (d.last_event_id !== r.id || d.last_hash !== r.hash) {
          mark({
            id: r.id,
            seq: r.seq,
            reason: `row ${r.id} (seq ${r.seq}): not the row digest ${d.id} signed`,
          });
        }
      }
      prev = { id: r.id, seq: r.seq, hash: r.hash, selfOk };
    },

    finish(): VerifyResult {
      // The chain's start: seq 1, or the start the last retention row anchors.
      if (first && opts.prevHash === undefined && first.seq !== 1) {
        if (!anchor || anchor.seq !== first.seq || anchor.prevHash !== first.prevHash) {
          mark({
            id: first.id,
            seq: first.seq,
            reason: `row ${first.id} (seq ${first.seq}): rows before it are missing and no retention row accounts for them`,
          });
        }
      }
      if (opts.toEnd) {
        const lastSeq = prev?.seq ?? 0;
        const beyond = digests.filter((d) => d.last_seq > lastSeq);
        const d = beyond[0];
        if (d) {
          mark({
            id: d.last_event_id,
            seq: lastSeq + 1,
            reason: `rows ${lastSeq + 1}..${d.last_seq} are missing from the end (digest ${d.id} covers up to ${d.last_event_id})`,
          });
        }
        if (opts.head && (opts.head.seq !== lastSeq || (prev && opts.head.hash !== prev.hash))) {
          mark({
            id: null,
            seq: lastSeq + 1,
            reason: `the chain's head is at seq ${opts.head.seq} but its rows end at seq ${lastSeq}`,
          });
        }
      }
      const ok = !broken && !brokenDigest;
      return {
        ok,
        checked,
        firstBrokenId: broken?.id ?? null,
        firstBrokenSeq: broken?.seq ?? null,
        digestsChecked,
        firstBrokenDigestId: brokenDigest?.id ?? null,
        reason: broken?.reason ?? brokenDigest?.reason ?? null,
      };
    },
  };
}
