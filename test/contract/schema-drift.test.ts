import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, inject, it } from "vitest";
import { type Db, migrate } from "../../src/platform/db/index.js";
import { createPgliteDb } from "../../src/platform/db/pglite.js";
import { createPostgresDb } from "../../src/platform/db/postgres.js";
import { describeColumn, PG_TYPES, schema } from "../../src/platform/db/schema.js";
import { TEST_DATABASE_URL } from "../fixtures/db.js";

/**
 * A freshly migrated database of one backend. For PGlite that is the suite's template, which
 * global-setup.ts makes by migrating a new database (creating another here costs seconds).
 */
async function freshlyMigrated(name: "pglite" | "postgres") {
  if (name === "pglite") {
    const db = await createPgliteDb({
      loadDataDir: new Blob([readFileSync(inject("pgliteTemplate"))]),
    });
    return { db, dispose: () => db.close() };
  }
  const url = TEST_DATABASE_URL as string;
  const s = `t_drift_${randomBytes(5).toString("hex")}`;
  const admin = createPostgresDb({ url, poolSize: 1 });
  await admin.exec(`create schema ${s}`);
  const db = createPostgresDb({ url, poolSize: 2, schema: s });
  await migrate(db);
  return {
    db,
    async dispose() {
      await db.close();
      await admin.exec(`drop schema ${s} cascade`);
      await admin.close();
    },
  };
}

/** Every column of the current schema, as `table.column: udt nullable? default?` lines. */
async function actualColumns(db: Db): Promise<string[]> {
  const rows = await db.query<{
    table_name: string;
    column_name: string;
    udt_name: string;
    nullable: boolean;
    has_default: boolean;
  }>(
    `select c.table_name, c.column_name, c.udt_name, c.is_nullable = 'YES' as nullable,
            (c.column_default is not null or c.is_identity = 'YES' or c.is_generated = 'ALWAYS')
              as has_default
     from information_schema.columns c
     join information_schema.tables t
       on t.table_schema = c.table_schema and t.table_name = c.table_name
     where c.table_schema = current_schema() and t.table_type = 'BASE TABLE'`,
  );
  return rows
    .map((r) => line(r.table_name, r.column_name, r.udt_name, r.nullable, r.has_default))
    .sort();
}

function declaredColumns(): string[] {
  return Object.entries(schema)
    .flatMap(([table, columns]) =>
      Object.entries(columns).map(([column, spec]) => {
        const c = describeColumn(spec);
        return line(table, column, PG_TYPES[c.type], c.nullable, c.hasDefault);
      }),
    )
    .sort();
}

const line = (table: string, column: string, udt: string, nullable: boolean, dflt: boolean) =>
  `${table}.${column}: ${udt}${nullable ? " null" : ""}${dflt ? " default" : ""}`;

describe.each([
  { name: "pglite" as const, skip: false },
  { name: "postgres" as const, skip: !TEST_DATABASE_URL },
])("schema.ts matches the migrations: $name", ({ name, skip }) => {
  it.skipIf(skip)(
    "declares every table and column, with its type, nullability and default",
    async () => {
      const fresh = await freshlyMigrated(name);
      try {
        const actual = await actualColumns(fresh.db);
        const declared = declaredColumns();
        // Both directions, named: what the database has and schema.ts lacks, and the reverse.
        expect({
          missingFromSchemaTs: actual.filter((c) => !declared.includes(c)),
          notInDatabase: declared.filter((c) => !actual.includes(c)),
        }).toEqual({ missingFromSchemaTs: [], notInDatabase: [] });
      } finally {
        await fresh.dispose();
      }
    },
  );
});
