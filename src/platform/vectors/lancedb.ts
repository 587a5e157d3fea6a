import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { availableParallelism } from "node:os";
import path from "node:path";
import { connect, Session, type Table } from "@lancedb/lancedb";
import type { Logger } from "pino";
import { createLruPool } from "./cache.js";
import { ftsTerms, sqlString, whereClause } from "./filters.js";
import { catalogTable, chunksTable, type TableName, toCatalogRow } from "./lance-tables.js";
import { createLimiter } from "./limiter.js";
import type { HeldTenantLock, TenantLock } from "./lock.js";
import {
  type AnnIndexSettings,
  type AnnSearchSettings,
  annIndexState,
  bm25,
  buildAnnIndex,
  closeTables,
  compact,
  DEFAULT_ANN_INDEX,
  DEFAULT_ANN_SEARCH,
  DEFAULT_FULL_TEXT,
  dueForCompaction,
  ensureFts,
  type FullTextSettings,
  forgetIfGone,
  ftsState,
  hasFts,
  LANCE_INDEX_TYPE,
  nearest,
  rebuildFts,
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
  /** ANN index pieces (see `buildAnnIndex`) past which `optimize` builds the index anew. */
  maxAnnDeltas?: number;
  /** How hard ANN queries search (`AnnSearchSettings`; defaults `DEFAULT_ANN_SEARCH`). */
  annSearch?: Partial<AnnSearchSettings>;
  /**
   * How `optimize` builds the ANN index (`AnnIndexSettings`; defaults `DEFAULT_ANN_INDEX`). An
   * existing index of another type is rebuilt by the next `optimize`, and serves until then.
   */
  annIndex?: Partial<AnnIndexSettings>;
  /**
   * How the full-text index tokenizes and whether titles count (`FullTextSettings`; defaults
   * `DEFAULT_FULL_TEXT`). Indexes built under other settings keep answering (LanceDB
   * tokenizes queries as the index it searches was built) and are rebuilt by the next
   * `optimize`, which the first text search of each tenant in a process asks for.
   */
  fullText?: Partial<FullTextSettings>;
  /**
   * A write that leaves a table with this many small fragments compacts it before returning
   * (under the tenant's lock), which also folds new rows into the full-text and ANN indexes.
   * Every write commits a fragment, and merges, deletes and searches visit every fragment:
   * without this, a tenant's writes and searches slow down with every document since the
   * last compaction (bench/RESULTS.md, finding A). 0 turns it off.
   */
  compactFragments?: number;
  /**
   * Larger tables wait for more fragments, one per 100 rows up to this many: compacting costs
   * in proportion to the table, so this keeps its cost per write about constant
   * (`fragmentLimit`). Equal to `compactFragments`, the limit is fixed.
   */
  maxCompactFragments?: number;
  /**
   * A write that leaves this many rows outside the full-text index compacts too: LanceDB scans
   * unindexed rows on every text query, ~50 ms per 1,000 rows on 2 cores. Matters for a few
   * large documents, which make many rows in few fragments. 0 turns it off. (Text search folds
   * unindexed rows in itself before it queries: see `searchText`.)
   */
  ftsRefreshRows?: number;
  /**
   * Vector searches this process runs at once; the others wait. An exact search (any tenant
   * below the ANN threshold, or above it until its index is built) holds ~1.5 KB per row of
   * the tenant while it runs, so this bounds memory under bursts. Default: the CPU count.
   */
  searchConcurrency?: number;
  /**
   * Asks for `optimize(tenantId)` to run in the background after `delayMs` (the composition
   * root enqueues an `index.optimize` job). Called when a write takes a tenant past the ANN
   * threshold, when its ANN index has too many deltas, and after a write compacted, to remove
   * the table versions that compaction left once they are old enough. Failures are logged.
   */
  requestOptimize?: (tenantId: string, opts: { delayMs: number }) => Promise<void>;
  /**
   * How long compaction keeps the table versions it replaces, for searches still reading them
   * (longer while an ANN build runs). Short, because every table operation lists the versions
   * kept: with 2 000 of them a merge is 2.7× as slow as with a few (bench/RESULTS.md), and a
   * bulk load commits tens a second. Default 20 s.
   */
  keepVersionsMs?: number;
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
  /**
   * Writes of one tenant that a write of its own holds up are put together into one commit
   * per table by the next holder of the lock (`coalesce`): at most this many in one. 1 turns
   * the grouping off. Default 64.
   */
  maxGroupWrites?: number;
  /**
   * Called under the lock before each merge or delete commits, with the table and the
   * documents it writes (tests inject failures here).
   */
  beforeCommit?: (table: TableName, documentIds: string[]) => void | Promise<void>;
  /** Clock for the idle timeout (tests). */
  now?: () => number;
}

