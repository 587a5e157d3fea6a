import {
  keysetPage,
  kysely,
  type PageAfter,
  type Queryable,
  type Row,
  sql,
} from "../../platform/db/index.js";
import type { AuditAction, AuditActorType, AuditResult } from "./audit.types.js";
import { type Json, NIL_UUID } from "./canonical.js";

/** A row as the store writes it. */
export interface NewAuditRow {
  id: string;
  tenant_id: string | null;
  chain_id: string;
  seq: number;
  event_type: string;
  entity_type: string;
  entity_id: string | null;
  action: AuditAction;
  actor_type: AuditActorType;
  actor_id: string | null;
  caused_by: Json;
  old_values: Json;
  new_values: Json;
  changes_summary: string | null;
  result: AuditResult;
  error_message: string | null;
  ip_address: string | null;
  user_agent: string | null;
  request_id: string | null;
  created_at: Date;
  prev_hash: string;
  hash: string;
}

export type AuditRow = Row<"audit_events">;

/** jsonb as a parameter: SQL NULL for null (so a stored null reads back as null either way). */
const jsonb = (v: Json) => (v === null ? null : JSON.stringify(v));

/** SQL of the audit tables. Every tenant query filters by chain id. */
export const auditStore = {
  /**
   * The chain's head (its last seq and hash; seq 0 and `genesis` for a new chain), row-locked
   * until the transaction ends: one upsert, so a new chain and an existing one lock alike and
   * concurrent writers of one chain take turns here.
   */
  async lockHead(
    q: Queryable,
    chainId: string,
    genesis: string,
  ): Promise<{ seq: number; hash: string }> {
    const row = await kysely(q)
      .insertInto("audit_chains")
      .values({ chain_id: chainId, seq: 0, hash: genesis })
      .onConflict((oc) => oc.column("chain_id").doUpdateSet({ seq: sql`audit_chains.seq` }))
      .returning(["seq", "hash"])
      .executeTakeFirstOrThrow();
    return row;
  },

  /** Inserts the row and advances its chain's head to it, in one statement. */
  async append(q: Queryable, r: NewAuditRow): Promise<void> {
    const db = kysely(q);
    await db
      .with("appended", (w) =>
        w
          .insertInto("audit_events")
          .values({
            ...r,
            caused_by: jsonb(r.caused_by),
            old_values: jsonb(r.old_values),
            new_values: jsonb(r.new_values),
          })
          .returning(["chain_id", "seq", "hash"]),
      )
      .updateTable("audit_chains")
      .from("appended")
      .set({ seq: sql`appended.seq`, hash: sql`appended.hash` })
      .whereRef("audit_chains.chain_id", "=", "appended.chain_id")
      .execute();
  },

  /**
   * Inserts consecutive rows of one chain and advances its head to the last, in one statement
   * (the head locked by `lockHead` in the same transaction).
   */
  async appendMany(q: Queryable, rows: readonly NewAuditRow[]): Promise<void> {
    const last = rows.at(-1);
    if (!last) return;
    await kysely(q)
      .with("appended", (w) =>
        w.insertInto("audit_events").values(
          rows.map((r) => ({
            ...r,
            caused_by: jsonb(r.caused_by),
            old_values: jsonb(r.old_values),
            new_values: jsonb(r.new_values),
          })),
        ),
      )
      .updateTable("audit_chains")
      .set({ seq: last.seq, hash: last.hash })
      .where("chain_id", "=", last.chain_id)
      .execute();
  },

  /** The platform chain's id (rows without a tenant). */
  platformChain: NIL_UUID,
};

export interface AuditFilter {
  eventType?: string | undefined;
  entityType?: string | undefined;
  entityId?: string | undefined;
  action?: AuditAction | undefined;
  actorType?: AuditActorType | undefined;
  actorId?: string | undefined;
  result?: AuditResult | undefined;
  from?: Date | undefined;
  to?: Date | undefined;
}

