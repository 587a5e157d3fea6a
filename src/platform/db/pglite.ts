import { mkdirSync } from "node:fs";
import { PGlite } from "@electric-sql/pglite";
import { type Db, INT8_OID, parseInt8, type Queryable, withAfterCommit } from "./db.js";

export interface PgliteOptions {
  /** Directory of the database files; omitted → in memory (tests). */
  dataDir?: string;
  /** A tarball made by `dumpDataDir` to start from (tests: a migrated template). */
  loadDataDir?: Blob;
}

/** Embedded adapter: Postgres in-process, one connection, files under `dataDir`. */
export async function createPgliteDb(
  opts: PgliteOptions = {},
): Promise<Db & { dump(): Promise<Blob> }> {
  if (opts.dataDir) mkdirSync(opts.dataDir, { recursive: true });
  const pg = await PGlite.create({
    ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
    ...(opts.loadDataDir ? { loadDataDir: opts.loadDataDir } : {}),
    parsers: { [INT8_OID]: parseInt8 },
  });
  const wrap = (q: Pick<PGlite, "query" | "exec">): Queryable => ({
    async query<T>(sql: string, params: readonly unknown[] = []) {
      const res = await q.query<T>(sql, params as unknown[]);
      return res.rows;
    },
    async run<T>(sql: string, params: readonly unknown[] = []) {
      const res = await q.query<T>(sql, params as unknown[]);
      return { rows: res.rows, affected: res.affectedRows ?? 0 };
    },
    async exec(sql: string) {
      await q.exec(sql);
    },
  });
  let closed = false;
  return {
    kind: "pglite",
    ...wrap(pg),
    transaction: (fn) =>
      withAfterCommit((afterCommit) => pg.transaction((tx) => fn({ ...wrap(tx), afterCommit }))),
    async ping() {
      await pg.query("select 1");
    },
    async close() {
      if (closed) return;
      closed = true;
      await pg.close();
    },
    async dump() {
      return pg.dumpDataDir("none");
    },
  };
}
