import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../src/platform/db/index.js";
import { isUniqueViolation, migrate, pendingMigrations } from "../../src/platform/db/index.js";
import { migrations } from "../../src/platform/db/migrate.js";
import { createPgliteDb } from "../../src/platform/db/pglite.js";
import { createPostgresDb } from "../../src/platform/db/postgres.js";
import { allBackends, TEST_DATABASE_URL, type TestBackend, type TestDb } from "../fixtures/db.js";

const allVersions = migrations.map((m) => m.version);
const rand = () => randomBytes(5).toString("hex");

/**
 * Fresh, unmigrated databases of one backend (for the migration tests): on PostgreSQL each is
 * a schema of its own, and `count` handles share it as several servers would.
 */
async function freshDatabase(name: TestBackend["name"], count: number) {
  if (name === "pglite") {
    // PGlite has a single connection: "two servers" can only be two callers on one handle.
    const db = await createPgliteDb();
    return { dbs: Array.from({ length: count }, () => db), dispose: () => db.close() };
  }
  const url = TEST_DATABASE_URL as string;
  const schema = `t_fresh_${rand()}`;
  const admin = createPostgresDb({ url, poolSize: 1 });
  await admin.exec(`create schema ${schema}`);
  const dbs = Array.from({ length: count }, () => createPostgresDb({ url, poolSize: 2, schema }));
  return {
    dbs,
    async dispose() {
      for (const db of dbs) await db.close();
      await admin.exec(`drop schema ${schema} cascade`);
      await admin.close();
    },
  };
}

