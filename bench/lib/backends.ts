import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { type Db, migrate } from "../../src/platform/db/index.js";
import { createPgliteDb } from "../../src/platform/db/pglite.js";
import { createPostgresDb } from "../../src/platform/db/postgres.js";
import type { TenantContext } from "../../src/tenancy.js";

/**
 * Stores for benchmarks, each fresh and removed afterwards, so runs repeat on the same servers
 * and never touch anyone else's data: PGlite in a temporary directory (as embedded mode keeps
 * it), a PostgreSQL schema of its own, a BullMQ prefix of its own.
 */

export const BENCH_DATABASE_URL = process.env.TEST_DATABASE_URL || undefined;
export const BENCH_REDIS_URL = process.env.TEST_REDIS_URL || undefined;

export function tempDir(label: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), `tenantrag-bench-${label}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface BenchDb {
  db: Db;
  label: string;
  dispose(): Promise<void>;
}

/** A migrated PGlite database on disk, as embedded mode opens it (`DATA_DIR/pg`). */
export async function openPglite(): Promise<BenchDb> {
  const tmp = tempDir("pg");
  const db = await createPgliteDb({ dataDir: path.join(tmp.dir, "pg") });
  await migrate(db);
  return {
    db,
    label: "PGlite",
    async dispose() {
      await db.close();
      tmp.remove();
    },
  };
}

/** A migrated schema of its own on the server at `url`, dropped by `dispose`. */
export async function openPostgres(url: string, poolSize = 10): Promise<BenchDb> {
  const schema = `bench_${randomBytes(5).toString("hex")}`;
  const admin = createPostgresDb({ url, poolSize: 1 });
  await admin.exec(`create schema ${schema}`);
  const db = createPostgresDb({ url, poolSize, schema });
  try {
    await migrate(db);
  } catch (err) {
    await db.close();
    await admin.exec(`drop schema ${schema} cascade`);
    await admin.close();
    throw err;
  }
  return {
    db,
    label: "PostgreSQL",
    async dispose() {
      await db.close();
      await admin.exec(`drop schema ${schema} cascade`);
      await admin.close();
    },
  };
}

/** A tenant row for jobs and documents to belong to (every job row references one). */
export async function insertTenant(db: Db, name = "bench"): Promise<string> {
  const [row] = await db.query<{ id: string }>(
    "insert into tenants (name, plan_id) values ($1, 'enterprise') returning id",
    [name],
  );
  return (row as { id: string }).id;
}

/** A BullMQ key prefix no other run uses. */
export function uniqueQueuePrefix(label: string): string {
  return `tenantrag-bench-${label}-${randomBytes(4).toString("hex")}`;
}

/**
 * Obliterates the BullMQ queue `queueName` under `prefix`, then removes any key left under the
 * prefix, so a benchmark leaves nothing in Redis.
 */
export async function dropQueuePrefix(
  url: string,
  prefix: string,
  queueName = "tenantrag",
): Promise<void> {
  const queue = new Queue(queueName, { connection: { url, maxRetriesPerRequest: 3 }, prefix });
  try {
    await queue.obliterate({ force: true });
  } finally {
    await queue.close();
  }
  const redis = new Redis(url, { maxRetriesPerRequest: 3 });
  try {
    for await (const keys of redis.scanStream({ match: `${prefix}:*`, count: 500 })) {
      if ((keys as string[]).length > 0) await redis.del(...(keys as string[]));
    }
  } finally {
    redis.disconnect();
  }
}

/** The context a benchmark acts in for a tenant: an admin-scoped API key of its own. */
export function benchContext(tenantId: string): TenantContext {
  return {
    tenantId,
    actor: { kind: "api_key", keyId: randomUUID(), tenantId, role: "admin", scopes: ["admin"] },
    request: { id: "bench", ip: "127.0.0.1", userAgent: "bench" },
  };
}
