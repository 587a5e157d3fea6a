/**
 * The relational store port. Both adapters speak PostgreSQL (PGlite is Postgres compiled to
 * WebAssembly), so there is one schema, one set of migrations and one dialect of SQL.
 */

export interface Queryable {
  /**
   * Runs one parameterised statement ($1, $2, …) and returns its rows. int8 columns come back
   * as numbers, numeric as strings, timestamps as Dates, jsonb as parsed values.
   */
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  /**
   * `query`, also telling how many rows the statement inserted, updated or deleted (0 for
   * other statements): what a typed UPDATE or DELETE without RETURNING reports.
   */
  run<T = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
  ): Promise<{ rows: T[]; affected: number }>;
  /** Runs a script of one or more statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /**
   * Only on the handle `Db.transaction` gives: runs `fn` once the transaction has committed,
   * never when it rolls back (e.g. to hand a committed job to a broker). `fn` must not throw.
   */
  afterCommit?(fn: () => void): void;
}

/**
 * Runs `run` with a collector of after-commit callbacks and calls them once it resolved,
 * i.e. once the adapter's transaction committed. Shared by both adapters.
 */
export async function withAfterCommit<T>(
  run: (afterCommit: (fn: () => void) => void) => Promise<T>,
): Promise<T> {
  const callbacks: Array<() => void> = [];
  const result = await run((fn) => callbacks.push(fn));
  for (const fn of callbacks) fn();
  return result;
}

export interface Db extends Queryable {
  readonly kind: "pglite" | "postgres";
  /**
   * Runs `fn` in one transaction: committed when it resolves, rolled back when it throws (the
   * error is re-thrown). Inside `fn`, use only `tx`: in embedded mode the store has a single
   * connection, and a query on the outer handle waits for the transaction to end.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Resolves when the store answers a trivial query; rejects otherwise. */
  ping(): Promise<void>;
  /** Closes connections; in-flight queries finish first. Idempotent. */
  close(): Promise<void>;
}

/** The transaction a service's write may join: the caller's, so that both commit together. */
export interface InTransaction {
  tx?: Queryable | undefined;
}

/**
 * Runs `fn` on the caller's `tx` when there is one, else in a transaction of its own. Never a
 * transaction inside the caller's: on PGlite's single connection, `db.transaction` while
 * another is open waits for it to end, i.e. for ever.
 */
export function inTransaction<T>(
  db: Db,
  tx: Queryable | undefined,
  fn: (tx: Queryable) => Promise<T>,
): Promise<T> {
  return tx ? fn(tx) : db.transaction(fn);
}

/** A Postgres error as raised by either driver. */
export interface PgError extends Error {
  code?: string;
  constraint?: string;
}

/** True when `err` is a unique-constraint violation (optionally of the named constraint). */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const e = err as PgError;
  return e?.code === "23505" && (constraint === undefined || e.constraint === constraint);
}

/**
 * int8 as a JavaScript number, the same from both adapters. Counters here stay far below 2^53;
 * a value beyond it would lose precision, so it is refused rather than rounded.
 */
export function parseInt8(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`int8 value ${value} exceeds 2^53`);
  return n;
}

export const INT8_OID = 20;
