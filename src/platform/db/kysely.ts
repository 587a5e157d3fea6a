import {
  type CompiledQuery,
  type ConnectionProvider,
  type DatabaseConnection,
  DefaultQueryExecutor,
  type Dialect,
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
 * Kysely's connection to our port: every compiled query runs through `Queryable.run`, so the
 * adapters' type parsing (int8 as number, …) and PGlite's single-connection rule hold for typed
 * queries exactly as for hand-written SQL.
 */
function connectionOf(q: Queryable): DatabaseConnection {
  return {
    async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
      const { rows, affected } = await q.run<R>(compiled.sql, compiled.parameters);
      return writes(compiled.query) ? { rows, numAffectedRows: BigInt(affected) } : { rows };
    },
    streamQuery(): never {
      throw new Error("streaming queries are not supported by the Db port");
    },
  };
}

/**
 * The driver Kysely keeps for its own transactions and connections, which are refused: queries
 * never reach it (each instance's executor hands them straight to its handle's connection).
 */
class RefusingDriver implements Driver {
  async init(): Promise<void> {}
  async acquireConnection(): Promise<DatabaseConnection> {
    throw new Error(TRANSACTION_REFUSED);
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

// Shared by every instance: compiling is synchronous, so one compiler serves all of them.
const compiler = new PostgresQueryCompiler();
const adapter = new PostgresAdapter();
const driver = new RefusingDriver();
const dialect: Dialect = {
  createAdapter: () => adapter,
  createDriver: () => driver,
  createIntrospector: (db) => new PostgresIntrospector(db),
  createQueryCompiler: () => compiler,
};
const config = { dialect };

/**
 * The typed query builder over `q`: the Db itself or a `tx` from `db.transaction`. One instance
 * per handle, cached. Its own `transaction()` refuses (use `db.transaction`, then `kysely(tx)`),
 * and `destroy()` does nothing: close the Db instead.
 *
 * An instance is made for every transaction, so it is made cheaply: the compiler, adapter and
 * driver are shared, and its executor hands each query to the handle's connection directly,
 * without Kysely's runtime driver (its init, acquire and release are three awaits per query,
 * and building one costs more than most queries; see bench/RESULTS.md §6).
 */
export function kysely(q: Queryable): Kysely<Database> {
  let k = instances.get(q);
  if (!k) {
    const connection = connectionOf(q);
    const provider: ConnectionProvider = { provideConnection: (consume) => consume(connection) };
    const executor = new DefaultQueryExecutor(compiler, adapter, provider);
    k = new Kysely<Database>({ config, dialect, driver, executor });
    instances.set(q, k);
  }
  return k;
}
