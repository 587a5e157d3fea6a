import { AppError } from "../../errors.js";
import { decodeCursor, encodeCursor } from "../../platform/db/cursor.js";
import {
  type Db,
  isUniqueViolation,
  keysetPage,
  kysely,
  type Queryable,
  type Row,
} from "../../platform/db/index.js";
import type { PlatformContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import type { Price, PriceInput, PricePage } from "./usage.schemas.js";

export type PriceUnit = Price["unit"];

const PRICE_COLUMNS = [
  "id",
  "provider",
  "model",
  "unit",
  "usd_per_unit",
  "effective_from",
  "note",
  "created_by",
  "created_at",
] as const;
type PriceRow = Row<"prices", (typeof PRICE_COLUMNS)[number]>;

/** A model name that prices every model of its provider without a row of its own. */
export const ANY_MODEL = "*";

/**
 * The price in force for (provider, model, unit) at `at`: the newest row effective at or before
 * `at` of the exact model, else of the provider's `*` row; undefined when neither exists. The
 * same rule as re-rating's SQL (rerate.ts), which must agree with it.
 */
export async function priceAt(
  q: Queryable,
  key: PriceKey,
): Promise<{ id: string; usdPerUnit: string } | undefined> {
  const row = await priceInForce(kysely(q), key).select(["id", "usd_per_unit"]).executeTakeFirst();
  return row ? { id: row.id, usdPerUnit: row.usd_per_unit } : undefined;
}

export interface PriceKey {
  provider: string;
  model: string;
  unit: PriceUnit;
  at: Date;
}

/**
 * The row of `priceAt`'s rule as a query to select from: a subquery of a statement that prices
 * what it writes (the ledger's insert), so the price costs no round trip of its own.
 */
export function priceInForce(k: ReturnType<typeof kysely>, key: PriceKey) {
  return k
    .selectFrom("prices")
    .where("provider", "=", key.provider)
    .where("unit", "=", key.unit)
    .where("model", "in", [key.model, ANY_MODEL])
    .where("effective_from", "<=", key.at)
    .orderBy((eb) => eb("model", "=", key.model), "desc")
    .orderBy("effective_from", "desc")
    .limit(1);
}

function toPrice(r: PriceRow): Price {
  return {
    id: r.id,
    provider: r.provider,
    model: r.model,
    unit: r.unit,
    usdPerUnit: r.usd_per_unit,
    effectiveFrom: r.effective_from.toISOString(),
    note: r.note,
    createdBy: r.created_by,
    createdAt: r.created_at.toISOString(),
  };
}

function insertPrice(q: Queryable, input: PriceInput, createdBy: string): Promise<PriceRow> {
  return kysely(q)
    .insertInto("prices")
    .values({
      provider: input.provider,
      model: input.model,
      unit: input.unit,
      usd_per_unit: input.usdPerUnit,
      effective_from: input.effectiveFrom,
      note: input.note ?? null,
      created_by: createdBy,
    })
    .returning(PRICE_COLUMNS)
    .executeTakeFirstOrThrow();
}

/**
 * The price book, for platform admins. A price is never edited: a correction is a new row with
 * its effective date, and a re-rating run applies it to past events.
 */
export function createPriceBook(deps: { db: Db; audit: Pick<AuditLog, "record"> }) {
  const { db } = deps;
  return {
    async list(
      _ctx: PlatformContext,
      opts: { provider?: string; model?: string; limit: number; cursor?: string },
    ): Promise<PricePage> {
      const after = opts.cursor ? decodeCursor(opts.cursor) : undefined;
      let query = kysely(db).selectFrom("prices").select(PRICE_COLUMNS);
      if (opts.provider !== undefined) query = query.where("provider", "=", opts.provider);
      if (opts.model !== undefined) query = query.where("model", "=", opts.model);
      const rows = await keysetPage(query, { after, limit: opts.limit + 1 }).execute();
      const page = rows.slice(0, opts.limit);
      const last = page[page.length - 1];
      return {
        items: page.map(toPrice),
        nextCursor:
          rows.length > opts.limit && last ? encodeCursor(last.created_at, last.id) : null,
      };
    },

    /** Adds a price; 409 `price.duplicate` when the book has one for the same key and date. */
    async create(ctx: PlatformContext, input: PriceInput): Promise<Price> {
      try {
        return await db.transaction(async (tx) => {
          const price = toPrice(await insertPrice(tx, input, ctx.actor.userId));
          const { provider, model, unit, usdPerUnit, effectiveFrom, note } = price;
          await deps.audit.record(
            ctx,
            {
              eventType: "price.create",
              entityType: "price",
              entityId: price.id,
              action: "create",
              newValues: { provider, model, unit, usdPerUnit, effectiveFrom, note },
            },
            { tx },
          );
          return price;
        });
      } catch (err) {
        if (isUniqueViolation(err)) {
          throw new AppError(
            "price.duplicate",
            "the price book already has a price for this provider, model and unit from that moment; add one with another effectiveFrom",
            {
              provider: input.provider,
              model: input.model,
              unit: input.unit,
              effectiveFrom: input.effectiveFrom.toISOString(),
            },
          );
        }
        throw err;
      }
    },
  };
}

export type PriceBook = ReturnType<typeof createPriceBook>;
