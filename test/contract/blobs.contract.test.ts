import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type BlobStore,
  InvalidBlobKeyError,
  parseBlobUrl,
} from "../../src/platform/blobs/index.js";
import { type BlobHarness, blobAdapters, openLocal } from "../fixtures/blobs.js";

const rand = () => randomBytes(5).toString("hex");
const tenant = () => `t-${rand()}`;
const bytes = (n: number) => randomBytes(n);

describe.each(blobAdapters)("BlobStore port: $name", ({ name, open }) => {
  let h: BlobHarness;
  let store: BlobStore;
  beforeAll(async () => {
    h = await open();
    store = h.store;
  });
  afterAll(() => h?.dispose());

  const under = async (prefix: string) =>
    (await h.stored()).filter((k) => k.startsWith(prefix)).sort();

  it("returns exactly the bytes put, for empty, binary and 5 MB bodies, and stores nothing else", async () => {
    const t = tenant();
    const bodies: Record<string, Buffer> = {
      [`${t}/empty`]: Buffer.alloc(0),
      [`${t}/all-bytes.bin`]: Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
      [`${t}/documents/d1/big_v1.pdf`]: bytes(5 * 1024 * 1024),
    };
    for (const [key, body] of Object.entries(bodies)) {
      await store.put(key, body, { contentType: "application/octet-stream" });
    }
    for (const [key, body] of Object.entries(bodies)) {
      const got = await store.get(key);
      expect(got).toBeInstanceOf(Buffer);
      expect(got?.equals(body), key).toBe(true);
    }
    // Under the store's own root (or prefix), with no temporary files left behind.
    expect(await under(`${t}/`)).toEqual(Object.keys(bodies).sort());
  });

  it("replaces a body on put, longer by shorter, with nothing of the old one left", async () => {
    const key = `${tenant()}/doc`;
    await store.put(key, Buffer.from("a much longer first version"));
    await store.put(key, Buffer.from("v2"));
    expect((await store.get(key))?.toString()).toBe("v2");
  });

  it("gives undefined for a key never written, and for a folder of other keys", async () => {
    const t = tenant();
    await store.put(`${t}/documents/d1/1`, Buffer.from("x"));
    expect(await store.get(`${t}/documents/d2/1`)).toBeUndefined();
    expect(await store.get(`${t}/documents/d1`)).toBeUndefined();
  });

  it("reports a blob's size without reading it, and undefined where there is none", async () => {
    const t = tenant();
    await store.put(`${t}/documents/d1/1`, bytes(70_001));
    await store.put(`${t}/empty`, Buffer.alloc(0));
    expect(await store.size(`${t}/documents/d1/1`)).toBe(70_001);
    expect(await store.size(`${t}/empty`)).toBe(0);
    expect(await store.size(`${t}/documents/d2/1`)).toBeUndefined();
    // A folder of other keys is not a blob.
    expect(await store.size(`${t}/documents/d1`)).toBeUndefined();
    await expect(store.size("../outside")).rejects.toThrow(InvalidBlobKeyError);
  });

  it("delete removes one key, leaves its neighbours, and does not mind a missing key", async () => {
    const t = tenant();
    await store.put(`${t}/a`, Buffer.from("a"));
    await store.put(`${t}/b`, Buffer.from("b"));
    await store.delete(`${t}/a`);
    expect(await store.get(`${t}/a`)).toBeUndefined();
    await expect(store.delete(`${t}/a`)).resolves.toBeUndefined();
    await expect(store.delete(`${t}/never/written`)).resolves.toBeUndefined();
    expect((await store.get(`${t}/b`))?.toString()).toBe("b");
  });

  it("deletePrefix removes a document's and then a tenant's blobs, never another tenant's", async () => {
    const [a, b] = [tenant(), tenant()];
    const keys = (t: string) => [
      `${t}/documents/doc1/1`,
      `${t}/documents/doc1/2`,
      `${t}/documents/doc10/1`,
      `${t}/documents/doc2/1`,
    ];
    for (const key of [...keys(a), ...keys(b)]) await store.put(key, Buffer.from(key));

    // A trailing "/" scopes the prefix to one folder: doc10 is not doc1.
    await store.deletePrefix(`${a}/documents/doc1/`);
    expect(await under(`${a}/`)).toEqual([`${a}/documents/doc10/1`, `${a}/documents/doc2/1`]);

    await store.deletePrefix(`${a}/`);
    expect(await under(`${a}/`)).toEqual([]);
    expect(await under(`${b}/`)).toEqual(keys(b));
    expect((await store.get(`${b}/documents/doc1/1`))?.toString()).toBe(`${b}/documents/doc1/1`);
  });

  it("deletePrefix matches the prefix as a string, the same way on every adapter", async () => {
    const t = tenant();
    for (const k of ["doc1/1", "doc10/1", "doc1.txt", "doc2/1"])
      await store.put(`${t}/${k}`, bytes(3));
    await store.deletePrefix(`${t}/doc1`);
    expect(await under(`${t}/`)).toEqual([`${t}/doc2/1`]);
  });

  it("deletePrefix removes more keys than one listing page holds; a missing prefix is fine", async () => {
    const [a, b] = [tenant(), tenant()];
    const many = Array.from({ length: 30 }, (_, i) => `${a}/documents/d${i % 4}/${i}`);
    await Promise.all([...many, `${b}/keep`].map((key) => store.put(key, bytes(8))));
    await store.deletePrefix(`${a}/`);
    expect(await under(`${a}/`)).toEqual([]);
    expect(await under(`${b}/`)).toEqual([`${b}/keep`]);
    await expect(store.deletePrefix(`${tenant()}/`)).resolves.toBeUndefined();
  });

  it("refuses bad keys and prefixes in every method before writing, reading or deleting", async () => {
    await h.plantOutside("x", Buffer.from("secret"));
    const before = (await h.stored()).sort();
    expect(before).toContain("(outside) x");
    const badKeys = [
      "../x",
      "/abs",
      "a//b",
      "a/../b",
      "",
      "a/./b",
      "a/",
      ".hidden",
      "a b",
      "a\\b",
      "é",
    ];
    for (const key of badKeys) {
      await expect(store.put(key, Buffer.from("evil")), key).rejects.toThrow(InvalidBlobKeyError);
      await expect(store.get(key), key).rejects.toThrow(InvalidBlobKeyError);
      await expect(store.delete(key), key).rejects.toThrow(InvalidBlobKeyError);
      const presign = store.presignPut(key, { contentType: "text/plain", expiresInSeconds: 60 });
      await expect(presign, key).rejects.toThrow(InvalidBlobKeyError);
    }
    for (const prefix of ["", "/", "..", "../", "./", "a//", "a/../", "/a"]) {
      await expect(store.deletePrefix(prefix), prefix).rejects.toThrow(InvalidBlobKeyError);
    }
    expect((await h.stored()).sort()).toEqual(before);
  });

  // S3 itself makes a PUT atomic and the adapter sends one PutObject; s3rver writes objects in
  // place, so against it a reader does see half-written objects: local files only.
  it.runIf(name === "local")(
    "never lets a reader see a mix of two versions while they are overwritten",
    async () => {
      const key = `${tenant()}/doc`;
      const [v1, v2] = [Buffer.alloc(2 * 1024 * 1024, 0xaa), Buffer.alloc(1024 * 1024, 0xbb)];
      await store.put(key, v1);
      let writing = true;
      const reads: Array<Buffer | undefined> = [];
      const reader = (async () => {
        while (writing) reads.push(await store.get(key));
      })();
      for (let i = 0; i < 10; i++) await store.put(key, i % 2 === 0 ? v2 : v1);
      writing = false;
      await reader;
      expect(reads.length).toBeGreaterThan(0);
      for (const read of reads) expect(read?.equals(v1) || read?.equals(v2)).toBe(true);
    },
  );

  it.runIf(name === "local")("cannot sign upload URLs", async () => {
    const url = store.presignPut(`${tenant()}/doc`, {
      contentType: "text/plain",
      expiresInSeconds: 60,
    });
    expect(await url).toBeUndefined();
  });

  it.runIf(name === "s3")("signs a URL that a plain HTTP PUT uploads through", async () => {
    const key = `${tenant()}/documents/d1/1`;
    const body = bytes(64 * 1024);
    const url = await store.presignPut(key, {
      contentType: "application/pdf",
      expiresInSeconds: 60,
    });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\//);
    // s3rver checks neither signatures nor checksums, so two properties that S3, R2 and MinIO
    // enforce are checked on the URL itself: the content type is signed (an uploader cannot
    // store another), and no checksum of the empty body is baked in (it fails every upload).
    const query = new URL(url as string).searchParams;
    expect(query.get("X-Amz-SignedHeaders")?.split(";")).toContain("content-type");
    expect([...query.keys()].filter((k) => /checksum/i.test(k))).toEqual([]);
    const res = await fetch(url as string, {
      method: "PUT",
      body,
      headers: { "content-type": "application/pdf" },
    });
    expect(res.status).toBe(200);
    expect((await store.get(key))?.equals(body)).toBe(true);
  });

  it.runIf(name === "s3")(
    "reports a missing bucket as an error, not as a missing blob",
    async () => {
      const other = h.inBucket?.(`missing-${rand()}`) as BlobStore;
      await expect(other.get(`${tenant()}/doc`)).rejects.toMatchObject({ name: "NoSuchBucket" });
      await other.close();
    },
  );

  it.runIf(name === "s3")("signs URLs that stop working once they expire", async () => {
    const key = `${tenant()}/late`;
    const url = await store.presignPut(key, { contentType: "text/plain", expiresInSeconds: 1 });
    await new Promise((r) => setTimeout(r, 2100));
    const res = await fetch(url as string, {
      method: "PUT",
      body: "too late",
      headers: { "content-type": "text/plain" },
    });
    expect(res.status).toBe(403);
    expect(await store.get(key)).toBeUndefined();
  });
});

