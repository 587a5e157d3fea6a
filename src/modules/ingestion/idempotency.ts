import { createHash } from "node:crypto";
import { AppError } from "../../http/errors.js";
import type { Db } from "../../platform/db/index.js";
import type { TenantContext } from "../../tenancy.js";

const KEY_RE = /^[\x21-\x7e]{1,255}$/;

export interface StoredReply {
  status: number;
  body: unknown;
}

/**
 * Runs `fn` once per (tenant, Idempotency-Key): a retried request with the same key and the
 * same body gets the first answer again instead of a second effect. The same key with another
 * route or body is refused. Without a key, `fn` simply runs.
 */
export function createIdempotency(db: Db) {
  return async function withIdempotency(
    ctx: TenantContext,
    key: string | undefined,
    route: string,
    request: unknown,
    fn: () => Promise<StoredReply>,
  ): Promise<StoredReply> {
    if (key === undefined) return fn();
    if (!KEY_RE.test(key)) {
      throw new AppError(
        "validation.failed",
        "Idempotency-Key must be 1 to 255 visible ASCII characters",
        {
          location: "headers",
          issues: [{ path: "idempotency-key", message: "1 to 255 visible ASCII characters" }],
        },
      );
    }
    const hash = createHash("sha256")
      .update(JSON.stringify(request ?? null))
      .digest("hex");
    const found = await db.query<{
      route: string;
      request_hash: string;
      status_code: number;
      response: unknown;
    }>(
      "select route, request_hash, status_code, response from idempotency_keys where tenant_id = $1 and key = $2",
      [ctx.tenantId, key],
    );
    const prior = found[0];
    if (prior) {
      if (prior.route !== route || prior.request_hash !== hash) {
        throw new AppError(
          "idempotency.key_reused",
          "this Idempotency-Key was used for a different request",
        );
      }
      return { status: prior.status_code, body: prior.response };
    }
    const reply = await fn();
    await db.query(
      `insert into idempotency_keys (tenant_id, key, route, request_hash, status_code, response)
       values ($1, $2, $3, $4, $5, $6) on conflict (tenant_id, key) do nothing`,
      [ctx.tenantId, key, route, hash, reply.status, JSON.stringify(reply.body)],
    );
    return reply;
  };
}

export type WithIdempotency = ReturnType<typeof createIdempotency>;
