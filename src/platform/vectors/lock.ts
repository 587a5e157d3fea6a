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
  withLock<T>(tenantId: string, fn: (held: HeldTenantLock) => Promise<T>): Promise<T>;
  /**
   * Runs `fn` as a long reader of the tenant's tables: an ANN build reads one table version
   * for minutes, and a compaction that removed that version's files would fail it. Takes no
   * turn: writers and other long readers go on. Released like `withLock`.
   */
  withLongReader<T>(tenantId: string, fn: () => Promise<T>): Promise<T>;
}

/** What a holder of the tenant's lock may ask. */
export interface HeldTenantLock {
  /** Whether some process runs `withLongReader` for this tenant now. */
  longReaderActive(): Promise<boolean>;
}

/**
 * One process only (embedded mode, unit tests): a promise chain per tenant. Callers run in the
 * order they asked; a failing `fn` does not block the next one.
 */
export function createInProcessTenantLock(): TenantLock {
  const tails = new Map<string, Promise<void>>();
  const readers = new Map<string, number>();
  return {
    withLock<T>(tenantId: string, fn: (held: HeldTenantLock) => Promise<T>): Promise<T> {
      const previous = tails.get(tenantId) ?? Promise.resolve();
      const held: HeldTenantLock = { longReaderActive: async () => readers.has(tenantId) };
      const run = previous.then(() => fn(held));
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
    async withLongReader<T>(tenantId: string, fn: () => Promise<T>): Promise<T> {
      readers.set(tenantId, (readers.get(tenantId) ?? 0) + 1);
      try {
        return await fn();
      } finally {
        const left = (readers.get(tenantId) ?? 1) - 1;
        if (left > 0) readers.set(tenantId, left);
        else readers.delete(tenantId);
      }
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
 *
 * A long reader holds a shared advisory lock on `hashtext('lance-read:' || tenantId)` in a
 * transaction of its own for as long as it reads (minutes for an ANN build: one more pool
 * connection per building tenant); the lock holder finds it by failing to take that lock
 * exclusively, which it then holds until its own transaction ends, so no build starts during a
 * compaction. On PGlite the reader's transaction takes the one connection, so writers wait for
 * the reader there.
 */
export function createPgTenantLock(db: Db): TenantLock {
  return {
    withLock<T>(tenantId: string, fn: (held: HeldTenantLock) => Promise<T>): Promise<T> {
      return db.transaction(async (tx) => {
        await tx.query("select pg_advisory_xact_lock(hashtext('lance:' || $1::text))", [tenantId]);
        return fn({
          async longReaderActive() {
            const rows = await tx.query<{ free: boolean }>(
              "select pg_try_advisory_xact_lock(hashtext('lance-read:' || $1::text)) as free",
              [tenantId],
            );
            return rows[0]?.free !== true;
          },
        });
      });
    },
    withLongReader<T>(tenantId: string, fn: () => Promise<T>): Promise<T> {
      return db.transaction(async (tx) => {
        await tx.query("select pg_advisory_xact_lock_shared(hashtext('lance-read:' || $1::text))", [
          tenantId,
        ]);
        return fn();
      });
    },
  };
}