describe("local blob store", () => {
  it("leaves no empty folders behind a deleted document or tenant", async () => {
    const h = await openLocal();
    try {
      const t = tenant();
      await h.store.put(`${t}/documents/d1/1`, bytes(4));
      await h.store.put(`${t}/documents/d2/1`, bytes(4));
      await h.store.deletePrefix(`${t}/documents/d1/`);
      expect(existsSync(path.join(h.root, t, "documents", "d1"))).toBe(false);
      expect(existsSync(path.join(h.root, t, "documents", "d2"))).toBe(true);
      await h.store.deletePrefix(`${t}/`);
      expect(existsSync(path.join(h.root, t))).toBe(false);
      // The root itself stays, so the store keeps working.
      await h.store.put(`${t}/again`, bytes(1));
      expect(await h.store.get(`${t}/again`)).toHaveLength(1);
    } finally {
      await h.dispose();
    }
  });
});

describe("parseBlobUrl", () => {
  it("reads a bucket and an optional prefix", () => {
    expect(parseBlobUrl("s3://my-bucket")).toEqual({ bucket: "my-bucket" });
    expect(parseBlobUrl("s3://my-bucket/")).toEqual({ bucket: "my-bucket" });
    expect(parseBlobUrl("s3://my.bucket/tenantrag/prod/")).toEqual({
      bucket: "my.bucket",
      prefix: "tenantrag/prod",
    });
  });

  it("refuses anything else with a message that names the problem", () => {
    expect(() => parseBlobUrl("https://my-bucket/x")).toThrow(/must look like s3:\/\/bucket/);
    expect(() => parseBlobUrl("s3://")).toThrow(/no valid bucket/);
    expect(() => parseBlobUrl("s3://My_Bucket")).toThrow(/no valid bucket/);
    expect(() => parseBlobUrl("s3://bucket/../up")).toThrow(/invalid prefix/);
    expect(() => parseBlobUrl("s3://bucket//double")).toThrow(/invalid prefix/);
    const err = (() => {
      try {
        parseBlobUrl("s3://AKIAKEY:hunter2@bucket");
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err?.message).toMatch(/no valid bucket/);
    expect(err?.message).not.toContain("hunter2");
  });
});
