import {
  keysetPage,
  kysely,
  type PageAfter,
  type Queryable,
  type Row,
  sql,
} from "../../platform/db/index.js";

const SESSION_COLUMNS = [
  "tenant_id",
  "id",
  "external_id",
  "user_id",
  "external_user_id",
  "metadata",
  "message_count",
  "last_message_at",
  "summary",
  "key_points",
  "created_at",
  "updated_at",
] as const;

const MESSAGE_COLUMNS = [
  "id",
  "session_id",
  "seq",
  "role",
  "content",
  "citations",
  "confidence",
  "prompt_tokens",
  "completion_tokens",
  "cost_usd",
  "provider",
  "model",
  "latency_ms",
  "status",
  "created_at",
] as const;

export type SessionRow = Row<"chat_sessions", (typeof SESSION_COLUMNS)[number]>;
export type MessageRow = Row<"chat_messages", (typeof MESSAGE_COLUMNS)[number]>;

export interface NewSession {
  tenantId: string;
  id: string;
  externalId: string | null;
  userId: string | null;
  externalUserId: string | null;
  metadata: Record<string, string>;
}

export interface NewMessage {
  id: string;
  tenantId: string;
  sessionId: string;
  seq: number;
  role: "user" | "assistant" | "agent";
  content: string;
  citations?: unknown[];
  confidence?: number;
  promptTokens?: number;
  completionTokens?: number;
  costUsd?: string;
  provider?: string;
  model?: string;
  latencyMs?: number;
  status?: "complete" | "incomplete" | "failed";
}

