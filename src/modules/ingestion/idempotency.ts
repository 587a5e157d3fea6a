import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { AppError } from "../../errors.js";
import { type Db, kysely, sql } from "../../platform/db/index.js";
import type { TenantContext } from "../../tenancy.js";

const KEY_RE = /^[\x21-\x7e]{1,255}$/;

export interface StoredReply {
  status: number;
  body: unknown;
}

/**
 * How long a claim lasts without renewal. It is renewed every third of that while its request
 * runs, so a live request keeps it however long it takes, and the claim of a request whose
 * process died blocks a retry for at most this long (in embedded mode, not even that: the
 * restarted process drops them, `releaseAbandonedClaims`).
 */
const CLAIM_SECONDS = 30;

/**
 * Runs `fn` once per (tenant, Idempotency-Key): a retried request with the same key and the
 * same body gets the first answer again instead of a second effect. The key is claimed before
 * `fn` runs, so a retry that arrives while the first request is still running gets 409
 * `idempotency.in_progress` (with Retry-After) rather than running too. The same key with
 * another route or body is refused. If `fn` fails, the claim is dropped and a retry runs
 * afresh; if the process dies, a retry takes the claim over once its lease (CLAIM_SECONDS,
 * renewed while `fn` runs) has run out. Without a key, `fn` simply runs.
 */
export function createIdempotency(
  db: Db,
  opts: { claimSeconds?: number; logger?: Pick<Logger, "warn"> } = {},
) {
  const claimSeconds = opts.claimSeconds ?? CLAIM_SECONDS;
  // The database's clock, as every other lease: processes' clocks may disagree.
  const leaseEnd = () => sql<Date>`now() + make_interval(secs => ${claimSeconds})`;
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
    // Claim the key, or take over the claim of the same request whose holder died.
    const claimed = await kysely(db)
      .insertInto("idempotency_keys")
      .values({
        tenant_id: ctx.tenantId,
        key,
        route,
        request_hash: hash,
        claimed_until: leaseEnd(),
      })
      .onConflict((oc) =>
        oc
          .columns(["tenant_id", "key"])
          .doUpdateSet({ claimed_until: (eb) => eb.ref("excluded.claimed_until") })
          .where("idempotency_keys.status_code", "is", null)
          .where("idempotency_keys.claimed_until", "<", sql<Date>`now()`)
          .whereRef("idempotency_keys.route", "=", "excluded.route")
          .whereRef("idempotency_keys.request_hash", "=", "excluded.request_hash"),
      )
      .executeTakeFirstOrThrow();
    if (claimed.numInsertedOrUpdatedRows === 0n) return priorAnswer(ctx, key, route, hash);
    // The lease lives as long as the request: renewed until `fn` settles.
    const renew = () =>
      kysely(db)
        .updateTable("idempotency_keys")
        .set({ claimed_until: leaseEnd() })
        .where("tenant_id", "=", ctx.tenantId)
        .where("key", "=", key)
        .where("status_code", "is", null)
        .execute();
    let renewing: Promise<unknown> = Promise.resolve();
    const renewal = setInterval(
      () => {
        // A renewal that fails is not retried here: the next one (a third of the lease later) is
        // the retry, and a claim that runs out meanwhile is what a dead process leaves anyway.
        // It is logged: a claim that lapses lets a concurrent retry run the request twice.
        renewing = renew().catch((err: unknown) =>
          opts.logger?.warn({ err, key, route }, "idempotency claim renewal failed"),
        );
      },
      (claimSeconds * 1000) / 3,
    );
    let reply: StoredReply;
    try {
      reply = await fn();
    } catch (err) {
      clearInterval(renewal);
      await renewing;
      await kysely(db)
        .deleteFrom("idempotency_keys")
        .where("tenant_id", "=", ctx.tenantId)
        .where("key", "=", key)
        .where("status_code", "is", null)
        .execute();
      throw err;
    }
    clearInterval(renewal);
    await renewing;
    await kysely(db)
      .updateTable("idempotency_keys")
      .set({ status_code: reply.status, response: JSON.stringify(reply.body), claimed_until: null })
      .where("tenant_id", "=", ctx.tenantId)
      .where("key", "=", key)
      .execute();
    return reply;
  };

  /** The answer stored under a key someone else claimed, or why there is none to give. */
  async function priorAnswer(
    ctx: TenantContext,
    key: string,
    route: string,
    hash: string,
  ): Promise<StoredReply> {
    const prior = await kysely(db)
      .selectFrom("idempotency_keys")
      .select(["route", "request_hash", "status_code", "response"])
      .where("tenant_id", "=", ctx.tenantId)
      .where("key", "=", key)
      .executeTakeFirst();
    if (prior && (prior.route !== route || prior.request_hash !== hash)) {
      throw new AppError(
        "idempotency.key_reused",
        "this Idempotency-Key was used for a different request",
      );
    }
    if (prior?.status_code != null) return { status: prior.status_code, body: prior.response };
    // Still running elsewhere (or its claim was just dropped by a failure): try again shortly.
    throw new AppError(
      "idempotency.in_progress",
      "a request with this Idempotency-Key is still being processed; retry shortly",
      undefined,
      { "retry-after": "1" },
    );
  }
}

export type WithIdempotency = ReturnType<typeof createIdempotency>;

/**
 * Drops every claim that has no answer yet. Only for a database that one process alone can open
 * (PGlite), at start-up: such a claim was held by a request of a process that died, and a retry
 * may run at once. Returns how many were dropped.
 */
export async function releaseAbandonedClaims(db: Db): Promise<number> {
  const res = await kysely(db)
    .deleteFrom("idempotency_keys")
    .where("status_code", "is", null)
    .executeTakeFirstOrThrow();
  return Number(res.numDeletedRows);
}
