import { z } from "zod";

/**
 * Who is acting. A discriminated union on `kind`, so that whatever records an action (the audit
 * log) switches over every kind and stores exactly its identity:
 * - `user`: a tenant's user, through a dashboard session (access token);
 * - `api_key`: one of a tenant's API keys;
 * - `widget_visitor`: a visitor of a tenant's embedded widget, by the visitor's UUID;
 * - `platform_admin`: an operator of the platform, acting across tenants;
 * - `system`: a background job, acting for the actor whose request caused it (if any).
 */
export type Actor = UserActor | ApiKeyActor | WidgetVisitorActor | PlatformAdminActor | SystemActor;

export interface UserActor {
  kind: "user";
  userId: string;
  tenantId: string;
  role: TenantRole;
  sessionId: string;
}

export interface ApiKeyActor {
  kind: "api_key";
  keyId: string;
  tenantId: string;
  /** What the key may do inside its scopes: a key acts as a tenant admin would. */
  role: TenantRole;
  scopes: readonly ApiKeyScope[];
}

/** Nothing authenticates one yet: the widget's visitor tokens will. */
export interface WidgetVisitorActor {
  kind: "widget_visitor";
  visitorId: string;
  tenantId: string;
}

export interface PlatformAdminActor {
  kind: "platform_admin";
  userId: string;
  sessionId: string;
}

/** A job acts as the system, never as a made-up credential; `causedBy` says on whose behalf. */
export interface SystemActor {
  kind: "system";
  job: { id: string; name: string };
  /** Null for work no actor asked for (schedules, crash repair, jobs queued before causes). */
  causedBy: Cause | null;
}

/** Who a request's credentials resolve to (auth hook); authorization is decided on it. */
export type Principal = UserActor | ApiKeyActor | PlatformAdminActor;

/** Who may act for a tenant: everyone but a platform admin, who acts across tenants. */
export type TenantActor = Exclude<Actor, PlatformAdminActor>;

/** An actor by id alone: what a job payload carries and a record of the action stores. */
export type ActorRef =
  | { kind: "user"; userId: string }
  | { kind: "api_key"; keyId: string }
  | { kind: "widget_visitor"; visitorId: string }
  | { kind: "platform_admin"; userId: string };

/**
 * The actor whose request caused a job, and that request's id. A job enqueued by a job keeps
 * the first job's cause, so a chain of jobs still names the actor who started it.
 */
export interface Cause {
  actor: ActorRef;
  requestId: string | null;
}

/** A Cause as a job payload carries it; payload schemas make it optional (older jobs lack it). */
export const causeSchema: z.ZodType<Cause> = z.object({
  actor: z.discriminatedUnion("kind", [
    z.object({ kind: z.literal("user"), userId: z.uuid() }),
    z.object({ kind: z.literal("api_key"), keyId: z.uuid() }),
    z.object({ kind: z.literal("widget_visitor"), visitorId: z.uuid() }),
    z.object({ kind: z.literal("platform_admin"), userId: z.uuid() }),
  ]),
  requestId: z.string().max(128).nullable(),
});

/** The HTTP request an action arrived on. */
export interface RequestMeta {
  /** `X-Request-Id` when the client sent a well-formed one, else a UUID (http/app.ts). */
  id: string;
  /**
   * The client's address: the connection's peer, or with TRUST_PROXY the address the proxies
   * report in X-Forwarded-For (Fastify's `trustProxy`).
   */
  ip: string;
  /** The User-Agent header, cut to USER_AGENT_MAX_CHARS; null when absent or empty. */
  userAgent: string | null;
}

/** User agents are kept for records and logs; a longer one says nothing more worth storing. */
export const USER_AGENT_MAX_CHARS = 512;

/**
 * The tenant a service call acts for, and who acts. Every service method that touches tenant
 * data takes it first, and every store query filters by `tenantId`.
 */
export interface TenantContext {
  tenantId: string;
  actor: TenantActor;
  /** The request the call serves; null when a job acts (its cause names the request). */
  request: RequestMeta | null;
}

/** A platform admin's request: it acts across tenants, so it has no tenant. */
export interface PlatformContext {
  actor: PlatformAdminActor;
  request: RequestMeta;
}

/** The context of a job: it acts for the payload's tenant as the system. */
export function jobContext(input: {
  tenantId: string;
  job: { id: string; name: string };
  causedBy: Cause | null;
}): TenantContext {
  return {
    tenantId: input.tenantId,
    actor: { kind: "system", job: input.job, causedBy: input.causedBy },
    request: null,
  };
}

/** The actor's identity without what authorization needs (role, scopes, session). */
export function actorRef(actor: Exclude<Actor, SystemActor>): ActorRef {
  switch (actor.kind) {
    case "user":
      return { kind: "user", userId: actor.userId };
    case "api_key":
      return { kind: "api_key", keyId: actor.keyId };
    case "widget_visitor":
      return { kind: "widget_visitor", visitorId: actor.visitorId };
    case "platform_admin":
      return { kind: "platform_admin", userId: actor.userId };
  }
}

/** What a job enqueued in this context records as its cause. */
export function causeOf(ctx: TenantContext | PlatformContext): Cause | null {
  if (ctx.actor.kind === "system") return ctx.actor.causedBy;
  return { actor: actorRef(ctx.actor), requestId: ctx.request?.id ?? null };
}

/**
 * The tenant role an actor acts with: a user's own, an API key's (admin, within its scopes).
 * Visitors and jobs hold none, so whatever needs a role refuses them.
 */
export function roleOf(actor: TenantActor): TenantRole | null {
  return actor.kind === "user" || actor.kind === "api_key" ? actor.role : null;
}

export type TenantRole = "owner" | "admin" | "member";

/** Roles ordered by power: a role may do whatever the roles after it may. */
export const ROLE_RANK: Record<TenantRole, number> = { owner: 3, admin: 2, member: 1 };

/**
 * What an API key may do, chosen when it is created:
 * - `ingest`: write the knowledge base (ingest, update and delete documents, knowledge items);
 * - `read`: read it (documents, knowledge items, search) and the tenant's profile and config;
 * - `chat`: ask the assistant (chat routes, and search, which answers are built from);
 * - `admin`: everything a tenant admin may do (users, keys, profile and config changes),
 *   every other scope included.
 */
export const API_KEY_SCOPES = ["ingest", "read", "chat", "admin"] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

/** A new key's scopes when none are asked for: what an ingestion workflow (n8n) needs. */
export const DEFAULT_API_KEY_SCOPES: readonly ApiKeyScope[] = ["ingest", "read"];

/** Whether a key with `scopes` may act where any one of `needed` is required. */
export function hasScope(scopes: readonly ApiKeyScope[], needed: readonly ApiKeyScope[]): boolean {
  return scopes.includes("admin") || needed.some((n) => scopes.includes(n));
}

/** Scopes without repeats, in the canonical order. */
export function normalizeScopes(scopes: readonly ApiKeyScope[]): ApiKeyScope[] {
  return API_KEY_SCOPES.filter((s) => scopes.includes(s));
}
