import { z } from "zod";
import { plainText } from "../../http/schemas.js";
import {
  type IngestResult,
  ingestResultSchema,
  type JobState,
  jobStateSchema,
} from "../ingestion/index.js";

/** The kinds of knowledge item; each is also the `docType` of its backing document in search. */
export const KNOWLEDGE_TYPES = ["faq", "menu_item", "policy"] as const;
export type KnowledgeType = (typeof KNOWLEDGE_TYPES)[number];

/** Every text field of an item: no control characters (tab, newline and CR allowed). */
const text = (max: number) => plainText().trim().min(1, "must not be empty").max(max);
const category = text(100);
/** Short labels (tags, dietary notes, allergens): a few, none repeated. */
const labels = z
  .array(text(50))
  .max(20)
  .refine((a) => new Set(a.map((s) => s.toLowerCase())).size === a.length, "must not repeat");

const faqShape = {
  question: text(500),
  answer: text(20_000),
  category: category.optional(),
  tags: labels.optional(),
};

const menuItemShape = {
  name: text(200),
  description: text(5000),
  // Amounts in the currency's major unit, at most two decimals (12.99), so rendering is exact.
  price: z
    .number()
    .min(0, "must not be negative")
    .max(1_000_000)
    .refine((p) => Math.abs(p * 100 - Math.round(p * 100)) < 1e-6, "at most two decimals"),
  currency: z
    .string()
    .regex(/^[A-Z]{3}$/, "an ISO 4217 code such as EUR")
    .optional(),
  category,
  dietary: labels.optional(),
  allergens: labels.optional(),
  available: z.boolean().optional(),
};

const policyShape = {
  title: text(300),
  content: text(50_000),
  category: category.optional(),
  effectiveDate: z.iso.date({ message: "a date such as 2025-01-31" }).optional(),
};

/** Request bodies (POST and PUT): the item's fields, nothing else. */
export const fieldsInput = {
  faq: z.strictObject(faqShape),
  menu_item: z.strictObject(menuItemShape),
  policy: z.strictObject(policyShape),
} as const;

export type FaqFields = z.infer<typeof fieldsInput.faq>;
export type MenuItemFields = z.infer<typeof fieldsInput.menu_item>;
export type PolicyFields = z.infer<typeof fieldsInput.policy>;
export type KnowledgeFields = FaqFields | MenuItemFields | PolicyFields;

/** An item's type with fields of that type: what the service takes. */
export type KnowledgeInput =
  | { type: "faq"; fields: FaqFields }
  | { type: "menu_item"; fields: MenuItemFields }
  | { type: "policy"; fields: PolicyFields };

export type Processing = {
  status: "processing" | "completed" | "failed";
  error: { code: string; message: string } | null;
  activeVersion: number | null;
  latestVersion: number | null;
};

/** The fields of an item of type `T`. */
export type FieldsOf<T extends KnowledgeType> = Extract<KnowledgeInput, { type: T }>["fields"];

/**
 * An item with its processing state. Distributes over `T`, so that for a union of types it is
 * a union of items whose `type` tells their `fields` (what the per-type response schemas say).
 */
export type KnowledgeItemView<T extends KnowledgeType = KnowledgeType> = T extends KnowledgeType
  ? {
      id: string;
      type: T;
      fields: FieldsOf<T>;
      documentId: string | null;
      createdAt: string;
      updatedAt: string;
    } & Processing
  : never;

export type KnowledgeItemDetail<T extends KnowledgeType = KnowledgeType> = T extends KnowledgeType
  ? KnowledgeItemView<T> & { job: JobState }
  : never;

export type KnowledgeWriteResult<T extends KnowledgeType = KnowledgeType> = T extends KnowledgeType
  ? KnowledgeItemDetail<T> & { ingest: IngestResult }
  : never;

export type KnowledgePage<T extends KnowledgeType = KnowledgeType> = T extends KnowledgeType
  ? { items: KnowledgeItemView<T>[]; nextCursor: string | null }
  : never;

const errorSchema = z.object({ code: z.string(), message: z.string() }).nullable();

/**
 * The fields of an item as answered. Their own shapes, not the request's: not strict, and
 * without the request's limits and refinements, so that a rule tightened on input later does
 * not break reading the items written before it.
 */
const labelsOut = z.array(z.string());
const fieldsOutput = {
  faq: {
    question: z.string(),
    answer: z.string(),
    category: z.string().optional(),
    tags: labelsOut.optional(),
  },
  menu_item: {
    name: z.string(),
    description: z.string(),
    price: z.number(),
    currency: z.string().optional(),
    category: z.string(),
    dietary: labelsOut.optional(),
    allergens: labelsOut.optional(),
    available: z.boolean().optional(),
  },
  policy: {
    title: z.string(),
    content: z.string(),
    category: z.string().optional(),
    effectiveDate: z.iso.date().optional(),
  },
} satisfies Record<KnowledgeType, z.ZodRawShape>;

/** An item as listed: its fields and where its indexing stands. */
function itemSchema<T extends KnowledgeType, S extends z.ZodRawShape>(type: T, shape: S) {
  return z.object({
    id: z.uuid(),
    type: z.literal(type),
    fields: z.object(shape),
    documentId: z.uuid().nullable(),
    status: z.enum(["processing", "completed", "failed"]),
    error: errorSchema,
    activeVersion: z.number().int().nullable(),
    latestVersion: z.number().int().nullable(),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  });
}

/** Response schemas of one item type: list entry, single item (with its job), write result. */
function responses<T extends KnowledgeType, S extends z.ZodRawShape>(type: T, shape: S) {
  const item = itemSchema(type, shape);
  const detail = item.extend({ job: jobStateSchema });
  return {
    list: z.object({ items: z.array(item), nextCursor: z.string().nullable() }),
    detail,
    write: detail.extend({ ingest: ingestResultSchema }),
  };
}

export type { JobState };

export const responseSchemas = {
  faq: responses("faq", fieldsOutput.faq),
  menu_item: responses("menu_item", fieldsOutput.menu_item),
  policy: responses("policy", fieldsOutput.policy),
} as const;

export const listQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional(),
  category: plainText().trim().min(1).max(100).optional(),
});
