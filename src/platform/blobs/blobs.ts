/**
 * The blob store port: raw uploads (files, fetched pages) kept until their document is
 * deleted. Adapters: local files under DATA_DIR/blobs, and S3-compatible object storage.
 * Keys are opaque paths chosen by the caller, always starting with the tenant id
 * (`<tenantId>/documents/<documentId>/<version>`), never containing `..`.
 */
export interface BlobStore {
  /** Stores `body` under `key`, replacing what was there. Durable when the promise resolves. */
  put(key: string, body: Buffer, opts?: { contentType?: string }): Promise<void>;
  /** The bytes under `key`, or undefined when there are none. */
  get(key: string): Promise<Buffer | undefined>;
  /**
   * The size in bytes of what is under `key`, or undefined when there is nothing, without
   * reading it: a caller refuses an object too large to read into memory before it reads.
   */
  size(key: string): Promise<number | undefined>;
  /** Removes `key`; removing a missing key is not an error. */
  delete(key: string): Promise<void>;
  /** Removes every key that starts with `prefix` (a document's or a tenant's blobs). */
  deletePrefix(prefix: string): Promise<void>;
  /**
   * A URL a client may PUT the object to directly, valid for `expiresInSeconds`, or undefined
   * when the adapter cannot sign URLs (local files).
   */
  presignPut(
    key: string,
    opts: { contentType: string; expiresInSeconds: number },
  ): Promise<string | undefined>;
  close(): Promise<void>;
}
