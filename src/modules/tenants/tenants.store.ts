import {
  keysetPage,
  kysely,
  type PageAfter,
  type Patch,
  type Queryable,
  type Row,
  sql,
} from "../../platform/db/index.js";

const TENANT_COLUMNS = [
  "id",
  "name",
  "status",
  "plan_id",
  "trial_ends_at",
  "created_at",
  "updated_at",
] as const;
const PLAN_COLUMNS = [
  "id",
  "name",
  "rate_limit_rpm",
  "rate_limit_per_day",
  "max_documents",
  "max_file_size_mb",
  "trial_days",
] as const;
const CONFIG_COLUMNS = [
  "tenant_id",
  "rate_limit_rpm",
  "rate_limit_per_day",
  "max_documents",
  "max_file_size_mb",
  "allowed_document_types",
  "chunk_size",
  "chunk_overlap",
  "chunk_strategy",
  "embedding_provider",
  "embedding_model",
  "provider_api_key_enc",
  "provider_api_key_last4",
  "updated_at",
  "search_fusion",
  "search_text_weight",
] as const;

export type TenantRow = Row<"tenants", (typeof TENANT_COLUMNS)[number]>;
export type TenantStatus = TenantRow["status"];
export type PlanRow = Row<"plans", (typeof PLAN_COLUMNS)[number]>;
export type TenantConfigRow = Row<"tenant_config", (typeof CONFIG_COLUMNS)[number]>;
/** The settings a tenant may change; `updated_at` is the store's. */
export type TenantConfigPatch = Omit<Patch<"tenant_config">, "tenant_id" | "updated_at">;

