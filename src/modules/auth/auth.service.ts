import { AppError } from "../../errors.js";
import type { Clock } from "../../platform/clock.js";
import {
  dummyPasswordHash,
  hashPassword,
  randomToken,
  sha256Hex,
  verifyPassword,
} from "../../platform/crypto/index.js";
import type { Db, Queryable } from "../../platform/db/index.js";
import type { FailureThrottle } from "../../platform/ratelimit/index.js";
import {
  DEFAULT_API_KEY_SCOPES,
  normalizeScopes,
  type Principal,
  type RequestMeta,
  type TenantContext,
} from "../../tenancy.js";
import type { AuditContext, AuditLog } from "../audit/index.js";
import type { Tenant, TenantStatus, TenantsService } from "../tenants/index.js";
import { createKeyAddresses } from "./api-key-addresses.js";
import { API_KEY_PREFIX, createApiKeys, issueApiKey, toKeyInfo } from "./api-keys.js";
import { anonymous, sessionContext } from "./audit-contexts.js";
import type { TokenPair, User } from "./auth.schemas.js";
import { authStore as store, type UserRow } from "./auth.store.js";
import { createLoginThrottle } from "./login-throttle.js";
import type { TokenSigner } from "./tokens.js";
import { createUsers, insertUserOrConflict, normalizeEmail, toUser } from "./users.js";

const REFRESH_PREFIX = "rtk_";

/** How often an API key's `last_used_at` is written (auth.store.ts `touchApiKey`). */
const TOUCH_INTERVAL_MS = 60_000;
/** A credential's tenant and holder, known before (or even if) it is accepted. */
export interface IdentifiedCaller {
  tenantId: string;
  actor: { kind: "user"; userId: string } | { kind: "api_key"; keyId: string };
}

export interface AuthenticateOptions {
  /**
   * Called as soon as the credential names a tenant's user or key — a revoked key, an expired
   * (but genuinely signed) token or an ended session included — so that a refused call can
   * still be attributed to its tenant (API-call telemetry). Never for unknown credentials.
   */
  identified?(caller: IdentifiedCaller): void;
  /**
   * The request the credential came with. An API key's first use from an address writes the
   * `api_key.new_ip` audit row; without it (a caller that is no request) nothing is noted.
   */
  request?: RequestMeta | undefined;
}

function assertTenantActive(status: TenantStatus | null): void {
  if (status === "suspended" || status === "deleted") {
    throw new AppError("tenant.suspended", "this account is suspended; contact the operator");
  }
}

export interface AuthDeps {
  db: Db;
  tokens: TokenSigner;
  tenants: TenantsService;
  /** Failed logins per email. */
  loginThrottle: FailureThrottle;
  /** Failed logins per client address. */
  loginAddressThrottle: FailureThrottle;
  refreshTokenTtlSeconds: number;
  /** Decides session expiry at start and at refresh (the access tokens' clock is the signer's). */
  clock: Clock;
  /** Every change here is recorded in the audit log, in the change's transaction. */
  audit: AuditLog;
}

