import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import type { BlobStore } from "./blobs.js";
import { assertBlobKey, assertBlobPrefix } from "./keys.js";

export interface S3BlobStoreOptions {
  bucket: string;
  /** Folder inside the bucket that holds every key of this store (no leading or trailing `/`). */
  prefix?: string;
  /** S3-compatible endpoint (MinIO, R2, …); omitted → AWS. */
  endpoint?: string;
  region?: string;
  /** `https://host/bucket/key` instead of `https://bucket.host/key` (MinIO and most others). */
  forcePathStyle?: boolean;
  /** Omitted → the SDK's default chain (environment, profile, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Keys listed per request in deletePrefix, 1–1000 (S3's maximum); smaller in tests. */
  listPageSize?: number;
}

/** DeleteObjects takes at most 1000 keys per request. */
const DELETE_BATCH = 1000;

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  if (e?.name === "NoSuchKey") return true;
  // A missing bucket is a configuration error, never "no such blob".
  return e?.$metadata?.httpStatusCode === 404 && e.name !== "NoSuchBucket";
}

/**
 * Server adapter: one object per key in an S3-compatible bucket, under an optional prefix.
 * S3 makes each PUT atomic and reads after it strongly consistent, so put/get need no more.
 */
export function createS3BlobStore(opts: S3BlobStoreOptions): BlobStore {
  const { bucket } = opts;
  const storePrefix = (opts.prefix ?? "").replace(/^\/+|\/+$/g, "");
  if (storePrefix !== "") assertBlobKey(storePrefix);
  const pageSize = opts.listPageSize ?? 1000;
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
    throw new RangeError(`listPageSize must be an integer from 1 to 1000, got ${pageSize}`);
  }
  const client = new S3Client({
    region: opts.region ?? "us-east-1",
    forcePathStyle: opts.forcePathStyle ?? false,
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    // Checksums only where S3 requires them (DeleteObjects). The SDK's default adds CRC32
    // headers to every PUT, which several S3-compatible servers reject, and bakes the checksum
    // of an empty body into presigned PUT URLs, which breaks every upload through them.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  const objectKey = (key: string) => (storePrefix ? `${storePrefix}/${key}` : key);

  async function deleteBatch(keys: string[]) {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      const res = await client.send(
        new DeleteObjectsCommand({
          Bucket: bucket,
          Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
        }),
      );
      const [first] = res.Errors ?? [];
      if (first) {
        throw new Error(
          `S3 DeleteObjects failed for ${res.Errors?.length} of ${batch.length} keys; ` +
            `first: ${first.Key}: ${first.Code} ${first.Message}`,
        );
      }
    }
  }

  return {
    async put(key, body, putOpts) {
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: objectKey(assertBlobKey(key).join("/")),
          Body: body,
          ContentType: putOpts?.contentType ?? "application/octet-stream",
        }),
      );
    },

    async get(key) {
      try {
        const res = await client.send(
          new GetObjectCommand({ Bucket: bucket, Key: objectKey(assertBlobKey(key).join("/")) }),
        );
        if (!res.Body) return Buffer.alloc(0);
        const bytes = await res.Body.transformToByteArray();
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },

    async size(key) {
      try {
        const res = await client.send(
          new HeadObjectCommand({ Bucket: bucket, Key: objectKey(assertBlobKey(key).join("/")) }),
        );
        return res.ContentLength ?? 0;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },

    async delete(key) {
      // S3 answers 204 for a missing key too.
      await client.send(
        new DeleteObjectCommand({ Bucket: bucket, Key: objectKey(assertBlobKey(key).join("/")) }),
      );
    },

    async deletePrefix(prefix) {
      assertBlobPrefix(prefix);
      // Deleting each page before asking for the next is safe: the continuation token marks
      // the last key listed, not a position that deletions would shift.
      let token: string | undefined;
      do {
        const page = await client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: objectKey(prefix),
            MaxKeys: pageSize,
            ContinuationToken: token,
          }),
        );
        const keys = (page.Contents ?? []).flatMap((o) => (o.Key ? [o.Key] : []));
        if (keys.length > 0) await deleteBatch(keys);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    },

    async presignPut(key, { contentType, expiresInSeconds }) {
      const command = new PutObjectCommand({
        Bucket: bucket,
        Key: objectKey(assertBlobKey(key).join("/")),
        ContentType: contentType,
      });
      // The presigner signs only `host` unless told otherwise: signing content-type binds the
      // URL to the type the caller checked, so an uploader cannot store something else.
      return getSignedUrl(client, command, {
        expiresIn: expiresInSeconds,
        signableHeaders: new Set(["content-type"]),
      });
    },

    async close() {
      client.destroy();
    },
  };
}
