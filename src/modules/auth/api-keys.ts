import { AppError } from "../../errors.js";
import { randomToken, sha256Hex } from "../../platform/crypto/index.js";
import type { Db, Queryable } from "../../platform/db/index.js";
import {
  type ApiKeyScope,
  DEFAULT_API_KEY_SCOPES,
  hasScope,
  normalizeScopes,
  type TenantContext,
} from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import type { ApiKeyInfo } from "./auth.schemas.js";
import { type ApiKeyRow, authStore as store } from "./auth.store.js";

export const API_KEY_PREFIX = "trk_";
const API_KEY_VISIBLE_CHARS = 12;

/**
 * Active (unrevoked) keys a tenant may hold at once. Enough for one key per integration; a
 * tenant that hits it has keys nobody uses, and the list shows which (`lastUsedAt`).
 */
export const MAX_ACTIVE_API_KEYS = 20;

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function toKeyInfo(row: ApiKeyRow): ApiKeyInfo {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    scopes: normalizeScopes(row.scopes),
    createdAt: row.created_at.toISOString(),
    lastUsedAt: iso(row.last_used_at),
    revokedAt: iso(row.revoked_at),
  };
}

/** A new key: its secret (shown once) and what the list shows of it. */
export interface IssuedKey {
  apiKey: string;
  key: ApiKeyInfo;
}

/** Stores a new key of the tenant; the secret is returned, only its hash is kept. */
export async function issueApiKey(
  tx: Queryable,
  k: { tenantId: string; createdBy: string | null; name: string; scopes: readonly ApiKeyScope[] },
): Promise<IssuedKey> {
  const secret = randomToken(API_KEY_PREFIX);
  const row = await store.insertApiKey(tx, {
    tenantId: k.tenantId,
    name: k.name,
    prefix: secret.slice(0, API_KEY_VISIBLE_CHARS),
    scopes: normalizeScopes(k.scopes),
    keyHash: sha256Hex(secret),
    createdBy: k.createdBy,
  });
  return { apiKey: secret, key: toKeyInfo(row) };
}

/**
 * A key may hand out only what it holds. The routes that make keys need `admin`, which holds
 * every scope, so this refuses nothing today; it keeps a narrower key from minting a wider one
 * should a route ever let it reach key creation.
 */
function assertMayGrant(ctx: TenantContext, scopes: readonly ApiKeyScope[]): void {
  const p = ctx.actor;
  if (p.kind !== "api_key") return;
  const missing = scopes.filter((s) => !hasScope(p.scopes, [s]));
  if (missing.length === 0) return;
  throw new AppError(
    "auth.scope_required",
    `this API key cannot grant scopes it lacks: ${missing.join(", ")}`,
    { requiredScopes: missing, keyScopes: p.scopes },
  );
}

/** The tenant's API keys: regenerate, create beside the others, revoke one, list. */
export function createApiKeys(deps: { db: Db; audit: AuditLog }) {
  const { db, audit } = deps;
  /** What an audit row says of a key: never its secret or hash. */
  const described = (k: ApiKeyInfo) => ({
    id: k.id,
    name: k.name,
    prefix: k.prefix,
    scopes: k.scopes,
  });
  const createdBy = (ctx: TenantContext) => (ctx.actor.kind === "user" ? ctx.actor.userId : null);

  return {
    /**
     * Revokes every key of the tenant and issues a new one with `scopes` (the default scopes
     * when none are given), shown only in this answer.
     */
    async regenerate(
      ctx: TenantContext,
      opts: { name?: string | undefined; scopes?: readonly ApiKeyScope[] | undefined } = {},
    ): Promise<IssuedKey> {
      const scopes = opts.scopes ?? DEFAULT_API_KEY_SCOPES;
      assertMayGrant(ctx, scopes);
      return db.transaction(async (tx) => {
        await store.lockApiKeys(tx, ctx.tenantId);
        const revoked = await store.revokeApiKeys(tx, ctx.tenantId);
        const issued = await issueApiKey(tx, {
          tenantId: ctx.tenantId,
          createdBy: createdBy(ctx),
          name: opts.name ?? "default",
          scopes,
        });
        await audit.record(
          ctx,
          {
            eventType: "api_key.rotate",
            entityType: "api_key",
            entityId: issued.key.id,
            action: "create",
            oldValues: { activeKeyIds: revoked },
            newValues: { ...described(issued.key), revokedKeyIds: revoked },
          },
          { tx },
        );
        return issued;
      });
    },

    /**
     * Issues one more key, the others untouched, while the tenant holds fewer than
     * MAX_ACTIVE_API_KEYS. The count and the insert happen under the tenant's key lock, so
     * concurrent creations cannot each see room for one more and overshoot together.
     */
    async create(
      ctx: TenantContext,
      input: { name: string; scopes: readonly ApiKeyScope[] },
    ): Promise<IssuedKey> {
      assertMayGrant(ctx, input.scopes);
      return db.transaction(async (tx) => {
        await store.lockApiKeys(tx, ctx.tenantId);
        const active = await store.countActiveApiKeys(tx, ctx.tenantId);
        if (active >= MAX_ACTIVE_API_KEYS) {
          throw new AppError(
            "auth.too_many_api_keys",
            `a tenant may hold at most ${MAX_ACTIVE_API_KEYS} active API keys; revoke one first`,
            { maxActiveKeys: MAX_ACTIVE_API_KEYS },
          );
        }
        const issued = await issueApiKey(tx, {
          tenantId: ctx.tenantId,
          createdBy: createdBy(ctx),
          name: input.name,
          scopes: input.scopes,
        });
        await audit.record(
          ctx,
          {
            eventType: "api_key.create",
            entityType: "api_key",
            entityId: issued.key.id,
            action: "create",
            newValues: described(issued.key),
          },
          { tx },
        );
        return issued;
      });
    },

    /**
     * Revokes one key of the tenant: it stops working on the next request. Revoking a key that
     * is already revoked succeeds and keeps its first revocation time, so a retried call is
     * harmless (and, changing nothing, records nothing); a key of another tenant, or none, is
     * not found.
     */
    async revoke(ctx: TenantContext, keyId: string): Promise<void> {
      await db.transaction(async (tx) => {
        const outcome = await store.revokeApiKey(tx, ctx.tenantId, keyId);
        if (outcome.kind !== "revoked") {
          if (outcome.kind === "missing") throw new AppError("not_found", "API key not found");
          return;
        }
        await audit.record(
          ctx,
          {
            eventType: "api_key.revoke",
            entityType: "api_key",
            entityId: keyId,
            action: "delete",
            oldValues: { revokedAt: null },
            newValues: { revokedAt: outcome.revokedAt.toISOString() },
          },
          { tx },
        );
      });
    },

    async list(ctx: TenantContext): Promise<ApiKeyInfo[]> {
      return (await store.apiKeysOfTenant(db, ctx.tenantId)).map(toKeyInfo);
    },
  };
}

export type ApiKeys = ReturnType<typeof createApiKeys>;