/** SQL for tenants, plans and tenant_config. Every tenant-owned query filters by tenant id. */
export const tenantsStore = {
  async plan(q: Queryable, planId: string): Promise<PlanRow | undefined> {
    return kysely(q)
      .selectFrom("plans")
      .select(PLAN_COLUMNS)
      .where("id", "=", planId)
      .executeTakeFirst();
  },

  async insertTenant(
    q: Queryable,
    t: { name: string; planId: string; trialEndsAt: Date | null },
  ): Promise<TenantRow> {
    return kysely(q)
      .insertInto("tenants")
      .values({ name: t.name, plan_id: t.planId, trial_ends_at: t.trialEndsAt })
      .returning(TENANT_COLUMNS)
      .executeTakeFirstOrThrow();
  },

  async insertConfigFromPlan(q: Queryable, tenantId: string, plan: PlanRow): Promise<void> {
    await kysely(q)
      .insertInto("tenant_config")
      .values({
        tenant_id: tenantId,
        rate_limit_rpm: plan.rate_limit_rpm,
        rate_limit_per_day: plan.rate_limit_per_day,
        max_documents: plan.max_documents,
        max_file_size_mb: plan.max_file_size_mb,
      })
      .execute();
  },

  async tenant(q: Queryable, tenantId: string): Promise<TenantRow | undefined> {
    return kysely(q)
      .selectFrom("tenants")
      .select(TENANT_COLUMNS)
      .where("id", "=", tenantId)
      .executeTakeFirst();
  },

  /** The tenant, locked until the transaction ends: a change reads what it replaces. */
  async tenantForUpdate(q: Queryable, tenantId: string): Promise<TenantRow | undefined> {
    return kysely(q)
      .selectFrom("tenants")
      .select(TENANT_COLUMNS)
      .where("id", "=", tenantId)
      .forUpdate()
      .executeTakeFirst();
  },

  async renameTenant(q: Queryable, tenantId: string, name: string): Promise<TenantRow | undefined> {
    return kysely(q)
      .updateTable("tenants")
      .set({ name, updated_at: sql`now()` })
      .where("id", "=", tenantId)
      .returning(TENANT_COLUMNS)
      .executeTakeFirst();
  },

  async setStatus(
    q: Queryable,
    tenantId: string,
    status: TenantStatus,
  ): Promise<TenantRow | undefined> {
    return kysely(q)
      .updateTable("tenants")
      .set({ status, updated_at: sql`now()` })
      .where("id", "=", tenantId)
      .returning(TENANT_COLUMNS)
      .executeTakeFirst();
  },

  /** Tenants newest first, keyset-paginated by (created_at, id) (see platform/db/page.ts). */
  async listTenants(
    q: Queryable,
    opts: { limit: number; after?: PageAfter | undefined; status?: TenantStatus | undefined },
  ): Promise<TenantRow[]> {
    let query = kysely(q).selectFrom("tenants").select(TENANT_COLUMNS);
    if (opts.status) query = query.where("status", "=", opts.status);
    return keysetPage(query, opts).execute();
  },

  /** Ids of tenants not deleted, in id order after `after` (platform jobs' pages). */
  async tenantIds(q: Queryable, opts: { after: string | null; limit: number }): Promise<string[]> {
    let query = kysely(q).selectFrom("tenants").select("id").where("status", "<>", "deleted");
    if (opts.after !== null) query = query.where("id", ">", opts.after);
    const rows = await query.orderBy("id").limit(opts.limit).execute();
    return rows.map((r) => r.id);
  },

  async config(q: Queryable, tenantId: string): Promise<TenantConfigRow | undefined> {
    return kysely(q)
      .selectFrom("tenant_config")
      .select(CONFIG_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .executeTakeFirst();
  },

  /**
   * The tenant's configuration with its plan, in one read: undefined when there is no such
   * tenant, `config` undefined when the tenant has no configuration row.
   */
  async configWithPlan(
    q: Queryable,
    tenantId: string,
  ): Promise<{ config: TenantConfigRow | undefined; plan: PlanRow } | undefined> {
    const row = await kysely(q)
      .selectFrom("tenants as t")
      .innerJoin("plans as p", "p.id", "t.plan_id")
      .leftJoin("tenant_config as c", "c.tenant_id", "t.id")
      .select(CONFIG_COLUMNS.map((c) => `c.${c}` as const))
      .select([
        "p.id as plan_id",
        "p.name as plan_name",
        "p.rate_limit_rpm as plan_rate_limit_rpm",
        "p.rate_limit_per_day as plan_rate_limit_per_day",
        "p.max_documents as plan_max_documents",
        "p.max_file_size_mb as plan_max_file_size_mb",
        "p.trial_days as plan_trial_days",
      ])
      .where("t.id", "=", tenantId)
      .executeTakeFirst();
    if (!row) return undefined;
    const plan: PlanRow = {
      id: row.plan_id,
      name: row.plan_name,
      rate_limit_rpm: row.plan_rate_limit_rpm,
      rate_limit_per_day: row.plan_rate_limit_per_day,
      max_documents: row.plan_max_documents,
      max_file_size_mb: row.plan_max_file_size_mb,
      trial_days: row.plan_trial_days,
    };
    if (row.tenant_id === null) return { config: undefined, plan };
    const config = Object.fromEntries(
      CONFIG_COLUMNS.map((c) => [c, row[c]]),
    ) as unknown as TenantConfigRow;
    return { config, plan };
  },

  /**
   * Writes the given columns (already validated; undefined ones are left alone) and returns the
   * whole row. An empty patch still touches `updated_at`, so it is always a valid UPDATE.
   */
  async updateConfig(
    q: Queryable,
    tenantId: string,
    patch: TenantConfigPatch,
  ): Promise<TenantConfigRow | undefined> {
    return kysely(q)
      .updateTable("tenant_config")
      .set({ ...patch, updated_at: sql`now()` })
      .where("tenant_id", "=", tenantId)
      .returning(CONFIG_COLUMNS)
      .executeTakeFirst();
  },

  /** The tenant's configured request limits beside its plan's ceilings, in one read. */
  async rateLimits(
    q: Queryable,
    tenantId: string,
  ): Promise<{ rpm: number; perDay: number; planRpm: number; planPerDay: number } | undefined> {
    return kysely(q)
      .selectFrom("tenant_config as c")
      .innerJoin("tenants as t", "t.id", "c.tenant_id")
      .innerJoin("plans as p", "p.id", "t.plan_id")
      .select([
        "c.rate_limit_rpm as rpm",
        "c.rate_limit_per_day as perDay",
        "p.rate_limit_rpm as planRpm",
        "p.rate_limit_per_day as planPerDay",
      ])
      .where("c.tenant_id", "=", tenantId)
      .executeTakeFirst();
  },

  /** The tenant's document limit, its configuration row locked until the transaction ends. */
  async maxDocumentsForUpdate(q: Queryable, tenantId: string): Promise<number | undefined> {
    const row = await kysely(q)
      .selectFrom("tenant_config")
      .select("max_documents")
      .where("tenant_id", "=", tenantId)
      .forUpdate()
      .executeTakeFirst();
    return row?.max_documents;
  },
};
