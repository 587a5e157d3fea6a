import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tenantsStore } from "../../src/modules/tenants/tenants.store.js";
import { type Db, keysetPage, kysely, type Queryable, sql } from "../../src/platform/db/index.js";
import { allBackends, type TestDb } from "../fixtures/db.js";

/** The Kysely seam (platform/db/kysely.ts) on every adapter: the port's rules hold for typed SQL. */
describe.each(allBackends)("typed SQL: $backend.name", ({ backend, skip }) => {
  describe.skipIf(skip)(`${backend.name} adapter`, () => {
    let t: TestDb;
    let db: Db;
    beforeAll(async () => {
      t = await backend.open();
      db = t.db;
    });
    afterAll(() => t?.dispose());

    const newTenant = (q: Queryable = db, name = `t-${randomUUID()}`) =>
      kysely(q)
        .insertInto("tenants")
        .values({ name, plan_id: "free" })
        .returning(["id", "created_at"])
        .executeTakeFirstOrThrow();

    it("returns the port's types: Dates, int8 counts as numbers", async () => {
      const { id, created_at } = await newTenant();
      expect(created_at).toBeInstanceOf(Date);
      const row = await kysely(db)
        .selectFrom("tenants")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .where("id", "=", id)
        .executeTakeFirstOrThrow();
      expect(row.n).toBe(1);
    });

    it("runs on a db.transaction's handle, and rolls back with it", async () => {
      const name = `rolled-back-${randomUUID()}`;
      await expect(
        db.transaction(async (tx) => {
          await newTenant(tx, name);
          throw new Error("abort");
        }),
      ).rejects.toThrow("abort");
      const rows = await kysely(db)
        .selectFrom("tenants")
        .select("id")
        .where("name", "=", name)
        .execute();
      expect(rows).toEqual([]);
    });

    it("refuses Kysely's own transactions, pointing at db.transaction", async () => {
      await expect(
        kysely(db)
          .transaction()
          .execute(async () => 1),
      ).rejects.toThrow(/db\.transaction/);
    });

    it("counts the rows an INSERT, UPDATE or DELETE without RETURNING touched", async () => {
      const a = await newTenant();
      const b = await newTenant();
      const ids = [a.id, b.id];
      const updated = await kysely(db)
        .updateTable("tenants")
        .set({ updated_at: sql`now()` })
        .where("id", "in", ids)
        .executeTakeFirstOrThrow();
      expect(updated.numUpdatedRows).toBe(2n);
      const none = await kysely(db)
        .updateTable("tenants")
        .set({ updated_at: sql`now()` })
        .where("id", "=", randomUUID())
        .executeTakeFirstOrThrow();
      expect(none.numUpdatedRows).toBe(0n);
      const insertConfigOnce = () =>
        kysely(db)
          .insertInto("tenant_config")
          .values({
            tenant_id: a.id,
            rate_limit_rpm: 1,
            rate_limit_per_day: 1,
            max_documents: 1,
            max_file_size_mb: 1,
          })
          .onConflict((oc) => oc.column("tenant_id").doNothing())
          .executeTakeFirstOrThrow();
      expect((await insertConfigOnce()).numInsertedOrUpdatedRows).toBe(1n);
      expect((await insertConfigOnce()).numInsertedOrUpdatedRows).toBe(0n);
      const deleted = await kysely(db)
        .deleteFrom("tenants")
        .where("id", "in", ids)
        .executeTakeFirstOrThrow();
      expect(deleted.numDeletedRows).toBe(2n);
    });

    it("an empty patch is a valid UPDATE that changes nothing but updated_at", async () => {
      const { id } = await newTenant();
      const plan = await tenantsStore.plan(db, "free");
      await tenantsStore.insertConfigFromPlan(db, id, plan as NonNullable<typeof plan>);
      const before = await tenantsStore.config(db, id);
      const after = await tenantsStore.updateConfig(db, id, {});
      expect(after).toEqual({ ...before, updated_at: after?.updated_at });
      const undefinedOnly = await tenantsStore.updateConfig(db, id, { chunk_size: undefined });
      expect(undefinedOnly?.chunk_size).toBe(before?.chunk_size);
    });

    it("pages newest first on (created_at, id), also across equal timestamps", async () => {
      const name = `page-${randomUUID()}`;
      const at = new Date("2026-03-04T05:06:07.891Z");
      await kysely(db)
        .insertInto("tenants")
        .values(Array.from({ length: 5 }, () => ({ name, plan_id: "free", created_at: at })))
        .execute();
      const page = (after?: { createdAt: Date; id: string }) =>
        keysetPage(
          kysely(db).selectFrom("tenants").select(["id", "created_at"]).where("name", "=", name),
          { after, limit: 2 },
        ).execute();
      const seen: string[] = [];
      let rows = await page();
      while (rows.length > 0) {
        seen.push(...rows.map((r) => r.id));
        const last = rows[rows.length - 1] as { id: string; created_at: Date };
        rows = await page({ createdAt: last.created_at, id: last.id });
      }
      expect(seen).toHaveLength(5);
      expect([...seen].sort().reverse()).toEqual(seen);
    });
  });
});