export type DigestRow = Row<"audit_digests">;

/** Reads of a chain (every one filters by chain id). */
export const auditReads = {
  /** One page of a chain's rows, newest first. */
  async page(
    q: Queryable,
    chainId: string,
    f: AuditFilter,
    page: { after?: PageAfter | undefined; limit: number },
  ): Promise<AuditRow[]> {
    let query = kysely(q).selectFrom("audit_events").selectAll().where("chain_id", "=", chainId);
    if (f.eventType) query = query.where("event_type", "=", f.eventType);
    if (f.entityType) query = query.where("entity_type", "=", f.entityType);
    if (f.entityId) query = query.where("entity_id", "=", f.entityId);
    if (f.action) query = query.where("action", "=", f.action);
    if (f.actorType) query = query.where("actor_type", "=", f.actorType);
    if (f.actorId) query = query.where("actor_id", "=", f.actorId);
    if (f.result) query = query.where("result", "=", f.result);
    if (f.from) query = query.where("created_at", ">=", f.from);
    if (f.to) query = query.where("created_at", "<", f.to);
    return keysetPage(query, page).execute();
  },

  /** Rows of seqs in (afterSeq, maxSeq], in seq order, at most `limit`. */
  async bySeq(
    q: Queryable,
    chainId: string,
    afterSeq: number,
    maxSeq: number,
    limit: number,
  ): Promise<AuditRow[]> {
    return kysely(q)
      .selectFrom("audit_events")
      .selectAll()
      .where("chain_id", "=", chainId)
      .where("seq", ">", afterSeq)
      .where("seq", "<=", maxSeq)
      .orderBy("seq")
      .limit(limit)
      .execute();
  },

  /**
   * The seqs a time window covers: from the first row at or after `from` to the last row
   * before `to` (all of the chain when both are open), and the hash of the row before it.
   */
  async window(
    q: Queryable,
    chainId: string,
    from: Date | undefined,
    to: Date | undefined,
  ): Promise<{ minSeq: number; maxSeq: number; prevHash: string | undefined } | undefined> {
    const db = kysely(q);
    let range = db
      .selectFrom("audit_events")
      .select([sql<number | null>`min(seq)`.as("min"), sql<number | null>`max(seq)`.as("max")])
      .where("chain_id", "=", chainId);
    if (from) range = range.where("created_at", ">=", from);
    if (to) range = range.where("created_at", "<", to);
    const r = await range.executeTakeFirst();
    if (!r || r.min === null || r.max === null) return undefined;
    const before = from
      ? await db
          .selectFrom("audit_events")
          .select("hash")
          .where("chain_id", "=", chainId)
          .where("seq", "=", r.min - 1)
          .executeTakeFirst()
      : undefined;
    return { minSeq: r.min, maxSeq: r.max, prevHash: before?.hash };
  },

  /** The chain's latest row of `eventType`. */
  async lastOfType(
    q: Queryable,
    chainId: string,
    eventType: string,
  ): Promise<AuditRow | undefined> {
    return kysely(q)
      .selectFrom("audit_events")
      .selectAll()
      .where("chain_id", "=", chainId)
      .where("event_type", "=", eventType)
      .orderBy("seq", "desc")
      .limit(1)
      .executeTakeFirst();
  },

  async head(q: Queryable, chainId: string): Promise<{ seq: number; hash: string } | undefined> {
    return kysely(q)
      .selectFrom("audit_chains")
      .select(["seq", "hash"])
      .where("chain_id", "=", chainId)
      .executeTakeFirst();
  },

  /** The chain's digests, oldest first. */
  async digests(q: Queryable, chainId: string): Promise<DigestRow[]> {
    return kysely(q)
      .selectFrom("audit_digests")
      .selectAll()
      .where("chain_id", "=", chainId)
      .orderBy("last_seq")
      .orderBy("period_start")
      .execute();
  },
};
