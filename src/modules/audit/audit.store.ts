import { kysely, type Queryable, type Row, sql } from "../../platform/db/index.js";
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

  /** The platform chain's id (rows without a tenant). */
  platformChain: NIL_UUID,
};