/** One write waiting for a group commit of its tenant (see `coalesce`). */
type GroupedWrite =
  | { kind: "chunks"; rows: ChunkRow[] }
  | { kind: "catalog"; row: CatalogRow }
  | { kind: "delete"; documentId: string; predicate: string; tables: TableName[] };

interface GroupMember {
  write: GroupedWrite;
  resolve(): void;
  reject(err: unknown): void;
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
  const maxAnnDeltas = opts.maxAnnDeltas ?? 64;
  const annSearch = { ...DEFAULT_ANN_SEARCH, ...opts.annSearch };
  const annIndex = { ...DEFAULT_ANN_INDEX, ...opts.annIndex };
  const fullText: FullTextSettings = { ...DEFAULT_FULL_TEXT, ...opts.fullText };
  const compactLimits = {
    fragments: opts.compactFragments ?? 32,
    maxFragments: opts.maxCompactFragments ?? 256,
    unindexedTextRows: opts.ftsRefreshRows ?? 1_000,
  };
  const keepVersionsMs = opts.keepVersionsMs ?? 20_000;
  const compactTables = (h: TenantHandle, held: HeldTenantLock, tables?: TableName[]) =>
    compact(h, held, keepVersionsMs, tables, fullText);
  const limitSearch = createLimiter(opts.searchConcurrency ?? availableParallelism());
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
  function writeUnderLock<R>(
    tenantId: string,
    fn: (h: TenantHandle, held: HeldTenantLock) => Promise<R>,
  ): Promise<R> {
    return lock.withLock(tenantId, (held) =>
      pool.use(tenantId, async (h) => {
        try {
          return await fn(h, held);
        } catch (err) {
          const opened = TABLES.filter((n) => h.tables.has(n));
          const gone = await Promise.all(opened.map((n) => forgetIfGone(h, n)));
          if (!gone.includes(true)) throw err;
          logger.warn({ tenantId }, "tenant vector tables were dropped elsewhere; writing anew");
          return fn(h, held);
        }
      }),
    );
  }

  const maxGroupWrites = Math.max(1, opts.maxGroupWrites ?? 64);
  /** Per tenant, the group that waits for the lock and takes new writes. */
  const gathering = new Map<string, GroupMember[]>();

