import { z } from "zod";
import { instant, plainText } from "../../http/schemas.js";

export const PRICE_UNITS = ["input_token", "output_token", "call", "byte", "document"] as const;

/** The price book's scale: numeric(24, 15), so 9 integer digits and 15 decimals. */
const INT_DIGITS = 9;
const FRACTION_DIGITS = 15;

/**
 * A JSON number as the exact decimal it was written as: JavaScript prints small numbers in
 * exponent form (2e-8), which is shifted into plain digits here, with no floating-point step.
 */
export function plainDecimal(n: number): string {
  const text = String(n);
  const m = /^(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(text);
  if (!m) return text;
  const digits = `${m[1]}${m[2] ?? ""}`;
  const point = (m[1] as string).length + Number(m[3]);
  if (point <= 0) return `0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return digits + "0".repeat(point - digits.length);
  return `${digits.slice(0, point)}.${digits.slice(point)}`;
}

const DECIMAL_RE = /^(\d+)(?:\.(\d+))?$/;

/** USD per unit: a decimal string or a JSON number, at least 0, within the book's scale. */
export const usdAmount = z
  .union([
    z.number().finite(),
    z
      .string()
      .max(64)
      .regex(/^\d+(\.\d+)?$/, 'must be a decimal number at least 0, such as "0.00000002"'),
  ])
  .transform((v, ctx) => {
    const text = typeof v === "number" ? plainDecimal(v) : v;
    const m = DECIMAL_RE.exec(text);
    if (!m) {
      ctx.addIssue({
        code: "custom",
        message:
          typeof v === "number" && v < 0
            ? "must be at least 0"
            : 'must be a decimal number at least 0, such as "0.00000002"',
      });
      return z.NEVER;
    }
    const intDigits = (m[1] as string).replace(/^0+(?=\d)/, "");
    if (intDigits.length > INT_DIGITS || (m[2]?.length ?? 0) > FRACTION_DIGITS) {
      ctx.addIssue({
        code: "custom",
        message: `must have at most ${INT_DIGITS} digits before the point and ${FRACTION_DIGITS} after it`,
      });
      return z.NEVER;
    }
    return text;
  });

const name = (what: string) => plainText().trim().min(1, `${what} is required`).max(100);

export const priceInputSchema = z.strictObject({
  provider: name("provider"),
  /** `*` prices every model of the provider that has no row of its own. */
  model: name("model"),
  unit: z.enum(PRICE_UNITS),
  usdPerUnit: usdAmount,
  effectiveFrom: instant(),
  note: plainText().max(500).optional(),
});
export type PriceInput = z.output<typeof priceInputSchema>;

export const priceSchema = z.object({
  id: z.uuid(),
  provider: z.string(),
  model: z.string(),
  unit: z.enum(PRICE_UNITS),
  /** Exact decimal, as stored (numeric). */
  usdPerUnit: z.string(),
  effectiveFrom: z.string(),
  note: z.string().nullable(),
  createdBy: z.uuid().nullable(),
  createdAt: z.string(),
});
export type Price = z.infer<typeof priceSchema>;

export const pricePageSchema = z.object({
  items: z.array(priceSchema),
  nextCursor: z.string().nullable(),
});
export type PricePage = z.infer<typeof pricePageSchema>;

export const priceListQuery = z.strictObject({
  provider: name("provider").optional(),
  model: name("model").optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional(),
});

/** The window is [from, to); from must be before to (else 400 `usage.invalid_window`). */
export const rerateInputSchema = z.strictObject({
  from: instant(),
  to: instant(),
  provider: name("provider").optional(),
  model: name("model").optional(),
});
export type RerateInput = z.output<typeof rerateInputSchema>;

const tenantTotalSchema = z.object({
  tenantId: z.uuid(),
  /** Events in the window (and filters) of this tenant. */
  events: z.number().int(),
  /** Of those, events whose price or cost changed. */
  changed: z.number().int(),
  oldCostUsd: z.string(),
  newCostUsd: z.string(),
});

/** The hours (UTC, their start) whose events changed, per tenant: roll-ups to recompute. */
export const affectedWindowsSchema = z.array(
  z.object({ tenantId: z.uuid(), hours: z.array(z.string()) }),
);
export type AffectedWindows = z.infer<typeof affectedWindowsSchema>;

export const rerateRunSchema = z.object({
  id: z.uuid(),
  createdBy: z.uuid().nullable(),
  createdAt: z.string(),
  from: z.string(),
  to: z.string(),
  provider: z.string().nullable(),
  model: z.string().nullable(),
  eventsMatched: z.number().int(),
  eventsChanged: z.number().int(),
  oldCostUsd: z.string(),
  newCostUsd: z.string(),
  totals: z.array(tenantTotalSchema),
  windows: affectedWindowsSchema,
});
export type RerateRun = z.infer<typeof rerateRunSchema>;

export const rerateRunPageSchema = z.object({
  items: z.array(rerateRunSchema),
  nextCursor: z.string().nullable(),
});
export type RerateRunPage = z.infer<typeof rerateRunPageSchema>;

export const rerateListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional(),
});
