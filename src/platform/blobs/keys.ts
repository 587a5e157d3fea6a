/**
 * Blob key rules, shared by every adapter so that a key valid on one is valid on all.
 *
 * A key is `/`-separated segments of [A-Za-z0-9._-]. A segment may not start with `.`: that
 * excludes `.` and `..` (no path traversal, whatever the adapter joins the key to) and
 * reserves dot-names for the local adapter's temporary files. 255 characters per segment is
 * the usual file-name limit; S3 allows 1024 bytes per key, and an S3 store prefix needs room.
 */
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
const MAX_SEGMENT = 255;
const MAX_KEY = 900;

/** Thrown for a key or prefix that breaks the rules above, before any storage is touched. */
export class InvalidBlobKeyError extends Error {
  override name = "InvalidBlobKeyError";
}

function segmentProblem(segment: string): string | undefined {
  if (segment === "") return "has an empty segment (leading '/', trailing '/' or '//')";
  if (segment === "." || segment === "..") return `has a '${segment}' segment`;
  if (segment.length > MAX_SEGMENT) return `has a segment longer than ${MAX_SEGMENT} characters`;
  if (!SEGMENT.test(segment)) {
    return `has a segment '${segment}' outside [A-Za-z0-9._-] or starting with '.'`;
  }
  return undefined;
}

function fail(what: string, value: unknown, problem: string): never {
  throw new InvalidBlobKeyError(`invalid blob ${what} ${JSON.stringify(value)}: ${problem}`);
}

/** Throws InvalidBlobKeyError unless `key` is a valid blob key; returns its segments. */
export function assertBlobKey(key: string): string[] {
  if (typeof key !== "string" || key === "") fail("key", key, "it is empty");
  if (key.length > MAX_KEY) fail("key", key, `it is longer than ${MAX_KEY} characters`);
  const segments = key.split("/");
  for (const segment of segments) {
    const problem = segmentProblem(segment);
    if (problem) fail("key", key, `it ${problem}`);
  }
  return segments;
}

/**
 * Throws unless `prefix` is a valid key prefix: the start of a valid key, possibly ending in
 * `/`. An empty prefix is refused: "delete everything" is never what a caller means.
 * Returns the complete segments and the (possibly empty) partial last segment.
 */
export function assertBlobPrefix(prefix: string): { dirs: string[]; partial: string } {
  if (typeof prefix !== "string" || prefix === "") fail("prefix", prefix, "it is empty");
  if (prefix.length > MAX_KEY) fail("prefix", prefix, `it is longer than ${MAX_KEY} characters`);
  const segments = prefix.split("/");
  const partial = segments.pop() as string;
  for (const segment of segments) {
    const problem = segmentProblem(segment);
    if (problem) fail("prefix", prefix, `it ${problem}`);
  }
  // A partial last segment is the start of a valid segment; empty means "ends with '/'".
  if (partial !== "") {
    const problem = segmentProblem(partial);
    if (problem) fail("prefix", prefix, `it ${problem}`);
  }
  return { dirs: segments, partial };
}
