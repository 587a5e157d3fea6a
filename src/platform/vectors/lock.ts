import type { Db } from "../db/index.js";

/**
 * Serializes the writes to one tenant's vector tables. LanceDB commits optimistically: two
 * writers that race on a table (its creation, its first index, a merge) make one of them fail
 * with a commit conflict, so every writer of a tenant takes this lock first. Different tenants
 * never wait for each other (except on PGlite, see `createPgTenantLock`).
 */
export interface TenantLock {
  /**
   * Runs `fn` while holding the tenant's lock and returns its result (or re-throws its error);
   * the lock is released either way, and also when the process holding it dies. Not reentrant:
   * calling `withLock` for the same tenant inside `fn` waits forever.
   */
  withLock<T>(tenantId: string, fn: () => Promise<T>): Promise<T>;
}

/**
 * One process only (embedded mode, unit tests): a promise chain per tenant. Callers run in the
 * order they asked; a failing `fn` does not block the next one.
 */
export function createInProcessTenantLock(): TenantLock {
  const tails = new Map<string, Promise<void>>();
  return {
    withLock<T>(tenantId: string, fn: () => Promise<T>): Promise<T> {
      const previous = tails.get(tenantId) ?? Promise.resolve();
      const run = previous.then(fn);
      const tail = run.then(
        () => undefined,
        () => undefined,
      );
      tails.set(tenantId, tail);
      // Forget the chain once it is idle, so the map does not grow with every tenant ever seen.
      void tail.then(() => {
        if (tails.get(tenantId) === tail) tails.delete(tenantId);
      });
      return run;
    },
  };
}

/**
 * Across processes (server mode): a transaction-scoped Postgres advisory lock on
 * `hashtext('lance:' || tenantId)`, held by a transaction that stays open while `fn` runs.
 * `fn` must not use `db` itself: on PGlite that would wait for this very transaction.
 *
 * Costs to know: each holder keeps one pool connection idle in a transaction for the duration
 * of the write (size the pool for the number of concurrent tenant writes, and keep
 * `idle_in_transaction_session_timeout` above the longest write); hashtext is 32 bits, so two
 * tenants may rarely share a lock and take turns for nothing. On PGlite (one connection) every
 * transaction waits for the previous one, so all tenants are serialized and the rest of the
 * application waits on the database while a vector write runs: embedded mode should use
 * `createInProcessTenantLock` instead.
 */
export function createPgTenantLock(db: Db): TenantLock {
  return {
    withLock<T>(tenantId: string, fn: () => Promise<T>): Promise<T> {
      return db.transaction(async (tx) => {
        await tx.query("select pg_advisory_xact_lock(hashtext('lance:' || $1::text))", [tenantId]);
        return fn();
      });
    },
  };
}
