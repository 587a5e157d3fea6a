import type { Queryable } from "../../platform/db/index.js";
import { pageQuery } from "../../platform/db/page.js";

export type TenantStatus = "active" | "suspended" | "deleted";

export interface TenantRow {
  id: string;
  name: string;
  status: TenantStatus;
  plan_id: string;
  trial_ends_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface PlanRow {
  id: string;
  name: string;
  rate_limit_rpm: number;
  rate_limit_per_day: number;
  max_documents: number;
  max_file_size_mb: number;
  trial_days: number | null;
}

export interface TenantConfigRow {
  tenant_id: string;
  rate_limit_rpm: number;
  rate_limit_per_day: number;
  max_documents: number;
  max_file_size_mb: number;
  allowed_document_types: string[];
  chunk_size: number;
  chunk_overlap: number;
  chunk_strategy: string;
  embedding_provider: string;
  embedding_model: string | null;
  provider_api_key_enc: Uint8Array | null;
  provider_api_key_last4: string | null;
  updated_at: Date;
}

const TENANT_COLUMNS = "id, name, status, plan_id, trial_ends_at, created_at, updated_at";

/** SQL for tenants, plans and tenant_config. Every tenant-owned query filters by tenant id. */
export const tenantsStore = {
  async plan(q: Queryable, planId: string): Promise<PlanRow | undefined> {
    const rows = await q.query<PlanRow>(
      `select id, name, rate_limit_rpm, rate_limit_per_day, max_documents, max_file_size_mb, trial_days
       from plans where id = $1`,
      [planId],
    );
    return rows[0];
  },

  async insertTenant(q: Queryable, t: { name: string; planId: string; trialEndsAt: Date | null }) {
    const rows = await q.query<TenantRow>(
      `insert into tenants (name, plan_id, trial_ends_at) values ($1, $2, $3) returning ${TENANT_COLUMNS}`,
      [t.name, t.planId, t.trialEndsAt],
    );
    return rows[0] as TenantRow;
  },

  async insertConfigFromPlan(q: Queryable, tenantId: string, plan: PlanRow): Promise<void> {
    await q.query(
      `insert into tenant_config (tenant_id, rate_limit_rpm, rate_limit_per_day, max_documents, max_file_size_mb)
       values ($1, $2, $3, $4, $5)`,
      [
        tenantId,
        plan.rate_limit_rpm,
        plan.rate_limit_per_day,
        plan.max_documents,
        plan.max_file_size_mb,
      ],
    );
  },

  async tenant(q: Queryable, tenantId: string): Promise<TenantRow | undefined> {
    const rows = await q.query<TenantRow>(`select ${TENANT_COLUMNS} from tenants where id = $1`, [
      tenantId,
    ]);
    return rows[0];
  },

  async renameTenant(q: Queryable, tenantId: string, name: string): Promise<TenantRow | undefined> {
    const rows = await q.query<TenantRow>(
      `update tenants set name = $2, updated_at = now() where id = $1 returning ${TENANT_COLUMNS}`,
      [tenantId, name],
    );
    return rows[0];
  },

  async setStatus(
    q: Queryable,
    tenantId: string,
    status: TenantStatus,
  ): Promise<TenantRow | undefined> {
    const rows = await q.query<TenantRow>(
      `update tenants set status = $2, updated_at = now() where id = $1 returning ${TENANT_COLUMNS}`,
      [tenantId, status],
    );
    return rows[0];
  },

  /**
   * Tenants newest first, keyset-paginated by (created_at, id). The comparison truncates to
   * milliseconds because the cursor carries a JavaScript Date; Postgres keeps microseconds.
   */
  async listTenants(
    q: Queryable,
    opts: { limit: number; after?: { createdAt: Date; id: string }; status?: TenantStatus },
  ): Promise<TenantRow[]> {
    const page = pageQuery({
      select: TENANT_COLUMNS,
      from: "tenants",
      filters: [["status", opts.status || undefined]],
      after: opts.after,
      limit: opts.limit,
    });
    return q.query<TenantRow>(page.sql, page.params);
  },

  async config(q: Queryable, tenantId: string): Promise<TenantConfigRow | undefined> {
    const rows = await q.query<TenantConfigRow>(
      "select * from tenant_config where tenant_id = $1",
      [tenantId],
    );
    return rows[0];
  },

  /** Writes the given columns (already validated) and returns the whole row. */
  async updateConfig(
    q: Queryable,
    tenantId: string,
    patch: Partial<Omit<TenantConfigRow, "tenant_id" | "updated_at">>,
  ): Promise<TenantConfigRow | undefined> {
    const entries = Object.entries(patch).filter(([, v]) => v !== undefined);
    const sets = entries.map(([col], i) => `${col} = $${i + 2}`);
    sets.push("updated_at = now()");
    const rows = await q.query<TenantConfigRow>(
      `update tenant_config set ${sets.join(", ")} where tenant_id = $1 returning *`,
      [tenantId, ...entries.map(([, v]) => v)],
    );
    return rows[0];
  },

  /** The tenant's document limit, its configuration row locked until the transaction ends. */
  async maxDocumentsForUpdate(q: Queryable, tenantId: string): Promise<number | undefined> {
    const rows = await q.query<{ max_documents: number }>(
      "select max_documents from tenant_config where tenant_id = $1 for update",
      [tenantId],
    );
    return rows[0]?.max_documents;
  },
};
