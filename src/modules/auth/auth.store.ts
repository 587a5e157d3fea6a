import { kysely, type Queryable, type Row, sql } from "../../platform/db/index.js";
import type { ApiKeyScope } from "../../tenancy.js";
import type { TokenRole } from "./tokens.js";

const USER_COLUMNS = [
  "id",
  "tenant_id",
  "email",
  "password_hash",
  "role",
  "created_at",
  "last_login_at",
] as const;
const KEY_COLUMNS = [
  "id",
  "tenant_id",
  "name",
  "prefix",
  "scopes",
  "created_at",
  "last_used_at",
  "revoked_at",
] as const;

export type UserRow = Row<"users", (typeof USER_COLUMNS)[number]>;
export type ApiKeyRow = Row<"api_keys", (typeof KEY_COLUMNS)[number]>;

/**
 * SQL for users, API keys, sessions and refresh tokens. The joins on `tenants` read its status
 * only, in the same statement as the credential, so that authentication stays one query.
 */
export const authStore = {
  async insertUser(
    q: Queryable,
    u: { tenantId: string | null; email: string; passwordHash: string; role: TokenRole },
  ): Promise<UserRow> {
    return kysely(q)
      .insertInto("users")
      .values({
        tenant_id: u.tenantId,
        email: u.email,
        password_hash: u.passwordHash,
        role: u.role,
      })
      .returning(USER_COLUMNS)
      .executeTakeFirstOrThrow();
  },

  async userByEmail(q: Queryable, email: string) {
    return kysely(q)
      .selectFrom("users as u")
      .leftJoin("tenants as t", "t.id", "u.tenant_id")
      .select(USER_COLUMNS.map((c) => `u.${c}` as const))
      .select("t.status as tenant_status")
      .where("u.email", "=", email)
      .executeTakeFirst();
  },

  async userInTenant(q: Queryable, tenantId: string, userId: string): Promise<UserRow | undefined> {
    return kysely(q)
      .selectFrom("users")
      .select(USER_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("id", "=", userId)
      .executeTakeFirst();
  },

  async platformAdmin(q: Queryable, userId: string): Promise<UserRow | undefined> {
    return kysely(q)
      .selectFrom("users")
      .select(USER_COLUMNS)
      .where("id", "=", userId)
      .where("role", "=", "platform_admin")
      .executeTakeFirst();
  },

  async usersOfTenant(q: Queryable, tenantId: string): Promise<UserRow[]> {
    return kysely(q)
      .selectFrom("users")
      .select(USER_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .orderBy("created_at")
      .orderBy("id")
      .execute();
  },

  /**
   * The tenant's owners, locked until the transaction ends (in id order, so two callers never
   * deadlock): a concurrent removal waits, then sees the owners that are left.
   */
  async lockOwners(q: Queryable, tenantId: string): Promise<string[]> {
    const rows = await kysely(q)
      .selectFrom("users")
      .select("id")
      .where("tenant_id", "=", tenantId)
      .where("role", "=", "owner")
      .orderBy("id")
      .forUpdate()
      .execute();
    return rows.map((r) => r.id);
  },

  async deleteUser(q: Queryable, tenantId: string, userId: string): Promise<boolean> {
    const res = await kysely(q)
      .deleteFrom("users")
      .where("tenant_id", "=", tenantId)
      .where("id", "=", userId)
      .executeTakeFirst();
    return res.numDeletedRows > 0n;
  },

  async touchLogin(q: Queryable, userId: string): Promise<void> {
    await kysely(q)
      .updateTable("users")
      .set({ last_login_at: sql`now()` })
      .where("id", "=", userId)
      .execute();
  },

  async insertApiKey(
    q: Queryable,
    k: {
      tenantId: string;
      name: string;
      prefix: string;
      scopes: readonly ApiKeyScope[];
      keyHash: string;
      createdBy: string | null;
    },
  ): Promise<ApiKeyRow> {
    return kysely(q)
      .insertInto("api_keys")
      .values({
        tenant_id: k.tenantId,
        name: k.name,
        prefix: k.prefix,
        scopes: k.scopes,
        key_hash: k.keyHash,
        created_by: k.createdBy,
      })
      .returning(KEY_COLUMNS)
      .executeTakeFirstOrThrow();
  },

  /** Revokes every active key of the tenant; returns their ids. */
  async revokeApiKeys(q: Queryable, tenantId: string): Promise<string[]> {
    const rows = await kysely(q)
      .updateTable("api_keys")
      .set({ revoked_at: sql`now()` })
      .where("tenant_id", "=", tenantId)
      .where("revoked_at", "is", null)
      .returning("id")
      .execute();
    return rows.map((r) => r.id).sort();
  },

  /**
   * Makes the tenant's key changes take turns until the transaction ends: a creation counts the
   * active keys and inserts with no other creation or regeneration in between.
   */
  async lockApiKeys(q: Queryable, tenantId: string): Promise<void> {
    await sql`select pg_advisory_xact_lock(hashtextextended(${`api-keys:${tenantId}`}, 0))`.execute(
      kysely(q),
    );
  },

  async countActiveApiKeys(q: Queryable, tenantId: string): Promise<number> {
    const row = await kysely(q)
      .selectFrom("api_keys")
      .select((eb) => eb.fn.countAll<number>().as("n"))
      .where("tenant_id", "=", tenantId)
      .where("revoked_at", "is", null)
      .executeTakeFirstOrThrow();
    return row.n;
  },

  /**
   * Revokes one key of the tenant. Returns what changed: `revoked` with the revocation time,
   * `already` when it was revoked before (its first revocation time is kept), `missing` when
   * the tenant has no such key. The row is locked first, so concurrent revocations of one key
   * take turns and exactly one of them sees it active.
   */
  async revokeApiKey(
    q: Queryable,
    tenantId: string,
    keyId: string,
  ): Promise<{ kind: "revoked"; revokedAt: Date } | { kind: "already" | "missing" }> {
    const current = await kysely(q)
      .selectFrom("api_keys")
      .select("revoked_at")
      .where("tenant_id", "=", tenantId)
      .where("id", "=", keyId)
      .forUpdate()
      .executeTakeFirst();
    if (!current) return { kind: "missing" };
    if (current.revoked_at) return { kind: "already" };
    const row = await kysely(q)
      .updateTable("api_keys")
      .set({ revoked_at: sql`now()` })
      .where("id", "=", keyId)
      .returning("revoked_at")
      .executeTakeFirstOrThrow();
    return { kind: "revoked", revokedAt: row.revoked_at as Date };
  },

  /**
   * Notes that a key was used from `ip`; true only for the first use from it. Concurrent first
   * uses insert once: the loser waits on the primary key for the winner's commit, then does
   * nothing (and, should the winner roll back, inserts itself).
   */
  async insertKeyAddress(
    q: Queryable,
    a: { keyId: string; tenantId: string; ip: string },
  ): Promise<boolean> {
    const rows = await kysely(q)
      .insertInto("api_key_addresses")
      .values({ key_id: a.keyId, tenant_id: a.tenantId, ip: a.ip })
      .onConflict((oc) => oc.columns(["key_id", "ip"]).doNothing())
      .returning("key_id")
      .execute();
    return rows.length > 0;
  },

  async apiKeysOfTenant(q: Queryable, tenantId: string): Promise<ApiKeyRow[]> {
    return kysely(q)
      .selectFrom("api_keys")
      .select(KEY_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .orderBy("created_at", "desc")
      .orderBy("id")
      .execute();
  },

  async apiKeyByHash(q: Queryable, keyHash: string) {
    return kysely(q)
      .selectFrom("api_keys as k")
      .innerJoin("tenants as t", "t.id", "k.tenant_id")
      .select(KEY_COLUMNS.map((c) => `k.${c}` as const))
      .select("t.status as tenant_status")
      .where("k.key_hash", "=", keyHash)
      .executeTakeFirst();
  },

  /** Records use at most once a minute per key, so authentication is not a write per request. */
  async touchApiKey(q: Queryable, keyId: string): Promise<void> {
    await kysely(q)
      .updateTable("api_keys")
      .set({ last_used_at: sql`now()` })
      .where("id", "=", keyId)
      .where((eb) =>
        eb.or([
          eb("last_used_at", "is", null),
          eb("last_used_at", "<", sql<Date>`now() - interval '1 minute'`),
        ]),
      )
      .execute();
  },

  async insertSession(q: Queryable, userId: string, expiresAt: Date): Promise<string> {
    const row = await kysely(q)
      .insertInto("auth_sessions")
      .values({ user_id: userId, expires_at: expiresAt })
      .returning("id")
      .executeTakeFirstOrThrow();
    return row.id;
  },

  async insertRefreshToken(q: Queryable, sessionId: string, tokenHash: string): Promise<void> {
    await kysely(q)
      .insertInto("refresh_tokens")
      .values({ session_id: sessionId, token_hash: tokenHash })
      .execute();
  },

  /** The refresh token, its session and its user, locked for the rotation that follows. */
  async refreshTokenForUpdate(q: Queryable, tokenHash: string) {
    return kysely(q)
      .selectFrom("refresh_tokens as r")
      .innerJoin("auth_sessions as s", "s.id", "r.session_id")
      .innerJoin("users as u", "u.id", "s.user_id")
      .leftJoin("tenants as t", "t.id", "u.tenant_id")
      .select([
        "r.id as token_id",
        "r.used_at",
        "s.id as session_id",
        "s.revoked_at as session_revoked_at",
        "s.expires_at as session_expires_at",
        "u.id as user_id",
        "u.tenant_id",
        "u.role",
        "t.status as tenant_status",
      ])
      .where("r.token_hash", "=", tokenHash)
      .forUpdate(["r", "s"])
      .executeTakeFirst();
  },

  async markRefreshTokenUsed(q: Queryable, tokenId: string): Promise<boolean> {
    const res = await kysely(q)
      .updateTable("refresh_tokens")
      .set({ used_at: sql`now()` })
      .where("id", "=", tokenId)
      .where("used_at", "is", null)
      .executeTakeFirst();
    return res.numUpdatedRows > 0n;
  },

  /** Ends a session; false when it had ended already. */
  async revokeSession(q: Queryable, sessionId: string, reason: string): Promise<boolean> {
    const res = await kysely(q)
      .updateTable("auth_sessions")
      .set({ revoked_at: sql`now()`, revoked_reason: reason })
      .where("id", "=", sessionId)
      .where("revoked_at", "is", null)
      .executeTakeFirst();
    return res.numUpdatedRows > 0n;
  },

  /** What an access token's session resolves to now: its user's current role and tenant status. */
  async sessionPrincipal(q: Queryable, sessionId: string, userId: string) {
    return kysely(q)
      .selectFrom("auth_sessions as s")
      .innerJoin("users as u", "u.id", "s.user_id")
      .leftJoin("tenants as t", "t.id", "u.tenant_id")
      .select([
        "s.revoked_at",
        "s.expires_at",
        "u.tenant_id",
        "u.role",
        "t.status as tenant_status",
      ])
      .where("s.id", "=", sessionId)
      .where("s.user_id", "=", userId)
      .executeTakeFirst();
  },
};