/** SQL of `chat_sessions`, `chat_messages` and `chat_settings`. Every query filters by tenant id. */
export const chatStore = {
  async session(q: Queryable, tenantId: string, id: string): Promise<SessionRow | undefined> {
    return kysely(q)
      .selectFrom("chat_sessions")
      .select(SESSION_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .executeTakeFirst();
  },

  /**
   * Creates the session unless it exists; true when this call created it. One statement, so
   * concurrent first turns of one session create it once.
   */
  async createSession(q: Queryable, s: NewSession): Promise<boolean> {
    const row = await kysely(q)
      .insertInto("chat_sessions")
      .values({
        tenant_id: s.tenantId,
        id: s.id,
        external_id: s.externalId,
        user_id: s.userId,
        external_user_id: s.externalUserId,
        metadata: JSON.stringify(s.metadata),
      })
      .onConflict((oc) => oc.columns(["tenant_id", "id"]).doNothing())
      .returning("id")
      .executeTakeFirst();
    return row !== undefined;
  },

  /**
   * Locks the session's row until the transaction ends and answers its last message's seq:
   * concurrent turns of one session number their messages one after the other here.
   */
  async lockSession(q: Queryable, tenantId: string, id: string): Promise<number> {
    const row = await kysely(q)
      .selectFrom("chat_sessions")
      .select("message_count")
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .forUpdate()
      .executeTakeFirstOrThrow();
    return row.message_count;
  },

  /** After a turn: the new last seq, the visitor if it was unknown, metadata merged in. */
  async afterTurn(
    q: Queryable,
    tenantId: string,
    id: string,
    t: {
      messageCount: number;
      userId: string | null;
      externalUserId: string | null;
      metadata: Record<string, string> | undefined;
    },
  ): Promise<void> {
    await kysely(q)
      .updateTable("chat_sessions")
      .set({
        message_count: t.messageCount,
        last_message_at: sql<Date>`now()`,
        updated_at: sql<Date>`now()`,
        user_id: sql<string | null>`coalesce(user_id, ${t.userId}::uuid)`,
        external_user_id: sql<string | null>`coalesce(external_user_id, ${t.externalUserId}::text)`,
        ...(t.metadata
          ? { metadata: sql<string>`metadata || ${JSON.stringify(t.metadata)}::jsonb` }
          : {}),
      })
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .execute();
  },

  async insertMessages(q: Queryable, messages: readonly NewMessage[]): Promise<void> {
    await kysely(q)
      .insertInto("chat_messages")
      .values(
        messages.map((m) => ({
          id: m.id,
          tenant_id: m.tenantId,
          session_id: m.sessionId,
          seq: m.seq,
          role: m.role,
          content: m.content,
          citations: JSON.stringify(m.citations ?? []),
          confidence: m.confidence ?? null,
          prompt_tokens: m.promptTokens ?? null,
          completion_tokens: m.completionTokens ?? null,
          cost_usd: m.costUsd ?? null,
          provider: m.provider ?? null,
          model: m.model ?? null,
          latency_ms: m.latencyMs ?? null,
          status: m.status ?? "complete",
        })),
      )
      .execute();
  },

  /** The session's last `limit` messages, oldest first (the history a turn gives the model). */
  async recentMessages(
    q: Queryable,
    tenantId: string,
    sessionId: string,
    limit: number,
  ): Promise<Array<Pick<MessageRow, "role" | "content" | "seq">>> {
    const rows = await kysely(q)
      .selectFrom("chat_messages")
      .select(["role", "content", "seq"])
      .where("tenant_id", "=", tenantId)
      .where("session_id", "=", sessionId)
      .where("status", "=", "complete")
      .orderBy("seq", "desc")
      .limit(limit)
      .execute();
    return rows.reverse();
  },

  /** Messages in order, after `afterSeq`, at most `limit`. */
  async messages(
    q: Queryable,
    tenantId: string,
    sessionId: string,
    page: { afterSeq: number; limit: number },
  ): Promise<MessageRow[]> {
    return kysely(q)
      .selectFrom("chat_messages")
      .select(MESSAGE_COLUMNS)
      .where("tenant_id", "=", tenantId)
      .where("session_id", "=", sessionId)
      .where("seq", ">", page.afterSeq)
      .orderBy("seq", "asc")
      .limit(page.limit)
      .execute();
  },

  /** A page of the tenant's sessions, newest first; of one visitor when `userId` is given. */
  async listSessions(
    q: Queryable,
    tenantId: string,
    opts: { userId?: string | undefined; after?: PageAfter | undefined; limit: number },
  ): Promise<SessionRow[]> {
    let query = kysely(q)
      .selectFrom("chat_sessions")
      .select(SESSION_COLUMNS)
      .where("tenant_id", "=", tenantId);
    if (opts.userId) query = query.where("user_id", "=", opts.userId);
    return keysetPage(query, { after: opts.after, limit: opts.limit }).execute();
  },

  /** Deletes the session (its messages go with it, by the foreign key); the row deleted, if any. */
  async deleteSession(q: Queryable, tenantId: string, id: string): Promise<SessionRow | undefined> {
    return kysely(q)
      .deleteFrom("chat_sessions")
      .where("tenant_id", "=", tenantId)
      .where("id", "=", id)
      .returning(SESSION_COLUMNS)
      .executeTakeFirst();
  },

  async settings(q: Queryable, tenantId: string): Promise<unknown> {
    const row = await kysely(q)
      .selectFrom("chat_settings")
      .select("settings")
      .where("tenant_id", "=", tenantId)
      .executeTakeFirst();
    return row?.settings;
  },

  async putSettings(q: Queryable, tenantId: string, settings: unknown): Promise<void> {
    await kysely(q)
      .insertInto("chat_settings")
      .values({ tenant_id: tenantId, settings: JSON.stringify(settings) })
      .onConflict((oc) =>
        oc.column("tenant_id").doUpdateSet({
          settings: JSON.stringify(settings),
          updated_at: sql<Date>`now()`,
        }),
      )
      .execute();
  },

  /** Locks the settings row (if any) and answers the settings before a change. */
  async settingsForUpdate(q: Queryable, tenantId: string): Promise<unknown> {
    const row = await kysely(q)
      .selectFrom("chat_settings")
      .select("settings")
      .where("tenant_id", "=", tenantId)
      .forUpdate()
      .executeTakeFirst();
    return row?.settings;
  },
};
