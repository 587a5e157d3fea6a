import type { Queryable } from "../../platform/db/index.js";
import type { ApiKeyScope } from "../../tenancy.js";
import type { TenantStatus } from "../tenants/index.js";
import type { TokenRole } from "./tokens.js";

export interface UserRow {
  id: string;
  tenant_id: string | null;
  email: string;
  password_hash: string;
  role: TokenRole;
  created_at: Date;
  last_login_at: Date | null;
}

export interface ApiKeyRow {
  id: string;
  tenant_id: string;
  name: string;
  prefix: string;
  scopes: ApiKeyScope[];
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const USER_COLUMNS = "id, tenant_id, email, password_hash, role, created_at, last_login_at";
const KEY_COLUMNS = "id, tenant_id, name, prefix, scopes, created_at, last_used_at, revoked_at";

/** SQL for users, API keys, sessions and refresh tokens. */
export const authStore = {
  async insertUser(
    q: Queryable,
    u: { tenantId: string | null; email: string; passwordHash: string; role: TokenRole },
  ): Promise<UserRow> {
    const rows = await q.query<UserRow>(
      `insert into users (tenant_id, email, password_hash, role) values ($1, $2, $3, $4)
       returning ${USER_COLUMNS}`,
      [u.tenantId, u.email, u.passwordHash, u.role],
    );
    return rows[0] as UserRow;
  },

  async userByEmail(
    q: Queryable,
    email: string,
  ): Promise<(UserRow & { tenant_status: TenantStatus | null }) | undefined> {
    const rows = await q.query<UserRow & { tenant_status: TenantStatus | null }>(
      `select u.id, u.tenant_id, u.email, u.password_hash, u.role, u.created_at, u.last_login_at,
              t.status as tenant_status
       from users u left join tenants t on t.id = u.tenant_id where u.email = $1`,
      [email],
    );
    return rows[0];
  },

  async userInTenant(q: Queryable, tenantId: string, userId: string): Promise<UserRow | undefined> {
    const rows = await q.query<UserRow>(
      `select ${USER_COLUMNS} from users where tenant_id = $1 and id = $2`,
      [tenantId, userId],
    );
    return rows[0];
  },

  async platformAdmin(q: Queryable, userId: string): Promise<UserRow | undefined> {
    const rows = await q.query<UserRow>(
      `select ${USER_COLUMNS} from users where id = $1 and role = 'platform_admin'`,
      [userId],
    );
    return rows[0];
  },

  async usersOfTenant(q: Queryable, tenantId: string): Promise<UserRow[]> {
    return q.query<UserRow>(
      `select ${USER_COLUMNS} from users where tenant_id = $1 order by created_at, id`,
      [tenantId],
    );
  },

  /**
   * The tenant's owners, locked until the transaction ends (in id order, so two callers never
   * deadlock): a concurrent removal waits, then sees the owners that are left.
   */
  async lockOwners(q: Queryable, tenantId: string): Promise<string[]> {
    const rows = await q.query<{ id: string }>(
      "select id from users where tenant_id = $1 and role = 'owner' order by id for update",
      [tenantId],
    );
    return rows.map((r) => r.id);
  },

  async deleteUser(q: Queryable, tenantId: string, userId: string): Promise<boolean> {
    const rows = await q.query("delete from users where tenant_id = $1 and id = $2 returning id", [
      tenantId,
      userId,
    ]);
    return rows.length > 0;
  },

  async touchLogin(q: Queryable, userId: string): Promise<void> {
    await q.query("update users set last_login_at = now() where id = $1", [userId]);
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
    const rows = await q.query<ApiKeyRow>(
      `insert into api_keys (tenant_id, name, prefix, scopes, key_hash, created_by)
       values ($1, $2, $3, $4, $5, $6)
       returning ${KEY_COLUMNS}`,
      [k.tenantId, k.name, k.prefix, k.scopes, k.keyHash, k.createdBy],
    );
    return rows[0] as ApiKeyRow;
  },

  async revokeApiKeys(q: Queryable, tenantId: string): Promise<void> {
    await q.query(
      "update api_keys set revoked_at = now() where tenant_id = $1 and revoked_at is null",
      [tenantId],
    );
  },

  /**
   * Makes the tenant's key changes take turns until the transaction ends: a creation counts the
   * active keys and inserts with no other creation or regeneration in between.
   */
  async lockApiKeys(q: Queryable, tenantId: string): Promise<void> {
    await q.query("select pg_advisory_xact_lock(hashtextextended($1, 0))", [
      `api-keys:${tenantId}`,
    ]);
  },

  async countActiveApiKeys(q: Queryable, tenantId: string): Promise<number> {
    const rows = await q.query<{ n: number }>(
      "select count(*)::int as n from api_keys where tenant_id = $1 and revoked_at is null",
      [tenantId],
    );
    return rows[0]?.n ?? 0;
  },

  /** Revokes one key (keeping the first revocation time); false when the tenant has no such key. */
  async revokeApiKey(q: Queryable, tenantId: string, keyId: string): Promise<boolean> {
    const rows = await q.query(
      `update api_keys set revoked_at = coalesce(revoked_at, now())
       where tenant_id = $1 and id = $2 returning id`,
      [tenantId, keyId],
    );
    return rows.length > 0;
  },

  async apiKeysOfTenant(q: Queryable, tenantId: string): Promise<ApiKeyRow[]> {
    return q.query<ApiKeyRow>(
      `select ${KEY_COLUMNS} from api_keys where tenant_id = $1 order by created_at desc, id`,
      [tenantId],
    );
  },

  async apiKeyByHash(q: Queryable, keyHash: string) {
    const rows = await q.query<ApiKeyRow & { tenant_status: TenantStatus }>(
      `select k.id, k.tenant_id, k.name, k.prefix, k.scopes, k.created_at, k.last_used_at,
              k.revoked_at, t.status as tenant_status
       from api_keys k join tenants t on t.id = k.tenant_id where k.key_hash = $1`,
      [keyHash],
    );
    return rows[0];
  },

  /** Records use at most once a minute per key, so authentication is not a write per request. */
  async touchApiKey(q: Queryable, keyId: string): Promise<void> {
    await q.query(
      `update api_keys set last_used_at = now()
       where id = $1 and (last_used_at is null or last_used_at < now() - interval '1 minute')`,
      [keyId],
    );
  },

  async insertSession(q: Queryable, userId: string, expiresAt: Date): Promise<string> {
    const rows = await q.query<{ id: string }>(
      "insert into auth_sessions (user_id, expires_at) values ($1, $2) returning id",
      [userId, expiresAt],
    );
    return (rows[0] as { id: string }).id;
  },

  async insertRefreshToken(q: Queryable, sessionId: string, tokenHash: string): Promise<void> {
    await q.query("insert into refresh_tokens (session_id, token_hash) values ($1, $2)", [
      sessionId,
      tokenHash,
    ]);
  },

  /** The refresh token, its session and its user, locked for the rotation that follows. */
  async refreshTokenForUpdate(q: Queryable, tokenHash: string) {
    const rows = await q.query<{
      token_id: string;
      used_at: Date | null;
      session_id: string;
      session_revoked_at: Date | null;
      session_expires_at: Date;
      user_id: string;
      tenant_id: string | null;
      role: TokenRole;
      tenant_status: TenantStatus | null;
    }>(
      `select r.id as token_id, r.used_at, s.id as session_id, s.revoked_at as session_revoked_at,
              s.expires_at as session_expires_at, u.id as user_id, u.tenant_id, u.role,
              t.status as tenant_status
       from refresh_tokens r
       join auth_sessions s on s.id = r.session_id
       join users u on u.id = s.user_id
       left join tenants t on t.id = u.tenant_id
       where r.token_hash = $1
       for update of r, s`,
      [tokenHash],
    );
    return rows[0];
  },

  async markRefreshTokenUsed(q: Queryable, tokenId: string): Promise<boolean> {
    const rows = await q.query(
      "update refresh_tokens set used_at = now() where id = $1 and used_at is null returning id",
      [tokenId],
    );
    return rows.length > 0;
  },

  async revokeSession(q: Queryable, sessionId: string, reason: string): Promise<void> {
    await q.query(
      "update auth_sessions set revoked_at = now(), revoked_reason = $2 where id = $1 and revoked_at is null",
      [sessionId, reason],
    );
  },

  /** What an access token's session resolves to now: its user's current role and tenant status. */
  async sessionPrincipal(q: Queryable, sessionId: string, userId: string) {
    const rows = await q.query<{
      revoked_at: Date | null;
      expired: boolean;
      tenant_id: string | null;
      role: TokenRole;
      tenant_status: TenantStatus | null;
    }>(
      `select s.revoked_at, s.expires_at < now() as expired, u.tenant_id, u.role, t.status as tenant_status
       from auth_sessions s
       join users u on u.id = s.user_id
       left join tenants t on t.id = u.tenant_id
       where s.id = $1 and s.user_id = $2`,
      [sessionId, userId],
    );
    return rows[0];
  },
};
