import type { Db } from "./db.js";
import * as m0001 from "./migrations/0001-tenants-and-auth.js";
import * as m0002 from "./migrations/0002-jobs.js";
import * as m0003 from "./migrations/0003-documents.js";
import * as m0004 from "./migrations/0004-knowledge.js";
import * as m0005 from "./migrations/0005-uploads.js";
import * as m0006 from "./migrations/0006-idempotency-claims.js";
import * as m0007 from "./migrations/0007-knowledge-document-version.js";
import * as m0008 from "./migrations/0008-api-key-scopes.js";
import * as m0009 from "./migrations/0009-version-content-hash.js";
import * as m0010 from "./migrations/0010-version-content-stored.js";
import * as m0011 from "./migrations/0011-job-outbox-and-schedules.js";
import * as m0012 from "./migrations/0012-usage-ledger.js";
import * as m0013 from "./migrations/0013-quotas.js";
import * as m0014 from "./migrations/0014-usage-rating.js";
import * as m0015 from "./migrations/0015-usage-rollups.js";
import * as m0016 from "./migrations/0016-alerts.js";
import * as m0018 from "./migrations/0018-audit-log.js";
import * as m0019 from "./migrations/0019-api-key-addresses.js";
import * as m0020 from "./migrations/0020-events.js";
import * as m0021 from "./migrations/0021-search-settings.js";
import * as m0022 from "./migrations/0022-fair-job-claims.js";
import * as m0023 from "./migrations/0023-chat.js";
import * as m0024 from "./migrations/0024-document-counts.js";
import * as m0025 from "./migrations/0025-job-turn-order.js";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Every migration, in order. Append only: an applied migration is never edited. */
export const migrations: readonly Migration[] = [
  { version: 1, name: "tenants-and-auth", sql: m0001.sql },
  { version: 2, name: "jobs", sql: m0002.sql },
  { version: 3, name: "documents", sql: m0003.sql },
  { version: 4, name: "knowledge", sql: m0004.sql },
  { version: 5, name: "uploads", sql: m0005.sql },
  { version: 6, name: "idempotency-claims", sql: m0006.sql },
  { version: 7, name: "knowledge-document-version", sql: m0007.sql },
  { version: 8, name: "api-key-scopes", sql: m0008.sql },
  { version: 9, name: "version-content-hash", sql: m0009.sql },
  { version: 10, name: "version-content-stored", sql: m0010.sql },
  { version: 11, name: "job-outbox-and-schedules", sql: m0011.sql },
  { version: 12, name: "usage-ledger", sql: m0012.sql },
  { version: 13, name: "quotas", sql: m0013.sql },
  { version: 14, name: "usage-rating", sql: m0014.sql },
  { version: 15, name: "usage-rollups", sql: m0015.sql },
  { version: 16, name: "alerts", sql: m0016.sql },
  { version: 18, name: "audit-log", sql: m0018.sql },
  { version: 19, name: "api-key-addresses", sql: m0019.sql },
  // 17 was never used; 18 and 19 are applied on existing databases.
  { version: 20, name: "events", sql: m0020.sql },
  { version: 21, name: "search-settings", sql: m0021.sql },
  { version: 22, name: "fair-job-claims", sql: m0022.sql },
  { version: 23, name: "chat", sql: m0023.sql },
  { version: 24, name: "document-counts", sql: m0024.sql },
  { version: 25, name: "job-turn-order", sql: m0025.sql },
];

/**
 * Applies the pending migrations, each in its own transaction. A transaction-scoped advisory
 * lock makes concurrent migrators (several servers starting at once) take turns; the second
 * finds the work done. Returns the versions it applied.
 */
export async function migrate(db: Db, list: readonly Migration[] = migrations): Promise<number[]> {
  // Under the lock too: two concurrent `create table if not exists` on a fresh database race
  // on the catalog (duplicate key in pg_type) instead of one of them doing nothing.
  await db.transaction(async (tx) => {
    await tx.query("select pg_advisory_xact_lock(hashtext('tenantrag.migrate'))");
    await tx.exec(`
      create table if not exists schema_migrations (
        version integer primary key,
        name text not null,
        applied_at timestamptz not null default now()
      )`);
  });
  const applied: number[] = [];
  for (const m of list) {
    const done = await db.transaction(async (tx) => {
      await tx.query("select pg_advisory_xact_lock(hashtext('tenantrag.migrate'))");
      const rows = await tx.query("select 1 from schema_migrations where version = $1", [
        m.version,
      ]);
      if (rows.length > 0) return false;
      await tx.exec(m.sql);
      await tx.query("insert into schema_migrations (version, name) values ($1, $2)", [
        m.version,
        m.name,
      ]);
      return true;
    });
    if (done) applied.push(m.version);
  }
  return applied;
}

/** Versions known to the code but not applied to `db`. */
export async function pendingMigrations(db: Db): Promise<number[]> {
  const exists = await db.query<{ t: string | null }>(
    "select to_regclass('schema_migrations')::text as t",
  );
  if (!exists[0]?.t) return migrations.map((m) => m.version);
  const rows = await db.query<{ version: number }>("select version from schema_migrations");
  const have = new Set(rows.map((r) => r.version));
  return migrations.filter((m) => !have.has(m.version)).map((m) => m.version);
}
