import {
  type CompiledQuery,
  type DatabaseConnection,
  type Driver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryResult,
} from "kysely";
import type { Queryable } from "./db.js";
import type { Database } from "./schema.js";

const TRANSACTION_REFUSED =
  "Kysely transactions are not used here: run the work in db.transaction(async (tx) => …) " +
  "and build its queries with kysely(tx), so that they share the port's connection rules";

/**
 * Kysely's connection to our port: every compiled query runs through `Queryable.query`, so the
 * adapters' type parsing (int8 as number, …) and PGlite's single-connection rule hold for typed
 * queries exactly as for hand-written SQL.
 */
class QueryableDriver implements Driver {
  readonly #connection: DatabaseConnection;

  constructor(q: Queryable) {
    this.#connection = {
      async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
        const { rows, affected } = await q.run<R>(compiled.sql, compiled.parameters);
        return writes(compiled.query) ? { rows, numAffectedRows: BigInt(affected) } : { rows };
      },
      streamQuery(): never {
        throw new Error("streaming queries are not supported by the Db port");
      },
    };
  }

  async init(): Promise<void> {}
  async acquireConnection(): Promise<DatabaseConnection> {
    return this.#connection;
  }
  async beginTransaction(): Promise<void> {
    throw new Error(TRANSACTION_REFUSED);
  }
  async commitTransaction(): Promise<void> {
    throw new Error(TRANSACTION_REFUSED);
  }
  async rollbackTransaction(): Promise<void> {
    throw new Error(TRANSACTION_REFUSED);
  }
  async releaseConnection(): Promise<void> {}
  /** Nothing to close: the Db belongs to whoever opened it. */
  async destroy(): Promise<void> {}
}

type Root = CompiledQuery["query"];

/** An INSERT, UPDATE or DELETE: Kysely reads its row count (`numUpdatedRows`, …). */
function writes(node: Root): boolean {
  return (
    node.kind === "InsertQueryNode" ||
    node.kind === "UpdateQueryNode" ||
    node.kind === "DeleteQueryNode"
  );
}

const instances = new WeakMap<Queryable, Kysely<Database>>();

/**
 * The typed query builder over `q`: the Db itself or a `tx` from `db.transaction`. One instance
 * per handle, cached. Its own `transaction()` refuses (use `db.transaction`, then `kysely(tx)`),
 * and `destroy()` does nothing: close the Db instead.
 */
export function kysely(q: Queryable): Kysely<Database> {
  let k = instances.get(q);
  if (!k) {
    k = new Kysely<Database>({
      dialect: {
        createAdapter: () => new PostgresAdapter(),
        createDriver: () => new QueryableDriver(q),
        createIntrospector: (db) => new PostgresIntrospector(db),
        createQueryCompiler: () => new PostgresQueryCompiler(),
      },
    });
    instances.set(q, k);
  }
  return k;
}