export function createAuthService(deps: AuthDeps) {
  const { db, tokens } = deps;
  const loginThrottle = createLoginThrottle({
    byEmail: deps.loginThrottle,
    byAddress: deps.loginAddressThrottle,
  });
  const { audit } = deps;
  const apiKeys = createApiKeys({ db, audit });
  const users = createUsers({ db, audit });
  const keyAddresses = createKeyAddresses({ db, audit });

  /** Starts a session: one refresh-token family, and an access token bound to it. */
  async function startSession(
    tx: Queryable,
    user: Pick<UserRow, "id" | "tenant_id" | "role">,
  ): Promise<TokenPair & { sessionId: string }> {
    const sessionId = await store.insertSession(
      tx,
      user.id,
      new Date(deps.clock.now() + deps.refreshTokenTtlSeconds * 1000),
    );
    const refreshToken = randomToken(REFRESH_PREFIX);
    await store.insertRefreshToken(tx, sessionId, sha256Hex(refreshToken));
    const token = await tokens.sign({
      sub: user.id,
      role: user.role,
      sid: sessionId,
      ...(user.tenant_id ? { tid: user.tenant_id } : {}),
    });
    return { token, refreshToken, expiresIn: tokens.ttlSeconds, sessionId };
  }

  /**
   * A refused login, in a transaction of its own (the attempt changed nothing to roll back).
   * A known email's row goes to its tenant's chain (the platform's for a platform admin) and
   * names the user; an unknown email's goes to the platform's chain and names nobody: what was
   * typed is not kept, since a password typed into the email field is a common slip.
   */
  async function recordLoginFailure(
    request: RequestMeta,
    user: { id: string; tenant_id: string | null; email: string } | undefined,
    reason: "invalid_credentials" | "tenant_suspended",
  ): Promise<void> {
    await db.transaction((tx) =>
      audit.record(
        anonymous(request),
        {
          eventType: "auth.login",
          entityType: "user",
          entityId: user?.id ?? null,
          action: "failure",
          result: "failure",
          errorMessage:
            reason === "tenant_suspended"
              ? "the password was right but the tenant is suspended"
              : user
                ? "wrong password"
                : "no account has this email",
          newValues: user ? { email: user.email, reason } : { reason: "unknown_email" },
          tenantId: user?.tenant_id ?? null,
        },
        { tx },
      ),
    );
  }

  return {
    /**
     * Creates a tenant, its owner and its first API key, all or nothing. The key has the
     * default scopes (ingestion and reading), not `admin`: it is made to be pasted into a
     * workflow, and the owner's own token does the administration.
     */
    async signup(
      input: {
        email: string;
        password: string;
        companyName: string;
      },
      request: RequestMeta,
    ): Promise<TokenPair & { apiKey: string; tenant: Tenant; user: User }> {
      const email = normalizeEmail(input.email);
      const passwordHash = await hashPassword(input.password);
      return db.transaction(async (tx) => {
        const tenant = await deps.tenants.create(tx, { name: input.companyName });
        const user = await insertUserOrConflict(tx, {
          tenantId: tenant.id,
          email,
          passwordHash,
          role: "owner",
        });
        const key = await issueApiKey(tx, {
          tenantId: tenant.id,
          createdBy: user.id,
          name: "default",
          scopes: DEFAULT_API_KEY_SCOPES,
        });
        const { sessionId, ...pair } = await startSession(tx, user);
        // One row for the signup, in the new tenant's chain, by the owner it created.
        await audit.record(
          sessionContext(user, sessionId, request),
          {
            eventType: "tenant.create",
            entityType: "tenant",
            entityId: tenant.id,
            action: "create",
            newValues: {
              name: tenant.name,
              plan: tenant.plan,
              status: tenant.status,
              trialEndsAt: tenant.trialEndsAt,
              owner: { id: user.id, email: user.email, role: user.role },
              firstKey: {
                id: key.key.id,
                name: key.key.name,
                prefix: key.key.prefix,
                scopes: key.key.scopes,
              },
            },
          },
          { tx },
        );
        return { ...pair, apiKey: key.apiKey, tenant, user: toUser(user) };
      });
    },

    /**
     * Checks credentials. The answer to a wrong password and to an unknown email is the same,
     * and takes as long. Each attempt reserves a failure for the email and for the client
     * address before its password is checked (released when it was right): once either budget
     * of the window is spent, attempts get 429 until the window passes, whatever the password,
     * however many arrive at once.
     */
    async login(
      input: { email: string; password: string },
      request: RequestMeta,
    ): Promise<TokenPair> {
      const email = normalizeEmail(input.email);
      const reservation = await loginThrottle.reserve(email, request.ip);
      const user = await store.userByEmail(db, email);
      const ok = await verifyPassword(
        user?.password_hash ?? (await dummyPasswordHash()),
        input.password,
      );
      if (!user || !ok) {
        await recordLoginFailure(request, user, "invalid_credentials");
        throw new AppError("auth.invalid_credentials", "email or password is wrong");
      }
      await reservation.release();
      if (user.tenant_status === "suspended" || user.tenant_status === "deleted") {
        await recordLoginFailure(request, user, "tenant_suspended");
        assertTenantActive(user.tenant_status);
      }
      return db.transaction(async (tx) => {
        await store.touchLogin(tx, user.id);
        const { sessionId, ...pair } = await startSession(tx, user);
        await audit.record(
          sessionContext(user, sessionId, request),
          {
            eventType: "auth.login",
            entityType: "user",
            entityId: user.id,
            action: "access",
            newValues: { sessionId },
          },
          { tx },
        );
        return pair;
      });
    },

    /**
     * Exchanges a refresh token for a new pair. Each refresh token works once; presenting one
     * that was already used means it leaked, so the whole session is revoked.
     */
    async refresh(refreshToken: string, request: RequestMeta): Promise<TokenPair> {
      const outcome = await db.transaction(async (tx) => {
        const row = await store.refreshTokenForUpdate(tx, sha256Hex(refreshToken));
        if (!row || row.session_revoked_at || row.session_expires_at.getTime() < deps.clock.now()) {
          return { kind: "invalid" as const };
        }
        if (row.used_at || !(await store.markRefreshTokenUsed(tx, row.token_id))) {
          await store.revokeSession(tx, row.session_id, "refresh_token_reuse");
          // Whoever presented it is not known to be the user: the row names no actor.
          await audit.record(
            anonymous(request),
            {
              eventType: "auth.refresh_reuse",
              entityType: "session",
              entityId: row.session_id,
              action: "failure",
              result: "failure",
              errorMessage: "a used refresh token was presented again; the session was revoked",
              oldValues: { revokedAt: null },
              newValues: { userId: row.user_id, revokedReason: "refresh_token_reuse" },
              tenantId: row.tenant_id,
            },
            { tx },
          );
          return { kind: "reused" as const };
        }
        assertTenantActive(row.tenant_status);
        const next = randomToken(REFRESH_PREFIX);
        await store.insertRefreshToken(tx, row.session_id, sha256Hex(next));
        const token = await tokens.sign({
          sub: row.user_id,
          role: row.role,
          sid: row.session_id,
          ...(row.tenant_id ? { tid: row.tenant_id } : {}),
        });
        await audit.record(
          sessionContext(
            { id: row.user_id, tenant_id: row.tenant_id, role: row.role },
            row.session_id,
            request,
          ),
          {
            eventType: "auth.refresh",
            entityType: "session",
            entityId: row.session_id,
            action: "update",
          },
          { tx },
        );
        return {
          kind: "ok" as const,
          pair: { token, refreshToken: next, expiresIn: tokens.ttlSeconds },
        };
      });
      // The revocation above must commit, so the rejection is raised after the transaction.
      switch (outcome.kind) {
        case "ok":
          return outcome.pair;
        case "invalid":
          throw new AppError(
            "auth.refresh_token_invalid",
            "refresh token is invalid, expired or revoked",
          );
        case "reused":
          throw new AppError(
            "auth.refresh_token_reused",
            "refresh token was already used; the session has been revoked, log in again",
          );
      }
    },

    /** Ends the caller's session: its refresh tokens and access tokens stop working at once. */
    async logout(principal: Principal, request: RequestMeta): Promise<void> {
      if (principal.kind === "api_key") {
        throw new AppError("auth.forbidden", "logout ends a user session; an API key has none");
      }
      const ctx: AuditContext =
        principal.kind === "platform_admin"
          ? { actor: principal, request }
          : { tenantId: principal.tenantId, actor: principal, request };
      await db.transaction(async (tx) => {
        // A second logout racing the first ends nothing: only the one that ended it records.
        if (!(await store.revokeSession(tx, principal.sessionId, "logout"))) return;
        await audit.record(
          ctx,
          {
            eventType: "auth.logout",
            entityType: "session",
            entityId: principal.sessionId,
            action: "delete",
            newValues: { revokedReason: "logout" },
          },
          { tx },
        );
      });
    },

    /**
     * Resolves credentials to a principal. `bearer` is the Authorization header's token, `apiKey`
     * the X-API-Key header. Role and tenant status are read fresh, so a demotion or suspension
     * takes effect on the next request.
     */
    async authenticate(
      creds: { bearer?: string; apiKey?: string },
      opts: AuthenticateOptions = {},
    ): Promise<Principal> {
      const key =
        creds.apiKey ?? (creds.bearer?.startsWith(API_KEY_PREFIX) ? creds.bearer : undefined);
      if (key !== undefined) {
        const row = await store.apiKeyByHash(db, sha256Hex(key));
        if (row)
          opts.identified?.({ tenantId: row.tenant_id, actor: { kind: "api_key", keyId: row.id } });
        if (!row || row.revoked_at)
          throw new AppError("auth.invalid_api_key", "API key is invalid or revoked");
        assertTenantActive(row.tenant_status);
        // At most once a minute (the statement's own condition): the row just read tells
        // whether this minute's write has been made, so most requests send none.
        const used = row.last_used_at?.getTime();
        if (used === undefined || deps.clock.now() - used >= TOUCH_INTERVAL_MS) {
          await store.touchApiKey(db, row.id);
        }
        const principal: Principal = {
          kind: "api_key",
          keyId: row.id,
          tenantId: row.tenant_id,
          role: "admin",
          scopes: normalizeScopes(row.scopes),
        };
        if (opts.request) await keyAddresses.note(principal, opts.request);
        return principal;
      }
      if (!creds.bearer) throw new AppError("auth.unauthenticated", "authentication required");
      const claims = await tokens.verify(creds.bearer, {
        // Signed by us, only too old: whose token it was is known.
        onExpired(expired) {
          if (expired.tid)
            opts.identified?.({
              tenantId: expired.tid,
              actor: { kind: "user", userId: expired.sub },
            });
        },
      });
      const s = await store.sessionPrincipal(db, claims.sid, claims.sub);
      if (!s) throw new AppError("auth.invalid_token", "access token is invalid");
      if (s.tenant_id)
        opts.identified?.({ tenantId: s.tenant_id, actor: { kind: "user", userId: claims.sub } });
      // The session's end is judged by the app's clock, as its start was set by it.
      if (s.revoked_at || s.expires_at.getTime() <= deps.clock.now())
        throw new AppError("auth.session_revoked", "session has ended; log in again");
      if (s.role === "platform_admin")
        return { kind: "platform_admin", userId: claims.sub, sessionId: claims.sid };
      assertTenantActive(s.tenant_status);
      return {
        kind: "user",
        userId: claims.sub,
        tenantId: s.tenant_id as string,
        role: s.role,
        sessionId: claims.sid,
      };
    },

    async platformAdmin(userId: string): Promise<User | null> {
      const row = await store.platformAdmin(db, userId);
      return row ? toUser(row) : null;
    },

    /** The tenant and the user or API key acting; a visitor or a job is neither. */
    async me(ctx: TenantContext) {
      const tenant = await deps.tenants.get(ctx);
      const actor = ctx.actor;
      if (actor.kind === "user") {
        const user = await store.userInTenant(db, ctx.tenantId, actor.userId);
        return { tenant, user: user ? toUser(user) : null, apiKey: null };
      }
      if (actor.kind === "api_key") {
        const key = (await store.apiKeysOfTenant(db, ctx.tenantId)).find(
          (k) => k.id === actor.keyId,
        );
        return { tenant, user: null, apiKey: key ? toKeyInfo(key) : null };
      }
      return { tenant, user: null, apiKey: null };
    },

    regenerateApiKey: apiKeys.regenerate,
    createApiKey: apiKeys.create,
    revokeApiKey: apiKeys.revoke,
    listApiKeys: apiKeys.list,

    listUsers: users.list,
    createUser: users.create,
    deleteUser: users.remove,
    createPlatformAdmin: users.createPlatformAdmin,
  };
}

export type AuthService = ReturnType<typeof createAuthService>;
