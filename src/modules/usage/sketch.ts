import { DDSketch } from "@datadog/sketches-js";

/**
 * Latency percentiles that merge: a DDSketch (logarithmic buckets, relative accuracy 1 %) per
 * hourly window, kept serialised (`serializeSketch`) in `usage_rollups.latency_sketch`; a day or a month
 * merges its hours' sketches, so its p95 is the p95 of all its calls, never an average of
 * hourly p95s. Any value the sketch answers is within 1 % of a value at that rank.
 *
 * The hourly sketch is built from bucket counts that SQL computes (`latencyBucketSql`: the
 * sketch's own key function, `ceil(ln(v) / ln(gamma))`), so a million calls cross the wire as a
 * few hundred (bucket, count) pairs per hour. Each bucket is added back at the value the
 * sketch maps to that bucket, with its count as weight: the resulting sketch is the one that
 * accepting every value would have built (a value within float rounding of a bucket boundary
 * may land in the neighbouring bucket, still within ~2 % of itself).
 */
export const RELATIVE_ACCURACY = 0.01;

const gammaMantissa = (2 * RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY);
/** ln(gamma) of the sketch's mapping: bucket key = ceil(ln(v) / LN_GAMMA). */
export const LN_GAMMA = Math.log1p(gammaMantissa);
/** Latencies below this (ms) count as zero (a bucket of their own). */
export const ZERO_BELOW_MS = 1e-6;
/** The bucket key SQL gives latencies counted as zero. */
export const ZERO_BUCKET = -2147483648;

export function newSketch(): DDSketch {
  return new DDSketch({ relativeAccuracy: RELATIVE_ACCURACY });
}

/** A sketch from (bucket key, count) pairs as `latencyBucketSql` computes them. */
export function sketchFromBuckets(buckets: Iterable<{ bucket: number; n: number }>): DDSketch {
  const s = newSketch();
  for (const { bucket, n } of buckets) {
    if (n <= 0) continue;
    if (bucket === ZERO_BUCKET) s.accept(0, n);
    else s.accept(s.mapping.value(bucket), n);
  }
  return s;
}

/**
 * The sketch's buckets as bytes: a format byte (1), the zero count (float64), then per
 * non-empty bucket its key (int32) and count (float64), little-endian. Ours rather than the
 * library's `toProto`, which needs `protobufjs` (an optional dependency not installed) and
 * loses nothing we use: the sketch is its buckets. Latencies are never negative, so the
 * negative store is refused rather than dropped.
 */
export function serializeSketch(s: DDSketch): Uint8Array {
  if (s.negativeStore.count > 0) throw new Error("a latency sketch holds no negative values");
  const store = s.store;
  const pairs: Array<[number, number]> = [];
  for (let i = 0; i < store.bins.length; i++) {
    const n = store.bins[i] ?? 0;
    if (n > 0) pairs.push([i + store.offset, n]);
  }
  const buf = Buffer.alloc(1 + 8 + pairs.length * 12);
  buf.writeUInt8(FORMAT, 0);
  buf.writeDoubleLE(s.zeroCount, 1);
  let at = 9;
  for (const [key, n] of pairs) {
    buf.writeInt32LE(key, at);
    buf.writeDoubleLE(n, at + 4);
    at += 12;
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

const FORMAT = 1;

export function deserializeSketch(bytes: Uint8Array): DDSketch {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 9 || buf.readUInt8(0) !== FORMAT || (buf.length - 9) % 12 !== 0) {
    throw new Error("not a latency sketch of format 1");
  }
  const s = newSketch();
  const zeros = buf.readDoubleLE(1);
  if (zeros > 0) s.accept(0, zeros);
  for (let at = 9; at < buf.length; at += 12) {
    s.accept(s.mapping.value(buf.readInt32LE(at)), buf.readDoubleLE(at + 4));
  }
  return s;
}

/** The merge of serialised sketches (null ones skipped); null when there is none. */
export function mergeSketches(blobs: Iterable<Uint8Array | null>): DDSketch | null {
  let merged: DDSketch | null = null;
  for (const b of blobs) {
    if (!b) continue;
    const s = deserializeSketch(b);
    if (s.count === 0) continue;
    if (!merged) merged = newSketch();
    merged.merge(s);
  }
  return merged;
}

/** p95 and p99 of a sketch (null without values), rounded to a microsecond. */
export function percentiles(s: DDSketch | null): { p95: number | null; p99: number | null } {
  if (!s || s.count === 0) return { p95: null, p99: null };
  const r = (v: number) => Math.round(v * 1000) / 1000;
  return { p95: r(s.getValueAtQuantile(0.95)), p99: r(s.getValueAtQuantile(0.99)) };
}
