import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { connect, Session, type Table } from "@lancedb/lancedb";
import type { Logger } from "pino";
import { createLruPool } from "./cache.js";
import { ftsTerms, sqlString, whereClause } from "./filters.js";
import { catalogTable, chunksTable, type TableName, toCatalogRow } from "./lance-tables.js";
import type { TenantLock } from "./lock.js";
import {
  bm25,
  buildAnnIndex,
  closeTables,
  compact,
  ensureFts,
  forgetIfGone,
  hasFts,
  nearest,
  TABLES,
  type TenantHandle,
  tableOf,
  unindexedTextRows,
} from "./tenant-tables.js";
import {
  assertLimit,
  assertVector,
  assertVersion,
  documentKey,
  tenantKey,
  validCatalogRow,
  validChunks,
  validFilters,
} from "./validate.js";
import type { CatalogRow, ChunkRow, SearchFilters, VectorHit, VectorIndex } from "./vectors.js";

export type VectorLogger = Pick<Logger, "debug" | "info" | "warn">;

export interface LanceVectorIndexOptions {
  /**
   * Where the tenants' databases live, each at `<uri>/<tenantId>`: a local directory (embedded
   * mode) or an object-store URI such as `s3://bucket/prefix`, which LanceDB handles the same way
   * (credentials and endpoint from the AWS_* environment or `storageOptions`).
   */
  uri: string;
  /** Vector size of every tenant; a tenant table of another size is refused. */
  dimensions: number;
  /** Serializes each tenant's writes (lock.ts); the composition root picks the adapter. */
  lock: TenantLock;
  /** Rows from which `optimize` builds the ANN index; below it, search is exact. */
  annThreshold?: number;
  /**
   * A write that leaves this many rows outside the full-text index folds them in (and compacts)
   * before returning. LanceDB scans unindexed rows on every text query, ~15 ms per 1,000 rows on
   * 2 cores, so this caps what a missed `optimize` costs searches at the price of ~0.2–0.5 s
   * for one write in that many rows. 0 leaves it all to `optimize`.
   */
  ftsRefreshRows?: number;
  /** Tenants whose connection and tables stay open at once. */
  cacheSize?: number;
  /** A tenant unused this long has its tables closed. */
  idleMs?: number;
  logger: VectorLogger;
  /** Passed to LanceDB for object stores (`aws_endpoint`, `aws_region`, …). */
  storageOptions?: Record<string, string>;
  /**
   * How stale a read may be with respect to other processes' writes. 0 (default) makes every
   * read check for a newer table version: a worker's write is searchable by every API process
   * at once, at the cost of one manifest lookup per read (a stat locally, a LIST on S3).
   */
  readConsistencySeconds?: number;
  /** Memory for LanceDB's caches, shared by all open tenants. */
  cacheBytes?: { index: number; metadata: number };
  /** Clock for the idle timeout (tests). */
  now?: () => number;
}

export interface LanceVectorIndex extends VectorIndex {
  /** What the LRU cache holds open now. */
  stats(): { openTenants: number; openTables: number };
  /** The tenant's catalog, by document id. */
  readCatalog(tenantId: string): Promise<CatalogRow[]>;
}

function isRemote(uri: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(uri) && !uri.startsWith("file://");
}

/**
 * The LanceDB adapter of the vector index: one database per tenant, tables `chunks` and
 * `catalog` created on the first write. See DESIGN.md §5 and §10 for the choices it follows.
 */
