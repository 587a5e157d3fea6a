import { z } from "zod";
import { instant } from "../../http/schemas.js";
import { AUDIT_ACTIONS, AUDIT_ACTOR_TYPES, AUDIT_RESULTS } from "./audit.types.js";

/** Request and response schemas of the audit routes (`/api/audit…`, `/api/admin/audit…`). */

function checkWindow(q: { from?: Date | undefined; to?: Date | undefined }, ctx: z.RefinementCtx) {
  if (q.from && q.to && !(q.from < q.to)) {
    ctx.addIssue({ code: "custom", path: ["from"], message: "must be before to" });
  }
}

const windowShape = { from: instant().optional(), to: instant().optional() };
const tenantIdShape = {
  /** A tenant's chain; without it, the platform's own chain (rows of no tenant). */
  tenantId: z.uuid().optional(),
};

const listShape = {
  eventType: z.string().min(1).max(100).optional(),
  entityType: z.string().min(1).max(50).optional(),
  entityId: z.string().min(1).max(255).optional(),
  action: z.enum(AUDIT_ACTIONS).optional(),
  actorType: z.enum(AUDIT_ACTOR_TYPES).optional(),
  actorId: z.string().min(1).max(255).optional(),
  result: z.enum(AUDIT_RESULTS).optional(),
  ...windowShape,
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional(),
};

export const listQuerySchema = z.strictObject(listShape).superRefine(checkWindow);
export const adminListQuerySchema = z
  .strictObject({ ...listShape, ...tenantIdShape })
  .superRefine(checkWindow);
export const windowQuerySchema = z.strictObject(windowShape).superRefine(checkWindow);
export const adminWindowQuerySchema = z
  .strictObject({ ...windowShape, ...tenantIdShape })
  .superRefine(checkWindow);

export const auditEventSchema = z.object({
  id: z.uuid(),
  /** Null on the platform's chain. */
  tenantId: z.uuid().nullable(),
  /** 1, 2, … in the chain. */
  seq: z.number().int(),
  eventType: z.string(),
  entityType: z.string(),
  entityId: z.string().nullable(),
  action: z.enum(AUDIT_ACTIONS),
  actorType: z.enum(AUDIT_ACTOR_TYPES),
  actorId: z.string().nullable(),
  /** A job's cause: the actor (by id) and request that started it. */
  causedBy: z.record(z.string(), z.unknown()).nullable(),
  oldValues: z.record(z.string(), z.unknown()).nullable(),
  newValues: z.record(z.string(), z.unknown()).nullable(),
  changesSummary: z.string().nullable(),
  result: z.enum(AUDIT_RESULTS),
  errorMessage: z.string().nullable(),
  ipAddress: z.string().nullable(),
  userAgent: z.string().nullable(),
  requestId: z.string().nullable(),
  createdAt: z.iso.datetime(),
  prevHash: z.string(),
  hash: z.string(),
});
export type AuditEventView = z.infer<typeof auditEventSchema>;

export const auditPageSchema = z.object({
  items: z.array(auditEventSchema),
  nextCursor: z.string().nullable(),
});

export const verifySchema = z.object({
  ok: z.boolean(),
  checked: z.number().int(),
  firstBrokenId: z.string().nullable(),
  firstBrokenSeq: z.number().int().nullable(),
  digestsChecked: z.number().int(),
  firstBrokenDigestId: z.string().nullable(),
  reason: z.string().nullable(),
});

export const publicKeySchema = z.object({
  algorithm: z.literal("Ed25519"),
  /** SHA-256 (hex) of the public key's SPKI DER: what each digest's `key_id` names. */
  keyId: z.string(),
  /** SPKI PEM. */
  publicKey: z.string(),
});
