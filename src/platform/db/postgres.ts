import pg from "pg";
import { type Db, INT8_OID, parseInt8, type Queryable, withAfterCommit } from "./db.js";

export interface PostgresOptions {
  url: string;
  poolSize?: number;
  /** Schema to put first on the search path (tests run each file in a schema of its own). */
  schema?: string;
}

/** Server adapter: a `pg` connection pool to PostgreSQL ≥ 15. */
export function createPostgresDb(opts: PostgresOptions): Db {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize ?? 10,
    ...(opts.schema ? { options: `-c search_path=${opts.schema},public` } : {}),
    types: {
      getTypeParser: ((oid: number, format?: "text" | "binary") =>
        oid === INT8_OID
          ? parseInt8
          : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    },
  });
  // An idle client that loses its connection emits 'error' on the pool; without a listener
  // that would crash the process. The next checkout gets a fresh connection.
  pool.on("error", () => {});
  const wrap = (q: pg.Pool | pg.PoolClient): Queryable => ({
    async query<T>(sql: string, params: readonly unknown[] = []) {
      const res = await q.query(sql, params as unknown[]);
      return res.rows as T[];
    },
    async run<T>(sql: string, params: readonly unknown[] = []) {
      const res = await q.query(sql, params as unknown[]);
      return { rows: res.rows as T[], affected: res.rowCount ?? 0 };
    },
    async exec(sql: string) {
      await q.query(sql);
    },
  });
  let closed = false;
  async function inTransaction<T>(
    fn: (tx: Queryable) => Promise<T>,
    afterCommit: (cb: () => void) => void,
  ): Promise<T> {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      await client.query("begin");
      const result = await fn({ ...wrap(client), afterCommit });
      await client.query("commit");
      return result;
    } catch (err) {
      try {
        await client.query("rollback");
      } catch (rollbackErr) {
        // The connection is unusable: hand it back as broken so the pool discards it.
        // The transaction's own error is the one the caller sees.
        broken = rollbackErr as Error;
      }
      throw err;
    } finally {
      client.release(broken);
    }
  }
  return {
    kind: "postgres",
    ...wrap(pool),
    transaction: (fn) => withAfterCommit((afterCommit) => inTransaction(fn, afterCommit)),
    async ping() {
      await pool.query("select 1");
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}
