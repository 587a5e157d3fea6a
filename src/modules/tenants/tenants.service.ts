import { LRUCache } from "lru-cache";
import { AppError, notFound } from "../../errors.js";
import type { Clock } from "../../platform/clock.js";
import { decryptSecret, encryptSecret } from "../../platform/crypto/index.js";
import { decodeCursor, encodeCursor } from "../../platform/db/cursor.js";
import {
  type Db,
  type InTransaction,
  inTransaction,
  type Queryable,
} from "../../platform/db/index.js";
import type { PlatformContext, TenantContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import type { ConfigUpdate, TenantConfig } from "./tenants.schemas.js";
import {
  type PlanRow,
  tenantsStore as store,
  type TenantConfigRow,
  type TenantRow,
  type TenantStatus,
} from "./tenants.store.js";

export interface Tenant {
  id: string;
  name: string;
  status: TenantStatus;
  plan: string;
  trialEndsAt: string | null;
  createdAt: string;
}

export function toTenant(row: TenantRow): Tenant {
  return {
    id: row.id,
    name: row.name,
    status: row.status,
    plan: row.plan_id,
    trialEndsAt: row.trial_ends_at ? row.trial_ends_at.toISOString() : null,
    createdAt: row.created_at.toISOString(),
  };
}

const DAY_MS = 86_400_000;

/** A tenant's request limits in force: its own, capped by its plan's. */
export interface TenantRateLimits {
  perMinute: number;
  perDay: number;
}

/** The audit log's event type of a platform admin's status change, by the status set. */
const STATUS_EVENTS: Record<TenantStatus, string> = {
  suspended: "tenant.suspend",
  active: "tenant.reactivate",
  deleted: "tenant.delete",
};

/** The fields of a configuration an audit row compares (the provider key is described apart). */
const AUDITED_CONFIG_FIELDS = [
  "rateLimitPerMinute",
  "rateLimitPerDay",
  "maxDocuments",
  "maxFileSizeMb",
  "allowedDocumentTypes",
  "chunkSize",
  "chunkOverlap",
  "chunkStrategy",
  "embeddingProvider",
  "embeddingModel",
  "searchFusion",
  "searchTextWeight",
] as const satisfies readonly (keyof TenantConfig)[];

/**
 * What changed between two configurations: the fields whose values differ, and whether the
 * provider key was set, replaced or removed, never the key itself nor its last characters.
 */
function configChanges(
  before: TenantConfig,
  after: TenantConfig,
  keyPatched: boolean,
): { oldValues: Record<string, unknown>; newValues: Record<string, unknown> } {
  const oldValues: Record<string, unknown> = {};
  const newValues: Record<string, unknown> = {};
  for (const field of AUDITED_CONFIG_FIELDS) {
    if (JSON.stringify(before[field]) !== JSON.stringify(after[field])) {
      oldValues[field] = before[field];
      newValues[field] = after[field];
    }
  }
  if (keyPatched) {
    oldValues.providerKey = before.providerApiKey.set ? "set" : "none";
    newValues.providerKey = !after.providerApiKey.set
      ? "none"
      : before.providerApiKey.set
        ? "replaced"
        : "set";
  }
  return { oldValues, newValues };
}

/**
 * What a search needs of the tenant's configuration (`embeddingSettings`): how to embed its
 * query, and how to fuse its lists.
 */
export interface EmbeddingSettings {
  provider: TenantConfig["embeddingProvider"];
  model: string | null;
  /** The tenant's own provider key in clear (OpenAI provider only); undefined when unset. */
  apiKey?: string;
  searchFusion: TenantConfig["searchFusion"];
  searchTextWeight: TenantConfig["searchTextWeight"];
}

/**
 * The cache of `embeddingSettings`. `ttlMs` bounds how long another process's configuration
 * change goes unseen here (this process's own changes drop the entry at commit).
 */
export interface EmbeddingSettingsCache {
  max: number;
  ttlMs: number;
}

export const DEFAULT_EMBEDDING_SETTINGS_CACHE: EmbeddingSettingsCache = {
  max: 10_000,
  ttlMs: 5_000,
};

export function createTenantsService(deps: {
  db: Db;
  masterKey: Buffer;
  clock: Clock;
  /** Profile, configuration and status changes are recorded, in their transaction. */
  audit: AuditLog;
  /** Bounds of the `embeddingSettings` cache; false reads the database every time. */
  embeddingCache?: Partial<EmbeddingSettingsCache> | false;
}) {
  const { db, audit } = deps;
  const cacheBounds =
    deps.embeddingCache === false
      ? undefined
      : { ...DEFAULT_EMBEDDING_SETTINGS_CACHE, ...deps.embeddingCache };
  // Entries carry the clock time they were read at (the service's clock, so tests can move it).
  const embeddingCache = cacheBounds
    ? new LRUCache<string, { value: EmbeddingSettings; at: number }>({ max: cacheBounds.max })
    : undefined;
  // Bumped by every configuration change of this process, whichever tenant's: a read that
  // started before a change must not cache what it read. One counter for all tenants keeps
  // memory constant; a change elsewhere only costs one uncached read.
  let epoch = 0;
  const configListeners = new Set<(tenantId: string) => void>();
  const configChanged = (tx: Queryable, tenantId: string) => {
    const notify = () => {
      embeddingCache?.delete(tenantId);
      epoch += 1;
      for (const listener of configListeners) listener(tenantId);
    };
    if (tx.afterCommit) tx.afterCommit(notify);
    else notify();
  };

  async function planOf(q: Queryable, planId: string): Promise<PlanRow> {
    const plan = await store.plan(q, planId);
    if (!plan) throw new Error(`plan ${planId} is missing from the plans table`);
    return plan;
  }

  function toConfig(row: TenantConfigRow, plan: PlanRow): TenantConfig {
    return {
      rateLimitPerMinute: row.rate_limit_rpm,
      rateLimitPerDay: row.rate_limit_per_day,
      maxDocuments: row.max_documents,
      maxFileSizeMb: row.max_file_size_mb,
      allowedDocumentTypes: row.allowed_document_types,
      chunkSize: row.chunk_size,
      chunkOverlap: row.chunk_overlap,
      chunkStrategy: row.chunk_strategy as TenantConfig["chunkStrategy"],
      embeddingProvider: row.embedding_provider as TenantConfig["embeddingProvider"],
      embeddingModel: row.embedding_model,
      providerApiKey: { set: row.provider_api_key_enc !== null, last4: row.provider_api_key_last4 },
      searchFusion: row.search_fusion,
      searchTextWeight: row.search_text_weight,
      planLimits: {
        rateLimitPerMinute: plan.rate_limit_rpm,
        rateLimitPerDay: plan.rate_limit_per_day,
        maxDocuments: plan.max_documents,
        maxFileSizeMb: plan.max_file_size_mb,
      },
      updatedAt: row.updated_at.toISOString(),
    };
  }

  async function tenantRow(q: Queryable, tenantId: string): Promise<TenantRow> {
    const row = await store.tenant(q, tenantId);
    if (!row) throw notFound("tenant");
    return row;
  }

  return {
    /**
     * Creates a tenant on `planId` with its configuration seeded from the plan. Runs on the
     * caller's transaction so signup creates tenant, user and key together or not at all.
     */
    async create(tx: Queryable, input: { name: string; planId?: string }): Promise<Tenant> {
      const plan = await planOf(tx, input.planId ?? "trial");
      const trialEndsAt = plan.trial_days
        ? new Date(deps.clock.now() + plan.trial_days * DAY_MS)
        : null;
      const row = await store.insertTenant(tx, { name: input.name, planId: plan.id, trialEndsAt });
      await store.insertConfigFromPlan(tx, row.id, plan);
      return toTenant(row);
    },

    async get(ctx: TenantContext, opts: InTransaction = {}): Promise<Tenant> {
      return toTenant(await tenantRow(opts.tx ?? db, ctx.tenantId));
    },

    /** Writes on `opts.tx` when given (so do the other writes here), else on their own. */
    async rename(ctx: TenantContext, name: string, opts: InTransaction = {}): Promise<Tenant> {
      return inTransaction(db, opts.tx, async (tx) => {
        const before = await store.tenantForUpdate(tx, ctx.tenantId);
        if (!before) throw notFound("tenant");
        // The same name again changes nothing, so there is nothing to write or to audit.
        if (before.name === name) return toTenant(before);
        const row = await store.renameTenant(tx, ctx.tenantId, name);
        if (!row) throw notFound("tenant");
        await audit.record(
          ctx,
          {
            eventType: "tenant.update",
            entityType: "tenant",
            entityId: ctx.tenantId,
            action: "update",
            oldValues: { name: before.name },
            newValues: { name: row.name },
          },
          { tx },
        );
        return toTenant(row);
      });
    },

    /** One read: the tenant's configuration joined with its plan's limits. */
    async getConfig(ctx: TenantContext): Promise<TenantConfig> {
      const found = await store.configWithPlan(db, ctx.tenantId);
      if (!found) throw notFound("tenant");
      if (!found.config) throw notFound("tenant configuration");
      return toConfig(found.config, found.plan);
    },

    /**
     * The embedder settings of the tenant's configuration (provider, model, own key), as a
     * search needs them for every query: cached per tenant. A change made by this process
     * drops the entry when it commits, so the next search of this process embeds with the new
     * settings; a change made by another process (server mode: several API processes) is seen
     * within `ttlMs` (5 s by default). A short TTL rather than a version check because a check
     * is itself one database read per search, the cost this cache removes; and a few seconds of
     * staleness only affect query embedding after a provider change, which makes existing
     * vectors incomparable until documents are re-ingested anyway (ingestion reads the
     * configuration itself, uncached).
     */
    async embeddingSettings(ctx: TenantContext): Promise<EmbeddingSettings> {
      const now = deps.clock.now();
      const hit = embeddingCache?.get(ctx.tenantId);
      if (hit && cacheBounds && now - hit.at < cacheBounds.ttlMs) return hit.value;
      const startedAt = epoch;
      const row = await store.config(db, ctx.tenantId);
      if (!row) throw notFound("tenant configuration");
      const provider = row.embedding_provider as TenantConfig["embeddingProvider"];
      const value: EmbeddingSettings = {
        provider,
        model: row.embedding_model,
        searchFusion: row.search_fusion,
        searchTextWeight: row.search_text_weight,
      };
      if (provider === "openai" && row.provider_api_key_enc) {
        value.apiKey = decryptSecret(deps.masterKey, Buffer.from(row.provider_api_key_enc));
      }
      if (epoch === startedAt) {
        embeddingCache?.set(ctx.tenantId, { value, at: now });
      }
      return value;
    },

    /**
     * The tenant's document limit, read on the caller's transaction with its configuration
     * locked until that ends: documents created under the lock are counted one after another,
     * so concurrent creations cannot overshoot the limit (the ingestion service).
     */
    async maxDocumentsForUpdate(ctx: TenantContext, tx: Queryable): Promise<number> {
      return (await store.maxDocumentsForUpdate(tx, ctx.tenantId)) ?? 0;
    },

    /**
     * The request limits in force for the tenant: its configured ones, capped by its plan's (a
     * plan lowered after the tenant set its limits still caps them). By tenant id: the rate
     * limiter reads it for the tenant of a request's credentials, before any service acts.
     */
    async rateLimits(tenantId: string): Promise<TenantRateLimits> {
      const row = await store.rateLimits(db, tenantId);
      if (!row) throw notFound("tenant configuration");
      return {
        perMinute: Math.min(row.rpm, row.planRpm),
        perDay: Math.min(row.perDay, row.planPerDay),
      };
    },

    /**
     * Calls `listener` with the tenant's id after each configuration change of this process
     * commits (caches of the configuration drop their copy). Returns the unsubscribe function.
     */
    onConfigChange(listener: (tenantId: string) => void): () => void {
      configListeners.add(listener);
      return () => configListeners.delete(listener);
    },

    /**
     * Applies a validated partial update. Limits may not exceed the plan's; chunk overlap must
     * stay below chunk size after the change. The provider key is encrypted before it is stored.
     */
    async updateConfig(
      ctx: TenantContext,
      patch: ConfigUpdate,
      opts: InTransaction = {},
    ): Promise<TenantConfig> {
      return inTransaction(db, opts.tx, async (tx) => {
        const tenant = await tenantRow(tx, ctx.tenantId);
        const plan = await planOf(tx, tenant.plan_id);
        const current = await store.config(tx, ctx.tenantId);
        if (!current) throw notFound("tenant configuration");

        const ceilings = [
          ["rateLimitPerMinute", patch.rateLimitPerMinute, plan.rate_limit_rpm],
          ["rateLimitPerDay", patch.rateLimitPerDay, plan.rate_limit_per_day],
          ["maxDocuments", patch.maxDocuments, plan.max_documents],
          ["maxFileSizeMb", patch.maxFileSizeMb, plan.max_file_size_mb],
        ] as const;
        for (const [field, value, max] of ceilings) {
          if (value !== undefined && value > max) {
            throw new AppError(
              "config.exceeds_plan",
              `${field} may be at most ${max} on the ${plan.name} plan`,
              {
                field,
                max,
                plan: plan.id,
              },
            );
          }
        }
        const chunkSize = patch.chunkSize ?? current.chunk_size;
        const chunkOverlap = patch.chunkOverlap ?? current.chunk_overlap;
        if (chunkOverlap >= chunkSize) {
          throw new AppError("validation.failed", "chunkOverlap must be smaller than chunkSize", {
            location: "body",
            issues: [
              { path: "chunkOverlap", message: `must be smaller than chunkSize (${chunkSize})` },
            ],
          });
        }

        const key = patch.providerApiKey;
        const row = await store.updateConfig(tx, ctx.tenantId, {
          rate_limit_rpm: patch.rateLimitPerMinute,
          rate_limit_per_day: patch.rateLimitPerDay,
          max_documents: patch.maxDocuments,
          max_file_size_mb: patch.maxFileSizeMb,
          allowed_document_types: patch.allowedDocumentTypes,
          chunk_size: patch.chunkSize,
          chunk_overlap: patch.chunkOverlap,
          chunk_strategy: patch.chunkStrategy,
          embedding_provider: patch.embeddingProvider,
          embedding_model: patch.embeddingModel,
          search_fusion: patch.searchFusion,
          search_text_weight: patch.searchTextWeight,
          ...(key === undefined
            ? {}
            : key === null
              ? { provider_api_key_enc: null, provider_api_key_last4: null }
              : {
                  provider_api_key_enc: encryptSecret(deps.masterKey, key),
                  provider_api_key_last4: key.slice(-4),
                }),
        });
        if (!row) throw notFound("tenant configuration");
        configChanged(tx, ctx.tenantId);
        const after = toConfig(row, plan);
        const changes = configChanges(toConfig(current, plan), after, key !== undefined);
        // A PUT that sets every field to what it was is not a change: no audit row.
        if (Object.keys(changes.newValues).length > 0) {
          await audit.record(
            ctx,
            {
              eventType: "tenant_config.update",
              entityType: "tenant_config",
              entityId: ctx.tenantId,
              action: "update",
              ...changes,
            },
            { tx },
          );
        }
        return after;
      });
    },

    /** The tenant's own provider key in clear, for calling its provider; undefined when unset. */
    async providerApiKey(ctx: TenantContext): Promise<string | undefined> {
      const row = await store.config(db, ctx.tenantId);
      if (!row?.provider_api_key_enc) return undefined;
      return decryptSecret(deps.masterKey, Buffer.from(row.provider_api_key_enc));
    },

    // Platform administration: these act across tenants and are reachable only by platform admins.
    // They take the admin's context as tenant methods take theirs: who acts, from where.

    async adminGet(_ctx: PlatformContext, tenantId: string): Promise<Tenant> {
      return toTenant(await tenantRow(db, tenantId));
    },

    /**
     * A page of the ids of every tenant not deleted, in id order: for platform jobs that work
     * across tenants (the daily usage snapshot). No request reaches it.
     */
    async tenantIds(page: { after: string | null; limit: number }): Promise<string[]> {
      return store.tenantIds(db, page);
    },

    async adminList(
      _ctx: PlatformContext,
      opts: { limit: number; cursor?: string; status?: TenantStatus },
    ) {
      const after = opts.cursor ? decodeCursor(opts.cursor) : undefined;
      const rows = await store.listTenants(db, {
        limit: opts.limit + 1,
        after,
        status: opts.status,
      });
      const page = rows.slice(0, opts.limit);
      const last = page[page.length - 1];
      return {
        items: page.map(toTenant),
        nextCursor:
          rows.length > opts.limit && last ? encodeCursor(last.created_at, last.id) : null,
      };
    },

    /** Recorded in the tenant's own chain, by the platform admin. */
    async adminSetStatus(
      ctx: PlatformContext,
      tenantId: string,
      status: TenantStatus,
      opts: InTransaction = {},
    ): Promise<Tenant> {
      return inTransaction(db, opts.tx, async (tx) => {
        const before = await store.tenantForUpdate(tx, tenantId);
        const row = before && (await store.setStatus(tx, tenantId, status));
        if (!before || !row) throw notFound("tenant");
        await audit.record(
          ctx,
          {
            eventType: STATUS_EVENTS[status],
            entityType: "tenant",
            entityId: tenantId,
            action: "update",
            oldValues: { status: before.status },
            newValues: { status: row.status },
            tenantId,
          },
          { tx },
        );
        return toTenant(row);
      });
    },
  };
}

export type TenantsService = ReturnType<typeof createTenantsService>;
