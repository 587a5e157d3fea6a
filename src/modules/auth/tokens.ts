import { errors, jwtVerify, SignJWT } from "jose";
import { AppError } from "../../errors.js";
import type { Clock } from "../../platform/clock.js";
import { isUuid } from "../../platform/ids.js";

export type TokenRole = "owner" | "admin" | "member" | "platform_admin";

/** The claims of an access token. */
export interface AccessClaims {
  /** User id. */
  sub: string;
  /** Tenant id; absent for platform admins. */
  tid?: string;
  role: TokenRole;
  /** Session id: revoking the session (logout, refresh-token reuse) ends the token too. */
  sid: string;
}

const ISSUER = "tenantrag";
const ALGORITHM = "HS256";

/** Signs and verifies access tokens; issue and expiry times are the clock's. */
export function createTokenSigner(opts: { secret: string; ttlSeconds: number; clock: Clock }) {
  const key = new TextEncoder().encode(opts.secret);
  return {
    ttlSeconds: opts.ttlSeconds,

    /** Signs an HS256 access token that expires after the configured time. */
    async sign(claims: AccessClaims): Promise<string> {
      const { sub, ...rest } = claims;
      const issuedAt = Math.floor(opts.clock.now() / 1000);
      return new SignJWT({ ...rest })
        .setProtectedHeader({ alg: ALGORITHM, typ: "JWT" })
        .setSubject(sub)
        .setIssuer(ISSUER)
        .setIssuedAt(issuedAt)
        .setExpirationTime(issuedAt + opts.ttlSeconds)
        .sign(key);
    },

    /**
     * Verifies signature, algorithm (HS256 only: `none` and every other algorithm are refused),
     * issuer and expiry, then the claims' shape.
     */
    async verify(
      token: string,
      on: { onExpired?(claims: { sub: string; tid?: string }): void } = {},
    ): Promise<AccessClaims> {
      try {
        const { payload } = await jwtVerify(token, key, {
          algorithms: [ALGORITHM],
          issuer: ISSUER,
          // A token without an expiry would never die; refuse it even when correctly signed.
          requiredClaims: ["exp", "iat"],
          currentDate: new Date(opts.clock.now()),
        });
        const { sub, tid, role, sid } = payload as Record<string, unknown>;
        const roles: TokenRole[] = ["owner", "admin", "member", "platform_admin"];
        if (
          !isUuid(sub) ||
          !isUuid(sid) ||
          !roles.includes(role as TokenRole) ||
          (tid !== undefined && !isUuid(tid))
        ) {
          throw new AppError("auth.invalid_token", "access token claims are malformed");
        }
        return {
          sub: sub as string,
          sid: sid as string,
          role: role as TokenRole,
          ...(tid ? { tid } : {}),
        };
      } catch (err) {
        if (err instanceof AppError) throw err;
        if (err instanceof errors.JWTExpired) {
          // jose checks the signature before the claims: an expired token's payload is ours.
          const { sub, tid } = err.payload;
          if (isUuid(sub) && (tid === undefined || isUuid(tid)))
            on.onExpired?.({ sub: sub as string, ...(tid ? { tid: tid as string } : {}) });
          throw new AppError("auth.token_expired", "access token has expired; refresh it");
        }
        if (err instanceof errors.JOSEError) {
          throw new AppError("auth.invalid_token", "access token is invalid");
        }
        throw err;
      }
    },
  };
}

export type TokenSigner = ReturnType<typeof createTokenSigner>;
