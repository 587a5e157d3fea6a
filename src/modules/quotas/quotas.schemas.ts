import { z } from "zod";
import { QUOTA_TYPES } from "./quota-types.js";

/** A limit: a whole count (up to 2^53), or null for unlimited. */
const limit = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable();

/** Limits per quota type, some or all (an absent type is left as it is). */
export const limitsPatchSchema = z.strictObject({
  tokens: limit.optional(),
  chat_messages: limit.optional(),
  searches: limit.optional(),
  documents: limit.optional(),
  storage_bytes: limit.optional(),
});

const limitsSchema = z.object(
  Object.fromEntries(QUOTA_TYPES.map((t) => [t, z.number().int().nullable()])) as Record<
    (typeof QUOTA_TYPES)[number],
    z.ZodNullable<z.ZodNumber>
  >,
);

export const planSchema = z.object({
  id: z.string(),
  quotas: limitsSchema,
  updatedAt: z.string().nullable(),
});

export const plansResponse = z.object({ plans: z.array(planSchema) });

export const planParams = z.strictObject({
  id: z.string().regex(/^[a-z][a-z0-9_-]{0,49}$/, { message: "must be a plan id (lowercase)" }),
});

export const planUpdateBody = z.strictObject({ quotas: limitsPatchSchema });

export const overridesBody = z.strictObject({ overrides: limitsPatchSchema });

export const quotaStatusSchema = z.object({
  limit: z.number().int().nullable(),
  used: z.number().int(),
  reserved: z.number().int(),
  remaining: z.number().int().nullable(),
  periodStart: z.string().nullable(),
  resetAt: z.string().nullable(),
  source: z.enum(["plan", "override"]),
});

const statusesSchema = z.object(
  Object.fromEntries(QUOTA_TYPES.map((t) => [t, quotaStatusSchema])) as Record<
    (typeof QUOTA_TYPES)[number],
    typeof quotaStatusSchema
  >,
);

/** What a tenant sees of its plan and quotas. */
export const tenantQuotasResponse = z.object({
  plan: z.string(),
  trialEndsAt: z.string().nullable(),
  trialExpired: z.boolean(),
  quotas: statusesSchema,
});

/** A tenant's quotas as a platform admin sees them. */
export const adminTenantQuotasResponse = tenantQuotasResponse.extend({ tenantId: z.uuid() });
