import { notFound } from "../../errors.js";
import { decodeCursor, encodeCursor } from "../../platform/db/cursor.js";
import { type Db, inTransaction } from "../../platform/db/index.js";
import type { TenantContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import type { SessionDetail, SessionPage } from "./chat.schemas.js";
import { chatStore as store } from "./chat.store.js";
import { chatId } from "./ids.js";
import { toMessageView, toSessionView } from "./views.js";

/** The sessions' reads and deletion. A session is named by its UUID or the caller's own id. */
export function createChatSessions(deps: { db: Db; audit: Pick<AuditLog, "record"> }) {
  const { db } = deps;

  return {
    /** The tenant's sessions, newest first; of one visitor with `userId` (as sent to the chat). */
    async listSessions(
      ctx: TenantContext,
      opts: { limit: number; cursor?: string | undefined; userId?: string | undefined },
    ): Promise<SessionPage> {
      const after = opts.cursor ? decodeCursor(opts.cursor) : undefined;
      const rows = await store.listSessions(db, ctx.tenantId, {
        limit: opts.limit + 1,
        after,
        userId: opts.userId ? chatId(ctx.tenantId, "user", opts.userId) : undefined,
      });
      const page = rows.slice(0, opts.limit);
      const last = page[page.length - 1];
      return {
        items: page.map(toSessionView),
        nextCursor:
          rows.length > opts.limit && last ? encodeCursor(last.created_at, last.id) : null,
      };
    },

    /** The session and its messages in order (a page of them: `cursor` is the last seq seen). */
    async getSession(
      ctx: TenantContext,
      id: string,
      page: { limit: number; cursor?: string | undefined },
    ): Promise<SessionDetail> {
      const sessionId = chatId(ctx.tenantId, "session", id);
      const session = await store.session(db, ctx.tenantId, sessionId);
      if (!session) throw notFound("chat session");
      const rows = await store.messages(db, ctx.tenantId, sessionId, {
        afterSeq: page.cursor ? Number(page.cursor) : 0,
        limit: page.limit + 1,
      });
      const shown = rows.slice(0, page.limit);
      const last = shown[shown.length - 1];
      return {
        ...toSessionView(session),
        messages: shown.map(toMessageView),
        nextCursor: rows.length > page.limit && last ? String(last.seq) : null,
      };
    },

    /**
     * Deletes the session and its messages, with an audit row in the same transaction. The
     * billable usage stays: the ledger's facts name the message by id and hold no content.
     */
    async deleteSession(ctx: TenantContext, id: string): Promise<void> {
      const sessionId = chatId(ctx.tenantId, "session", id);
      await inTransaction(db, undefined, async (tx) => {
        const gone = await store.deleteSession(tx, ctx.tenantId, sessionId);
        if (!gone) throw notFound("chat session");
        await deps.audit.record(
          ctx,
          {
            eventType: "chat_session.delete",
            entityType: "chat_session",
            entityId: sessionId,
            action: "delete",
            oldValues: {
              externalId: gone.external_id,
              userId: gone.user_id,
              externalUserId: gone.external_user_id,
              messageCount: gone.message_count,
              createdAt: gone.created_at.toISOString(),
            },
          },
          { tx },
        );
      });
    },
  };
}