export function createLanceVectorIndex(opts: LanceVectorIndexOptions): LanceVectorIndex {
  const { dimensions, lock, logger } = opts;
  if (!Number.isInteger(dimensions) || dimensions < 1) {
    throw new RangeError("dimensions must be a positive integer");
  }
  const annThreshold = opts.annThreshold ?? 20_000;
  const ftsRefreshRows = opts.ftsRefreshRows ?? 5_000;
  const remote = isRemote(opts.uri);
  const base = remote
    ? opts.uri.replace(/\/+$/, "")
    : path.resolve(opts.uri.replace(/^file:\/\//, ""));
  const tenantUri = (tenantId: string) =>
    remote ? `${base}/${tenantId}` : path.join(base, tenantId);
  // Reads never create a tenant's directory (connecting would); a missing one is an empty tenant.
  const mayExist = (tenantId: string) => remote || existsSync(tenantUri(tenantId));
  const session = new Session(
    BigInt(opts.cacheBytes?.index ?? 1024 ** 3),
    BigInt(opts.cacheBytes?.metadata ?? 256 * 1024 ** 2),
  );
  const optimizing = new Map<string, Promise<{ annIndexed: boolean }>>();

  const pool = createLruPool<TenantHandle>({
    max: opts.cacheSize ?? 64,
    idleMs: opts.idleMs ?? 300_000,
    ...(opts.now ? { now: opts.now } : {}),
    async open(tenantId) {
      const conn = await connect(
        tenantUri(tenantId),
        {
          readConsistencyInterval: opts.readConsistencySeconds ?? 0,
          ...(opts.storageOptions ? { storageOptions: opts.storageOptions } : {}),
        },
        session,
      );
      return { conn, dimensions, tables: new Map(), ftsReady: false };
    },
    close(h, tenantId) {
      closeTables(h);
      h.conn.close();
      logger.debug({ tenantId }, "closed tenant vector tables");
    },
    onCloseError(err, tenantId) {
      logger.warn({ err, tenantId }, "closing tenant vector tables failed");
    },
  });

  function read<R>(
    tenantId: string,
    name: TableName,
    empty: R,
    fn: (t: Table, h: TenantHandle) => Promise<R>,
  ): Promise<R> {
    if (!mayExist(tenantId)) return Promise.resolve(empty);
    return pool.use(tenantId, async (h) => {
      const t = await tableOf(h, name, false);
      if (!t) return empty;
      try {
        return await fn(t, h);
      } catch (err) {
        if (await forgetIfGone(h, name)) return empty;
        throw err;
      }
    });
  }

  /** Runs `fn` under the tenant's lock; every `fn` here is idempotent, so it may run twice. */
  function write<R>(tenantId: string, fn: (h: TenantHandle) => Promise<R>): Promise<R> {
    return lock.withLock(tenantId, () =>
      pool.use(tenantId, async (h) => {
        try {
          return await fn(h);
        } catch (err) {
          const opened = TABLES.filter((n) => h.tables.has(n));
          const gone = await Promise.all(opened.map((n) => forgetIfGone(h, n)));
          if (!gone.includes(true)) throw err;
          logger.warn({ tenantId }, "tenant vector tables were dropped elsewhere; writing anew");
          return fn(h);
        }
      }),
    );
  }

  async function runOptimize(tenantId: string): Promise<{ annIndexed: boolean }> {
    // The ANN build is slow (DESIGN §10: ~42 s for 50k × 256) and needs no lock: LanceDB
    // commits an index next to concurrent appends and deletes, and rows written meanwhile are
    // searched exactly until the next optimize folds them in. Compaction does need the lock.
    const annIndexed = await read(tenantId, "chunks", undefined, async (t) => {
      const built = await buildAnnIndex(t, annThreshold);
      if (built && !built.existed) {
        logger.info({ tenantId, rows: built.rows, ms: built.ms }, "built vector ANN index");
      }
      return built !== false;
    });
    if (annIndexed === undefined) return { annIndexed: false };
    await write(tenantId, compact);
    return { annIndexed };
  }

  function searchArgs(tenantId: string, limit: number, filters: SearchFilters | undefined) {
    return {
      tenant: tenantKey(tenantId),
      limit: assertLimit(limit),
      where: whereClause(validFilters(filters)),
    };
  }

  let closed = false;
  const open = () => {
    if (closed) throw new Error("vector index is closed");
  };

  return {
    async upsertChunks(tenantId: string, rows: ChunkRow[]) {
      open();
      const tenant = tenantKey(tenantId);
      const valid = validChunks(rows, dimensions);
      if (valid.length === 0) return;
      const data = chunksTable(valid, dimensions);
      await write(tenant, async (h) => {
        const t = (await tableOf(h, "chunks", true)) as Table;
        await t.mergeInsert("id").whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(data);
        await ensureFts(h, t);
        if (ftsRefreshRows > 0 && (await unindexedTextRows(t)) >= ftsRefreshRows) {
          await compact(h);
        }
      });
    },

    async upsertCatalog(tenantId: string, row: CatalogRow) {
      open();
      const tenant = tenantKey(tenantId);
      const data = catalogTable(validCatalogRow(row));
      await write(tenant, async (h) => {
        const t = (await tableOf(h, "catalog", true)) as Table;
        await t
          .mergeInsert("document_id")
          .whenMatchedUpdateAll()
          .whenNotMatchedInsertAll()
          .execute(data);
      });
    },

    /** Also removes the catalog row unless it is of `keepVersion`. */
    async deleteDocument(tenantId: string, documentId: string, keepVersion?: number) {
      open();
      const tenant = tenantKey(tenantId);
      let predicate = `document_id = ${sqlString(documentKey(documentId))}`;
      if (keepVersion !== undefined) predicate += ` AND version <> ${assertVersion(keepVersion)}`;
      if (!mayExist(tenant)) return;
      await write(tenant, async (h) => {
        for (const name of TABLES) await (await tableOf(h, name, false))?.delete(predicate);
      });
    },

    async searchVector(tenantId, vector, limit, filters) {
      open();
      const args = searchArgs(tenantId, limit, filters);
      const query = Float32Array.from(assertVector(vector, dimensions));
      if (args.where === false) return [];
      const { where } = args;
      return read(args.tenant, "chunks", [] as VectorHit[], (t) =>
        nearest(t, query, args.limit, where),
      );
    },

    async searchText(tenantId, query, limit, filters) {
      open();
      const args = searchArgs(tenantId, limit, filters);
      const terms = ftsTerms(String(query));
      if (args.where === false || terms === undefined) return [];
      const { where } = args;
      return read(args.tenant, "chunks", [] as VectorHit[], async (t, h) => {
        if (!(await hasFts(h, t))) {
          // Only after a crash between a table's first write and its index; the next write
          // or optimize creates it.
          logger.warn({ tenantId: args.tenant }, "full-text index missing; text search is empty");
          return [];
        }
        return bm25(t, terms, args.limit, where);
      });
    },

    async count(tenantId) {
      open();
      return read(tenantKey(tenantId), "chunks", 0, (t) => t.countRows());
    },

    /** One run per tenant at a time in this process: a second call joins the running one. */
    optimize(tenantId) {
      open();
      const tenant = tenantKey(tenantId);
      let running = optimizing.get(tenant);
      if (!running) {
        running = runOptimize(tenant).finally(() => optimizing.delete(tenant));
        optimizing.set(tenant, running);
      }
      return running;
    },

    async dropTenant(tenantId) {
      open();
      const tenant = tenantKey(tenantId);
      await lock.withLock(tenant, async () => {
        if (mayExist(tenant)) {
          await pool.use(tenant, async (h) => {
            closeTables(h);
            await h.conn.dropAllTables();
          });
        }
        await pool.evict(tenant);
        if (!remote) await rm(tenantUri(tenant), { recursive: true, force: true });
      });
    },

    async readCatalog(tenantId) {
      open();
      return read(tenantKey(tenantId), "catalog", [] as CatalogRow[], async (t) => {
        const rows = (await t.query().toArray()) as Record<string, unknown>[];
        return rows.map(toCatalogRow).sort((a, b) => a.documentId.localeCompare(b.documentId));
      });
    },

    stats() {
      const handles = pool.openValues();
      return {
        openTenants: handles.length,
        openTables: handles.reduce((n, h) => n + h.tables.size, 0),
      };
    },

    /** Waits for running operations, then closes every table. Idempotent. */
    async close() {
      closed = true;
      await Promise.allSettled(optimizing.values());
      await pool.close();
    },
  };
}