  /**
   * Group commit. A write of a tenant joins the tenant's group waiting for the lock, or starts
   * one; the group's turn takes every write that joined meanwhile and commits them together:
   * one merge for all chunks, one for all catalog rows, one delete for all deletes, and one
   * round of upkeep (`afterWrite`). Under load a tenant's writes thus cost a few commits per
   * group instead of one or two per write, and fragments, versions and compactions fall with
   * them. Each caller's promise settles on its own: if the combined commit fails, the members
   * are written again one by one (every write here is idempotent), so a bad write fails alone.
   * Writes that arrive while a group commits start the next group. A group that cannot get
   * its turn (taking the lock or opening the tenant failed) fails every member, and the next
   * write starts a new group.
   */
  function coalesce(tenant: string, write: GroupedWrite): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const member = { write, resolve, reject };
      const open = gathering.get(tenant);
      if (open && open.length < maxGroupWrites) {
        open.push(member);
        return;
      }
      const members = [member];
      gathering.set(tenant, members);
      void writeGroup(tenant, members).catch((err: unknown) => {
        // Failed before its turn began (the lock or the tenant's tables could not be had): the
        // group still takes new writes, which would wait for a turn that never comes.
        if (gathering.get(tenant) === members) gathering.delete(tenant);
        for (const m of members) m.reject(err);
      });
    });
  }

  function writeGroup(tenant: string, members: GroupMember[]): Promise<void> {
    return writeUnderLock(tenant, async (h, held) => {
      // Writes that come from now on go to the next group.
      if (gathering.get(tenant) === members) gathering.delete(tenant);
      if (members.length === 1) {
        await commitWrites(tenant, h, held, [(members[0] as GroupMember).write]);
        (members[0] as GroupMember).resolve();
        return;
      }
      try {
        await commitWrites(
          tenant,
          h,
          held,
          members.map((m) => m.write),
        );
        for (const m of members) m.resolve();
        return;
      } catch (err) {
        logger.warn(
          { err, tenantId: tenant, writes: members.length },
          "a group commit failed; writing its members one by one",
        );
      }
      for (const m of members) {
        try {
          await commitWrites(tenant, h, held, [m.write]);
          m.resolve();
        } catch (err) {
          m.reject(err);
        }
      }
    });
  }

  /** Commits `writes` as one merge or delete per table, then the upkeep after a write. */
  async function commitWrites(
    tenant: string,
    h: TenantHandle,
    held: HeldTenantLock,
    writes: GroupedWrite[],
  ): Promise<void> {
    // The same chunk twice (a job run again while its first run writes): the later one wins.
    const chunks = new Map<string, ChunkRow>();
    const catalog = new Map<string, CatalogRow>();
    const deletes = new Map<TableName, string[]>();
    const deleted = new Map<TableName, string[]>();
    for (const w of writes) {
      if (w.kind === "chunks") {
        for (const r of w.rows) chunks.set(r.id, r);
      } else if (w.kind === "catalog") {
        // Versions of a document may finish out of order: the newest one is kept.
        const other = catalog.get(w.row.documentId);
        if (!other || other.version <= w.row.version) catalog.set(w.row.documentId, w.row);
      } else {
        for (const name of w.tables) {
          deletes.set(name, [...(deletes.get(name) ?? []), w.predicate]);
          deleted.set(name, [...(deleted.get(name) ?? []), w.documentId]);
        }
      }
    }
    const written = new Map<TableName, Table>();
    let crossed = false;
    if (chunks.size > 0) {
      const t = (await tableOf(h, "chunks", true)) as Table;
      await opts.beforeCommit?.("chunks", [
        ...new Set([...chunks.values()].map((r) => r.documentId)),
      ]);
      const merged = await t
        .mergeInsert("id")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute(chunksTable([...chunks.values()], dimensions));
      await ensureFts(h, t, fullText);
      if (merged.numInsertedRows > 0) {
        const total = await t.countRows();
        crossed = total >= annThreshold && total - merged.numInsertedRows < annThreshold;
      }
      written.set("chunks", t);
    }
    if (catalog.size > 0) {
      const t = (await tableOf(h, "catalog", true)) as Table;
      await opts.beforeCommit?.("catalog", [...catalog.keys()]);
      await t
        .mergeInsert("document_id")
        .whenMatchedUpdateAll({ where: "target.version <= source.version" })
        .whenNotMatchedInsertAll()
        .execute(catalogTable([...catalog.values()]));
      written.set("catalog", t);
    }
    // Deletes last: a document deleted while its chunks were being written loses them too.
    for (const [name, predicates] of deletes) {
      const t = await tableOf(h, name, false);
      if (!t) continue;
      await opts.beforeCommit?.(name, deleted.get(name) ?? []);
      // A delete that matches nothing commits nothing.
      const where =
        predicates.length === 1 ? predicates[0] : predicates.map((p) => `(${p})`).join(" OR ");
      if ((await t.delete(where as string)).numDeletedRows > 0) written.set(name, t);
    }
    await afterWrite(tenant, h, held, [...written.entries()], crossed);
  }

  /** When each tenant last asked for an optimize, so that a busy tenant does not ask often. */
  const requested = new Map<string, number>();
  /** When the clean-up already asked for each tenant runs (see `afterWrite`). */
  const cleanupAt = new Map<string, number>();
  const REQUEST_EVERY_MS = 5 * 60_000;

  /**
   * Asks for an optimize; `asked` remembers the request so that the next writes do not ask
   * again. If asking fails, that is forgotten, so the next compaction asks anew.
   */
  function request(tenantId: string, delayMs: number, asked: Map<string, number>): void {
    if (!opts.requestOptimize) return;
    opts.requestOptimize(tenantId, { delayMs }).catch((err: unknown) => {
      asked.delete(tenantId);
      logger.warn({ err, tenantId }, "could not ask for the tenant's vector index optimize");
    });
  }

  /**
   * Compaction keeps the versions it replaced for keepVersionsMs (readers may be on them); the
   * next compaction removes them, but a tenant that went quiet has none. One clean-up covers
   * the compactions of the next few minutes.
   */
  function askForCleanup(tenantId: string, now: number): void {
    const at = cleanupAt.get(tenantId);
    if (at === undefined || at <= now + keepVersionsMs) {
      const delayMs = keepVersionsMs + 5 * 60_000;
      cleanupAt.set(tenantId, now + delayMs);
      request(tenantId, delayMs, cleanupAt);
    }
    // Forget clean-ups that have run, so the map holds only recently written tenants.
    for (const [t, runAt] of cleanupAt) if (runAt < now) cleanupAt.delete(t);
  }

  /**
   * Folds the chunks written since the last compaction into the full-text index, under the
   * lock, if there are any: LanceDB 0.29 drops some unindexed rows from text search (`bm25`).
   * Every write that returned before this call is covered: it released the lock first.
   */
  async function foldInText(tenantId: string): Promise<void> {
    const stale = await read(
      tenantId,
      "chunks",
      false,
      async (t) => (await unindexedTextRows(t)) > 0,
    );
    if (!stale) return;
    await writeUnderLock(tenantId, async (h, held) => {
      const t = await tableOf(h, "chunks", false);
      // Another search may have folded them in while this one waited for the lock.
      if (!t || (await unindexedTextRows(t)) === 0) return;
      const started = Date.now();
      await compactTables(h, held, ["chunks"]);
      logger.debug({ tenantId, ms: Date.now() - started }, "folded new chunks into the text index");
      const now = Date.now();
      askForCleanup(tenantId, now);
      await askForAnnBuild(tenantId, h, now, false);
    });
  }

  /**
   * After a write, under the lock: compacts the written tables when they are due, asks for an
   * ANN build when the tenant needs one, and for a clean-up of what compaction left behind.
   */
  async function afterWrite(
    tenantId: string,
    h: TenantHandle,
    held: HeldTenantLock,
    written: Array<[TableName, Table]>,
    crossedAnnThreshold = false,
  ): Promise<void> {
    const dueTables: TableName[] = [];
    for (const [name, t] of written) {
      if (await dueForCompaction(t, name, compactLimits)) dueTables.push(name);
    }
    const due = dueTables.length > 0;
    if (due) {
      const started = Date.now();
      await compactTables(h, held, dueTables);
      logger.debug(
        { tenantId, tables: dueTables, ms: Date.now() - started },
        "compacted tenant vector tables",
      );
    }
    const now = Date.now();
    if (due) askForCleanup(tenantId, now);
    if (due || crossedAnnThreshold) await askForAnnBuild(tenantId, h, now, crossedAnnThreshold);
  }

  /** After a compaction or a write that crossed the ANN threshold: asks for a build if due. */
  async function askForAnnBuild(
    tenantId: string,
    h: TenantHandle,
    now: number,
    crossedAnnThreshold: boolean,
  ): Promise<void> {
    const chunks = h.tables.get("chunks");
    if (!chunks) return;
    const state = await annIndexState(chunks);
    const annDue = state
      ? state.deltas > maxAnnDeltas || state.type !== LANCE_INDEX_TYPE[annIndex.type]
      : crossedAnnThreshold || (await chunks.countRows()) >= annThreshold;
    const last = requested.get(tenantId);
    if (annDue && (last === undefined || now - last >= REQUEST_EVERY_MS)) {
      requested.set(tenantId, now);
      request(tenantId, 0, requested);
    }
  }

  async function runOptimize(tenantId: string): Promise<{ annIndexed: boolean }> {
    // Compaction first: rewriting fragments that an ANN index covers makes LanceDB remap the
    // index, which costs as much as a build. It needs the lock; the build does not: LanceDB
    // commits an index next to concurrent appends and deletes, and rows written meanwhile are
    // searched exactly until the next compaction folds them in (bench/RESULTS.md: ~100 s at
    // 100 000 × 384 on 2 cores).
    if (!mayExist(tenantId)) return { annIndexed: false };
    await writeUnderLock(tenantId, async (h, held) => {
      await compactTables(h, held);
      // Full-text indexes built under other settings: rebuilt here, seconds at 100 000 rows.
      const t = await tableOf(h, "chunks", false);
      if (t && (await rebuildFts(h, t, fullText))) {
        logger.info({ tenantId, fullText }, "rebuilt full-text index under the current settings");
      }
    });
    const annIndexed = await read(tenantId, "chunks", false, async (t) => {
      // A build reads one version for minutes: compactions meanwhile keep the old versions.
      const built = await lock.withLongReader(tenantId, () =>
        buildAnnIndex(t, annThreshold, maxAnnDeltas, annIndex),
      );
      if (built && built.action !== "kept") {
        logger.info(
          { tenantId, rows: built.rows, ms: built.ms, action: built.action },
          "built vector ANN index",
        );
      }
      return built !== false;
    });
    requested.delete(tenantId);
    return { annIndexed };
  }

  /** Tenants whose ANN index type this process has compared with `annIndex.type`. */
  const typeChecked = new Set<string>();

  /**
   * Once per tenant and process, on its first vector search: an ANN index of another type than
   * configured (built before `annIndex.type` changed) asks for an optimize, which rebuilds it.
   * It keeps answering meanwhile, with the same query settings. Without this a tenant that no
   * longer writes would never compact, so never be asked to rebuild.
   */
  async function checkAnnType(tenantId: string, t: Table): Promise<void> {
    if (typeChecked.has(tenantId)) return;
    if (typeChecked.size >= 100_000) typeChecked.clear();
    typeChecked.add(tenantId);
    const state = await annIndexState(t);
    if (state && state.type !== LANCE_INDEX_TYPE[annIndex.type] && !requested.has(tenantId)) {
      requested.set(tenantId, Date.now());
      request(tenantId, 0, requested);
    }
  }

  /** Tenants whose full-text indexes this process has compared with `fullText`. */
  const ftsChecked = new Set<string>();

  /**
   * Once per tenant and process, on its first text search: full-text indexes built under
   * other settings than `fullText` ask for an optimize, which rebuilds them (`rebuildFts`).
   * They keep answering meanwhile, as they were built (the title index only if it is there).
   */
  async function checkFts(tenantId: string, t: Table): Promise<void> {
    if (ftsChecked.has(tenantId)) return;
    if (ftsChecked.size >= 100_000) ftsChecked.clear();
    ftsChecked.add(tenantId);
    const state = await ftsState(t, fullText);
    if (state && !state.current && !requested.has(tenantId)) {
      requested.set(tenantId, Date.now());
      request(tenantId, 0, requested);
    }
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

  /** Deletes the document's rows matching `versionClause` from `tables` (a group commit). */
  async function remove(
    tenantId: string,
    documentId: string,
    versionClause: string,
    tables: TableName[],
  ): Promise<void> {
    open();
    const tenant = tenantKey(tenantId);
    const doc = documentKey(documentId);
    const predicate = `document_id = ${sqlString(doc)}${versionClause}`;
    if (!mayExist(tenant)) return;
    await coalesce(tenant, { kind: "delete", documentId: doc, predicate, tables });
  }
  return {
    async upsertChunks(tenantId: string, rows: ChunkRow[]) {
      open();
      const tenant = tenantKey(tenantId);
      const valid = validChunks(rows, dimensions);
      if (valid.length === 0) return;
      await coalesce(tenant, { kind: "chunks", rows: valid });
    },

    async upsertCatalog(tenantId: string, row: CatalogRow) {
      open();
      await coalesce(tenantKey(tenantId), { kind: "catalog", row: validCatalogRow(row) });
    },

    async deleteDocument(tenantId: string, documentId: string) {
      return remove(tenantId, documentId, "", TABLES);
    },

    async deleteVersions(tenantId, documentId, which) {
      const v = assertVersion("olderThan" in which ? which.olderThan : which.version);
      return remove(tenantId, documentId, ` AND version ${"olderThan" in which ? "<" : "="} ${v}`, [
        "chunks",
      ]);
    },

    async searchVector(tenantId, vector, limit, filters) {
      open();
      const args = searchArgs(tenantId, limit, filters);
      const query = Float32Array.from(assertVector(vector, dimensions));
      if (args.where === false) return [];
      const { where } = args;
      return limitSearch(() =>
        read(args.tenant, "chunks", [] as VectorHit[], async (t) => {
          await checkAnnType(args.tenant, t);
          return nearest(t, query, args.limit, where, annSearch);
        }),
      );
    },

    async searchText(tenantId, query, limit, filters) {
      open();
      const args = searchArgs(tenantId, limit, filters);
      const terms = ftsTerms(String(query));
      if (args.where === false || terms === undefined) return [];
      const { where } = args;
      // Writes leave rows outside the index (compacting on every write costs ~50×: RESULTS).
      await foldInText(args.tenant);
      return read(args.tenant, "chunks", [] as VectorHit[], async (t, h) => {
        if (!(await hasFts(h, t))) {
          // Only after a crash between a table's first write and its index; the next write
          // or optimize creates it.
          logger.warn({ tenantId: args.tenant }, "full-text index missing; text search is empty");
          return [];
        }
        await checkFts(args.tenant, t);
        return bm25(t, terms, args.limit, where, h.titleFtsReady ? fullText.titleBoost : 0);
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
