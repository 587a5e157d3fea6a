import { AppError } from "../../errors.js";
import { hashPassword } from "../../platform/crypto/index.js";
import { type Db, isUniqueViolation, type Queryable } from "../../platform/db/index.js";
import { ROLE_RANK, roleOf, type TenantContext, type TenantRole } from "../../tenancy.js";
import type { AuditContext, AuditLog } from "../audit/index.js";
import { cliAuditContext } from "./audit-contexts.js";
import type { User } from "./auth.schemas.js";
import { authStore as store, type UserRow } from "./auth.store.js";

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function toUser(row: UserRow): User {
  return {
    id: row.id,
    email: row.email,
    role: row.role,
    createdAt: row.created_at.toISOString(),
    lastLoginAt: iso(row.last_login_at),
  };
}

/** Emails are compared trimmed and lower-cased: one account per mailbox, however it is typed. */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** Inserts a user; an email that has an account already is `auth.email_taken`. */
export async function insertUserOrConflict(
  tx: Queryable,
  u: Parameters<typeof store.insertUser>[1],
) {
  try {
    return await store.insertUser(tx, u);
  } catch (err) {
    if (isUniqueViolation(err, "users_email_key")) {
      throw new AppError("auth.email_taken", "an account with this email already exists");
    }
    throw err;
  }
}

/** A tenant's users (list, add, remove) and the platform's administrators (CLI). */
export function createUsers(deps: { db: Db; audit: AuditLog }) {
  const { db, audit } = deps;
  return {
    async list(ctx: TenantContext): Promise<User[]> {
      return (await store.usersOfTenant(db, ctx.tenantId)).map(toUser);
    },

    /** Adds a user to the caller's tenant. Only an owner may create another owner or an admin. */
    async create(
      ctx: TenantContext,
      input: { email: string; password: string; role: TenantRole },
    ): Promise<User> {
      assertMayManage(ctx, input.role);
      const passwordHash = await hashPassword(input.password);
      const row = await db.transaction(async (tx) => {
        const user = await insertUserOrConflict(tx, {
          tenantId: ctx.tenantId,
          email: normalizeEmail(input.email),
          passwordHash,
          role: input.role,
        });
        await audit.record(
          ctx,
          {
            eventType: "user.create",
            entityType: "user",
            entityId: user.id,
            action: "create",
            newValues: { email: user.email, role: user.role },
          },
          { tx },
        );
        return user;
      });
      return toUser(row);
    },

    /**
     * Removes a user of the caller's tenant. The tenant always keeps at least one owner, and
     * nobody removes themselves (a sole owner is told that it is the last one).
     */
    async remove(ctx: TenantContext, userId: string): Promise<void> {
      await db.transaction(async (tx) => {
        // Owners are locked before anything is read: two owners removing each other at once
        // would otherwise both count two owners and leave the tenant with none.
        const owners = await store.lockOwners(tx, ctx.tenantId);
        const user = await store.userInTenant(tx, ctx.tenantId, userId);
        if (!user) throw new AppError("not_found", "user not found");
        assertMayManage(ctx, user.role as TenantRole);
        if (user.role === "owner" && owners.length <= 1) {
          throw new AppError("user.last_owner", "a tenant must keep at least one owner");
        }
        if (ctx.actor.kind === "user" && ctx.actor.userId === userId) {
          throw new AppError(
            "auth.forbidden",
            "you cannot remove yourself; ask another owner or admin",
          );
        }
        await store.deleteUser(tx, ctx.tenantId, userId);
        await audit.record(
          ctx,
          {
            eventType: "user.delete",
            entityType: "user",
            entityId: userId,
            action: "delete",
            oldValues: { email: user.email, role: user.role },
          },
          { tx },
        );
      });
    },

    /**
     * Creates a platform administrator: `tenantrag admin create-platform-admin` (no route does),
     * whose operator acts as `cliAuditContext`. Recorded in the platform's chain.
     */
    async createPlatformAdmin(
      input: { email: string; password: string },
      ctx: AuditContext = cliAuditContext("admin create-platform-admin"),
    ): Promise<User> {
      const passwordHash = await hashPassword(input.password);
      const row = await db.transaction(async (tx) => {
        const user = await insertUserOrConflict(tx, {
          tenantId: null,
          email: normalizeEmail(input.email),
          passwordHash,
          role: "platform_admin",
        });
        await audit.record(
          ctx,
          {
            eventType: "platform_admin.create",
            entityType: "user",
            entityId: user.id,
            action: "create",
            newValues: { email: user.email, role: user.role },
          },
          { tx },
        );
        return user;
      });
      return toUser(row);
    },
  };
}

/**
 * Owners manage everyone; admins manage members; members manage nobody, and neither does an
 * actor without a role (a visitor, a job).
 */
function assertMayManage(ctx: TenantContext, targetRole: TenantRole): void {
  const role = roleOf(ctx.actor);
  if (role === null) {
    throw new AppError("auth.forbidden", "only users and API keys manage users");
  }
  if (role !== "owner" && ROLE_RANK[role] <= ROLE_RANK[targetRole]) {
    throw new AppError(
      "auth.forbidden",
      `role ${role} may not manage users with role ${targetRole}`,
    );
  }
}
