import { assertBlobKey, InvalidBlobKeyError } from "./keys.js";

export type { BlobStore } from "./blobs.js";
export { assertBlobKey, assertBlobPrefix, InvalidBlobKeyError } from "./keys.js";
export { createLocalBlobStore, type LocalBlobStoreOptions } from "./local.js";
export { createS3BlobStore, type S3BlobStoreOptions } from "./s3.js";

/** S3's bucket naming rules: 3–63 of [a-z0-9.-], starting and ending with a letter or digit. */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Reads the `BLOB_URL` setting, `s3://bucket` or `s3://bucket/some/prefix`, into the options of
 * createS3BlobStore. Anything else throws an Error whose message says what is wrong with it.
 */
export function parseBlobUrl(url: string): { bucket: string; prefix?: string } {
  const shown = JSON.stringify(url.replace(/^(s3:\/\/)[^/@]*@/, "$1***@")); // never echo a secret
  const match = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(url);
  if (!match) {
    throw new Error(`BLOB_URL must look like s3://bucket or s3://bucket/prefix, got ${shown}`);
  }
  const bucket = match[1] ?? "";
  if (!BUCKET.test(bucket) || bucket.includes("..")) {
    throw new Error(
      `BLOB_URL ${shown} names no valid bucket: 3–63 lowercase letters, digits, '.' or '-'`,
    );
  }
  const prefix = (match[2] ?? "").replace(/\/+$/, "");
  if (prefix === "") return { bucket };
  try {
    assertBlobKey(prefix);
  } catch (err) {
    if (!(err instanceof InvalidBlobKeyError)) throw err;
    throw new Error(`BLOB_URL ${shown} has an invalid prefix: ${err.message}`);
  }
  return { bucket, prefix };
}
