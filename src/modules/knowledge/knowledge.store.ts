import type { Queryable } from "../../platform/db/index.js";
import { pageQuery } from "../../platform/db/page.js";
import type { KnowledgeFields, KnowledgeType } from "./knowledge.schemas.js";

export interface KnowledgeItemRow {
  id: string;
  tenant_id: string;
  type: KnowledgeType;
  fields: KnowledgeFields;
  document_id: string | null;
  /** The document version the fields were submitted as (null before migration 7). */
  document_version: number | null;
  created_at: Date;
  updated_at: Date;
}

/** SQL for knowledge_items. Every query filters by tenant id and by the item's type. */
export const knowledgeStore = {
  async insert(
    q: Queryable,
    i: {
      id: string;
      tenantId: string;
      type: KnowledgeType;
      fields: KnowledgeFields;
      documentId: string;
      documentVersion: number;
    },
  ): Promise<KnowledgeItemRow> {
    const rows = await q.query<KnowledgeItemRow>(
      `insert into knowledge_items (id, tenant_id, type, fields, document_id, document_version)
       values ($1, $2, $3, $4, $5, $6) returning *`,
      [i.id, i.tenantId, i.type, JSON.stringify(i.fields), i.documentId, i.documentVersion],
    );
    return rows[0] as KnowledgeItemRow;
  },

  async get(
    q: Queryable,
    tenantId: string,
    type: KnowledgeType,
    id: string,
  ): Promise<KnowledgeItemRow | undefined> {
    const rows = await q.query<KnowledgeItemRow>(
      "select * from knowledge_items where tenant_id = $1 and type = $2 and id = $3",
      [tenantId, type, id],
    );
    return rows[0];
  },

  /**
   * Items of one type, newest first, keyset-paginated on the millisecond timestamp the cursor
   * carries (see platform/db/cursor.ts).
   */
  async list(
    q: Queryable,
    tenantId: string,
    type: KnowledgeType,
    opts: { limit: number; after?: { createdAt: Date; id: string }; category?: string },
  ): Promise<KnowledgeItemRow[]> {
    const page = pageQuery({
      select: "*",
      from: "knowledge_items",
      filters: [
        ["tenant_id", tenantId],
        ["type", type],
        ["fields->>'category'", opts.category || undefined],
      ],
      after: opts.after,
      limit: opts.limit,
    });
    return q.query<KnowledgeItemRow>(page.sql, page.params);
  },

  async update(
    q: Queryable,
    tenantId: string,
    type: KnowledgeType,
    id: string,
    patch: { fields: KnowledgeFields; documentId: string; documentVersion: number },
  ): Promise<KnowledgeItemRow | undefined> {
    // Fields submitted as an older version of the same document than the saved ones lost a
    // race to a newer update: they are not saved (the caller reads what is).
    const rows = await q.query<KnowledgeItemRow>(
      `update knowledge_items
       set fields = $4, document_id = $5, document_version = $6, updated_at = now()
       where tenant_id = $1 and type = $2 and id = $3
         and (document_id is distinct from $5 or document_version is null
              or document_version <= $6)
       returning *`,
      [tenantId, type, id, JSON.stringify(patch.fields), patch.documentId, patch.documentVersion],
    );
    return rows[0];
  },

  async delete(
    q: Queryable,
    tenantId: string,
    type: KnowledgeType,
    id: string,
  ): Promise<KnowledgeItemRow | undefined> {
    const rows = await q.query<KnowledgeItemRow>(
      "delete from knowledge_items where tenant_id = $1 and type = $2 and id = $3 returning *",
      [tenantId, type, id],
    );
    return rows[0];
  },
};
