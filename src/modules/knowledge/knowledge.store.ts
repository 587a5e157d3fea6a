import {
  keysetPage,
  kysely,
  type PageAfter,
  type Queryable,
  type Row,
  sql,
} from "../../platform/db/index.js";
import type { KnowledgeFields, KnowledgeType } from "./knowledge.schemas.js";

const ITEM_COLUMNS = [
  "id",
  "tenant_id",
  "type",
  "fields",
  "document_id",
  "document_version",
  "created_at",
  "updated_at",
] as const;

type Stored = Row<"knowledge_items", (typeof ITEM_COLUMNS)[number]>;

/**
 * A knowledge item as stored. `fields` is jsonb, written only by this store after the service
 * validated it against the item's type; `document_version` is null for items saved before
 * migration 7.
 */
export type KnowledgeItemRow = Omit<Stored, "fields"> & { fields: KnowledgeFields };

const asItem = (row: Stored): KnowledgeItemRow => ({
  ...row,
  fields: row.fields as KnowledgeFields,
});
const asItemOrNone = (row: Stored | undefined) => (row ? asItem(row) : undefined);

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
    const row = await kysely(q)
      .insertInto("knowledge_items")
      .values({
        id: i.id,
        tenant_id: i.tenantId,
        type: i.type,
        fields: JSON.stringify(i.fields),
        document_id: i.documentId,
        document_version: i.documentVersion,
      })
      .returning(ITEM_COLUMNS)
      .executeTakeFirstOrThrow();
    return asItem(row);
  },

  async get(
    q: Queryable,
    tenantId: string,
    type: KnowledgeType,
    id: string,
  ): Promise<KnowledgeItemRow | undefined> {
    const row = await kysely(q)
      .selectFrom("knowledge_items")
      .select(ITEM_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("type", "=", type)
      .where("id", "=", id)
      .executeTakeFirst();
    return asItemOrNone(row);
  },

  /** Items of one type, newest first, keyset-paginated (see platform/db/page.ts). */
  async list(
    q: Queryable,
    tenantId: string,
    type: KnowledgeType,
    opts: { limit: number; after?: PageAfter | undefined; category?: string | undefined },
  ): Promise<KnowledgeItemRow[]> {
    let query = kysely(q)
      .selectFrom("knowledge_items")
      .select(ITEM_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("type", "=", type);
    if (opts.category) query = query.where(sql`fields->>'category'`, "=", opts.category);
    return (await keysetPage(query, opts).execute()).map(asItem);
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
    const row = await kysely(q)
      .updateTable("knowledge_items")
      .set({
        fields: JSON.stringify(patch.fields),
        document_id: patch.documentId,
        document_version: patch.documentVersion,
        updated_at: sql`now()`,
      })
      .where("tenant_id", "=", tenantId)
      .where("type", "=", type)
      .where("id", "=", id)
      .where((eb) =>
        eb.or([
          eb("document_id", "is distinct from", patch.documentId),
          eb("document_version", "is", null),
          eb("document_version", "<=", patch.documentVersion),
        ]),
      )
      .returning(ITEM_COLUMNS)
      .executeTakeFirst();
    return asItemOrNone(row);
  },

  async delete(
    q: Queryable,
    tenantId: string,
    type: KnowledgeType,
    id: string,
  ): Promise<KnowledgeItemRow | undefined> {
    const row = await kysely(q)
      .deleteFrom("knowledge_items")
      .where("tenant_id", "=", tenantId)
      .where("type", "=", type)
      .where("id", "=", id)
      .returning(ITEM_COLUMNS)
      .executeTakeFirst();
    return asItemOrNone(row);
  },
};
