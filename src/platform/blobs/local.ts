import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat, unlink } from "node:fs/promises";
import path from "node:path";
import type { BlobStore } from "./blobs.js";
import { assertBlobKey, assertBlobPrefix, InvalidBlobKeyError } from "./keys.js";

export interface LocalBlobStoreOptions {
  /** Directory holding the blobs (DATA_DIR/blobs); created on the first write. */
  root: string;
}

const errorCode = (err: unknown) => (err as NodeJS.ErrnoException | undefined)?.code;

/** "There is no file here": the path, a parent of it, or a directory in its place. */
const isAbsent = (err: unknown) => ["ENOENT", "ENOTDIR", "EISDIR"].includes(errorCode(err) ?? "");

/**
 * Embedded adapter: one file per key under `root`, the key's segments as directories.
 * Writes go to a temporary file in the target directory, are fsynced, then renamed over the
 * target, so a reader sees the old bytes or the new ones, never part of a file, and a crash
 * leaves at most a stray `.tmp-*` file (dot-names are never valid keys).
 */
export function createLocalBlobStore(opts: LocalBlobStoreOptions): BlobStore {
  const root = path.resolve(opts.root);

  function pathOf(segments: string[]): string {
    const target = path.join(root, ...segments);
    const rel = path.relative(root, target);
    // Key validation already rules traversal out; this keeps it impossible if the rules change.
    if (rel.startsWith("..") || path.isAbsolute(rel)) {
      throw new InvalidBlobKeyError(`blob path escapes the store: ${segments.join("/")}`);
    }
    return target;
  }

  /** Creates the temporary file, re-creating the directory if a concurrent prune removed it. */
  async function openTemp(dir: string, tmp: string) {
    for (let attempt = 1; ; attempt++) {
      await mkdir(dir, { recursive: true });
      try {
        return await open(tmp, "wx");
      } catch (err) {
        if (errorCode(err) !== "ENOENT" || attempt === 3) throw err;
      }
    }
  }

  /** Removes `dir` and its parents while they are empty, never `root` itself. */
  async function pruneEmpty(dir: string) {
    for (let d = dir; d !== root && d.startsWith(root); d = path.dirname(d)) {
      try {
        await rmdir(d);
      } catch (err) {
        if (["ENOTEMPTY", "EEXIST", "ENOENT"].includes(errorCode(err) ?? "")) return;
        throw err;
      }
    }
  }

  return {
    async put(key, body) {
      const file = pathOf(assertBlobKey(key));
      const dir = path.dirname(file);
      const tmp = path.join(dir, `.tmp-${randomBytes(8).toString("hex")}`);
      const handle = await openTemp(dir, tmp);
      try {
        try {
          await handle.writeFile(body);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(tmp, file);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      // The rename is durable only once the directory entry is on disk.
      const dirHandle = await open(dir, "r");
      try {
        await dirHandle.sync();
      } finally {
        await dirHandle.close();
      }
    },

    async get(key) {
      const file = pathOf(assertBlobKey(key));
      try {
        return await readFile(file);
      } catch (err) {
        if (isAbsent(err)) return undefined;
        throw err;
      }
    },

    async size(key) {
      const file = pathOf(assertBlobKey(key));
      try {
        const info = await stat(file);
        return info.isFile() ? info.size : undefined;
      } catch (err) {
        if (isAbsent(err)) return undefined;
        throw err;
      }
    },

    async delete(key) {
      const file = pathOf(assertBlobKey(key));
      try {
        await unlink(file);
      } catch (err) {
        if (!isAbsent(err)) throw err;
      }
    },

    async deletePrefix(prefix) {
      const { dirs, partial } = assertBlobPrefix(prefix);
      const parent = pathOf(dirs);
      let names: string[];
      try {
        names = await readdir(parent);
      } catch (err) {
        if (isAbsent(err)) return;
        throw err;
      }
      // The prefix is a string prefix, as on S3: "t1/doc" takes "t1/doc1/…" and "t1/doc2/…".
      // A partial segment never starts with ".", so in-flight temporary files are matched only
      // when their whole directory goes.
      const doomed = names.filter((name) => name.startsWith(partial));
      await Promise.all(
        doomed.map((name) => rm(path.join(parent, name), { recursive: true, force: true })),
      );
      await pruneEmpty(parent);
    },

    async presignPut(key) {
      assertBlobKey(key);
      return undefined;
    },

    async close() {},
  };
}