/** The single row of a result. */
function one<T>(rows: T[]): T {
  expect(rows).toHaveLength(1);
  return rows[0] as T;
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe.each(allBackends)("Db port: $backend.name", ({ backend, skip }) => {
  describe.skipIf(skip)(`${backend.name} adapter`, () => {
    let t: TestDb;
    let db: Db;
    let table: string;
    beforeAll(async () => {
      t = await backend.open();
      db = t.db;
      table = `contract_${rand()}`;
      await db.exec(`
        create table ${table} (
          id serial primary key,
          name text not null,
          constraint ${table}_name_key unique (name)
        )`);
    });
    afterAll(() => t?.dispose());

    const names = async () =>
      (await db.query<{ name: string }>(`select name from ${table} order by id`)).map(
        (r) => r.name,
      );

    it("reports which adapter it is", () => {
      expect(db.kind).toBe(backend.name);
    });

    it("binds parameters as values, never as SQL", async () => {
      const hostile = "'; drop table plans; --";
      const rows = await db.query<{ v: string; n: number; none: null }>(
        "select $1::text as v, $2::int + 1 as n, $3::text as none",
        [hostile, 41, null],
      );
      expect(rows).toEqual([{ v: hostile, n: 42, none: null }]);
      expect(await db.query("select 1 from plans limit 1")).toHaveLength(1);
    });

    it("returns no rows as an empty array", async () => {
      expect(await db.query(`select * from ${table} where name = $1`, [rand()])).toEqual([]);
    });

    it("maps column types the same way on every adapter", async () => {
      const row = one(
        await db.query<Record<string, unknown>>(
          `select 5000000000::int8 as big, count(*) as cnt, 7::int4 as small,
           now() as ts, '{"a":[1,"x"],"b":null}'::jsonb as doc,
           array['pdf','txt']::text[] as list, 1.50::numeric as amount,
           '8c0e5b2a-4f7d-4d2c-9a63-0d1b7b6e2f10'::uuid as id, true as flag,
           '\\x0102ff'::bytea as bytes
         from plans`,
        ),
      );
      expect(row.big).toBe(5_000_000_000);
      expect(typeof row.cnt).toBe("number");
      expect(row.small).toBe(7);
      expect(row.ts).toBeInstanceOf(Date);
      expect(Math.abs((row.ts as Date).getTime() - Date.now())).toBeLessThan(60_000);
      expect(row.doc).toEqual({ a: [1, "x"], b: null });
      expect(row.list).toEqual(["pdf", "txt"]);
      // numeric stays a string: money must not go through a float.
      expect(row.amount).toBe("1.50");
      expect(row.id).toBe("8c0e5b2a-4f7d-4d2c-9a63-0d1b7b6e2f10");
      expect(row.flag).toBe(true);
      expect(Buffer.from(row.bytes as Uint8Array)).toEqual(Buffer.from([1, 2, 255]));
    });

    it("accepts Dates, arrays, JSON text and bytes as parameters", async () => {
      const when = new Date("2026-01-02T03:04:05.678Z");
      const row = one(
        await db.query<Record<string, unknown>>(
          "select $1::timestamptz as ts, $2::text[] as list, $3::jsonb as doc, $4::bytea as bytes",
          [when, ["a", "b,c"], JSON.stringify({ k: "v" }), Buffer.from([9, 8])],
        ),
      );
      expect((row.ts as Date).toISOString()).toBe(when.toISOString());
      expect(row.list).toEqual(["a", "b,c"]);
      expect(row.doc).toEqual({ k: "v" });
      expect(Buffer.from(row.bytes as Uint8Array)).toEqual(Buffer.from([9, 8]));
    });

    it("exec runs a script of several statements", async () => {
      const other = `contract_exec_${rand()}`;
      await db.exec(`create table ${other} (v int); insert into ${other} values (1), (2);`);
      expect(await db.query(`select sum(v)::int as s from ${other}`)).toEqual([{ s: 3 }]);
      await db.exec(`drop table ${other}`);
    });

    it("commits a transaction that resolves and returns its value", async () => {
      const name = `commit-${rand()}`;
      const result = await db.transaction(async (tx) => {
        await tx.query(`insert into ${table} (name) values ($1)`, [name]);
        return tx.query<{ name: string }>(`select name from ${table} where name = $1`, [name]);
      });
      expect(result).toEqual([{ name }]);
      expect(await names()).toContain(name);
    });

    it("rolls back a transaction that throws and re-throws the same error", async () => {
      const name = `rollback-${rand()}`;
      const boom = new Error("boom");
      await expect(
        db.transaction(async (tx) => {
          await tx.query(`insert into ${table} (name) values ($1)`, [name]);
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect(await names()).not.toContain(name);
    });

    it("rolls back every statement when a later one fails in SQL", async () => {
      const name = `sql-fail-${rand()}`;
      await expect(
        db.transaction(async (tx) => {
          await tx.query(`insert into ${table} (name) values ($1)`, [name]);
          await tx.query(`insert into ${table} (name) values (null)`);
        }),
      ).rejects.toMatchObject({ code: "23502" });
      expect(await names()).not.toContain(name);
      // The handle is still usable afterwards.
      await db.ping();
    });

    it("recognises a unique violation and its constraint, outside and inside a transaction", async () => {
      const name = `dup-${rand()}`;
      await db.query(`insert into ${table} (name) values ($1)`, [name]);
      const outside = await db
        .query(`insert into ${table} (name) values ($1)`, [name])
        .catch((e: unknown) => e);
      expect(isUniqueViolation(outside)).toBe(true);
      expect(isUniqueViolation(outside, `${table}_name_key`)).toBe(true);
      expect(isUniqueViolation(outside, "users_email_key")).toBe(false);

      const inside = await db
        .transaction((tx) => tx.query(`insert into ${table} (name) values ($1)`, [name]))
        .catch((e: unknown) => e);
      expect(isUniqueViolation(inside, `${table}_name_key`)).toBe(true);
    });

    it("does not mistake other errors for unique violations", async () => {
      const notNull = await db.query(`insert into ${table} (name) values (null)`).catch((e) => e);
      expect(notNull).toBeInstanceOf(Error);
      expect(isUniqueViolation(notNull)).toBe(false);
      expect(isUniqueViolation(new Error("plain"))).toBe(false);
      expect(isUniqueViolation(undefined)).toBe(false);
    });

    it("has applied every migration and has none pending", async () => {
      expect(await pendingMigrations(db)).toEqual([]);
      expect(await migrate(db)).toEqual([]);
    });

    it("migrates a fresh database once: the second run applies nothing", async () => {
      const fresh = await freshDatabase(backend.name, 1);
      try {
        const [f] = fresh.dbs as [Db];
        expect(await pendingMigrations(f)).toEqual(allVersions);
        expect(await migrate(f)).toEqual(allVersions);
        expect(await pendingMigrations(f)).toEqual([]);
        expect(await migrate(f)).toEqual([]);
        const plans = await f.query<{ id: string }>("select id from plans order by id");
        expect(plans.map((p) => p.id)).toContain("trial");
      } finally {
        await fresh.dispose();
      }
    });

    it("lets two migrators start at once: both succeed and each version is applied once", async () => {
      const fresh = await freshDatabase(backend.name, 2);
      try {
        const [a, b] = fresh.dbs as [Db, Db];
        const results = await Promise.all([migrate(a), migrate(b)]);
        expect(results.flat().sort((x, y) => x - y)).toEqual(allVersions);
        const rows = await a.query<{ version: number }>(
          "select version from schema_migrations order by version",
        );
        expect(rows.map((r) => r.version)).toEqual(allVersions);
        // The seed rows of migration 1 went in once, not twice.
        expect(await a.query("select count(*) as n from plans where id = 'trial'")).toEqual([
          { n: 1 },
        ]);
      } finally {
        await fresh.dispose();
      }
    });

    it("records nothing for a migration that fails, and keeps none of its changes", async () => {
      const extra = `contract_mig_${rand()}`;
      const failing = [
        ...migrations,
        {
          version: 9000,
          name: "fails-halfway",
          sql: `create table ${extra} (v int); select 1/0;`,
        },
      ];
      await expect(migrate(db, failing)).rejects.toThrow(/division by zero/);
      expect(await db.query("select 1 from schema_migrations where version = 9000")).toEqual([]);
      expect(await db.query("select to_regclass($1)::text as t", [extra])).toEqual([{ t: null }]);
    });

    // Job claiming relies on this. PGlite has a single connection, so two transactions can never
    // be open at once there (the second waits for the first): the test is PostgreSQL only.
    it.skipIf(backend.name !== "postgres")(
      "for update skip locked lets two transactions claim different rows",
      async () => {
        const jobs = `contract_jobs_${rand()}`;
        await db.exec(
          `create table ${jobs} (id int primary key); insert into ${jobs} values (1), (2);`,
        );
        const claim = `select id from ${jobs} order by id limit 1 for update skip locked`;
        const firstHolds = deferred();
        const release = deferred();
        const first = db.transaction(async (tx) => {
          const rows = await tx.query<{ id: number }>(claim);
          firstHolds.resolve();
          await release.promise;
          return rows;
        });
        await firstHolds.promise;
        const second = await db.transaction((tx) => tx.query<{ id: number }>(claim));
        release.resolve();
        expect(await first).toEqual([{ id: 1 }]);
        expect(second).toEqual([{ id: 2 }]);
        await db.exec(`drop table ${jobs}`);
      },
    );

    it("ping answers; close is idempotent; a closed handle refuses queries", async () => {
      await expect(db.ping()).resolves.toBeUndefined();
      const other = await backend.open();
      await other.db.ping();
      await other.db.close();
      await expect(other.db.close()).resolves.toBeUndefined();
      await expect(other.db.ping()).rejects.toThrow();
      await other.dispose();
    });
  });
});
