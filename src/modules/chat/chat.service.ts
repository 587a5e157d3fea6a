import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { AppError } from "../../errors.js";
import { type Db, inTransaction } from "../../platform/db/index.js";
import { countTokens } from "../../platform/embeddings/tokens.js";
import {
  type ChatModel,
  type ChatModelRequest,
  type ChatModelResult,
  generateAll,
  type HistoryMessage,
  type Passage,
} from "../../platform/llm/index.js";
import type { TenantContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import type { EventsLog } from "../events/index.js";
import type { DocumentsService } from "../ingestion/index.js";
import type { QuotasService, Reservation } from "../quotas/index.js";
import type { SearchResult, SearchService } from "../search/index.js";
import type { BillableFact, UsageRecorder } from "../usage/index.js";
import type { ChatAnswer, ChatInput, Citation } from "./chat.schemas.js";
import { chatStore as store } from "./chat.store.js";
import { confidenceOf } from "./confidence.js";
import { chatId } from "./ids.js";
import { createChatSessions } from "./sessions.js";
import { createChatSettings, type EffectiveSettings } from "./settings.js";
import { sumDecimals } from "./views.js";

export interface ChatDeps {
  db: Db;
  logger: Pick<Logger, "error">;
  /** Retrieval: hybrid search, metered and quota-checked by the search module itself. */
  search: Pick<SearchService, "search">;
  /** The cited documents' source URLs. */
  documents: Pick<DocumentsService, "get">;
  quotas: Pick<QuotasService, "reserveAll" | "settleAll" | "release">;
  usage: UsageRecorder;
  events: Pick<EventsLog, "logMany">;
  audit: Pick<AuditLog, "record">;
  /** The answering model (the composition root's choice: `extractive` by default). */
  model: ChatModel;
  /** CHAT_MAX_MESSAGE_CHARS: a longer message is refused (413 chat.message_too_long). */
  maxMessageChars: number;
}

/** Messages read for the history before the token budget trims them. */
const HISTORY_WINDOW = 40;
/** Tokens reserved per passage and for the answer, before either is known (settled exactly). */
const PASSAGE_TOKENS_ESTIMATE = 400;
const ANSWER_TOKENS_ESTIMATE = 400;
/** Characters of a passage shown as a citation's snippet. */
const SNIPPET_CHARS = 280;

/** The citation numbers `[n]` in `text` that name one of the `count` passages, in order of first use. */
export function citedIds(text: string, count: number): number[] {
  const out: number[] = [];
  for (const m of text.matchAll(/\[(\d{1,3})\]/g)) {
    const n = Number(m[1]);
    if (n >= 1 && n <= count && !out.includes(n)) out.push(n);
  }
  return out;
}

function snippetOf(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  if (flat.length <= SNIPPET_CHARS) return flat;
  const cut = flat.slice(0, SNIPPET_CHARS);
  const space = cut.lastIndexOf(" ");
  return `${(space > SNIPPET_CHARS / 2 ? cut.slice(0, space) : cut).trimEnd()}…`;
}

/** The newest messages that fit in `budget` tokens, oldest first. */
export function trimHistory(
  messages: readonly HistoryMessage[],
  budget: number,
): { history: HistoryMessage[]; tokens: number } {
  const kept: HistoryMessage[] = [];
  let tokens = 0;
  for (let i = messages.length - 1; i >= 0; i -= 1) {
    const m = messages[i] as HistoryMessage;
    const t = countTokens(m.content);
    if (tokens + t > budget) break;
    kept.unshift(m);
    tokens += t;
  }
  return { history: kept, tokens };
}

/**
 * The conversation service: one owner of a chat turn (seed 002's "centralised conversation
 * service"), the sessions' reads and deletion, and the tenant's assistant settings.
 */
export function createChatService(deps: ChatDeps) {
  const { db } = deps;
  const settings = createChatSettings({ db, audit: deps.audit });

  async function generate(ctx: TenantContext, req: ChatModelRequest): Promise<ChatModelResult> {
    try {
      return await generateAll(deps.model, req);
    } catch (err) {
      if (err instanceof AppError) throw err;
      // Answered as 502 with nothing saved; logged here because the cause is not in the answer.
      deps.logger.error(
        { err, tenantId: ctx.tenantId, provider: deps.model.provider, model: deps.model.model },
        "the chat model failed; the turn was not saved",
      );
      throw new AppError(
        "chat.model_failed",
        "the answer could not be generated; nothing was saved or billed, retry",
        { provider: deps.model.provider, model: deps.model.model },
      );
    }
  }

  /** The citation objects of the cited passages (source URLs from the documents service). */
  async function citationsOf(
    ctx: TenantContext,
    cited: readonly number[],
    kept: readonly SearchResult[],
  ): Promise<Citation[]> {
    const hits = cited.map((id) => ({ id, hit: kept[id - 1] as SearchResult }));
    const urls = new Map<string, string | null>();
    await Promise.all(
      [...new Set(hits.map((h) => h.hit.documentId))].map(async (documentId) => {
        try {
          urls.set(documentId, (await deps.documents.get(ctx, documentId)).sourceUrl);
        } catch (err) {
          // Deleted since retrieval: the citation stands, without a URL.
          if (!(err instanceof AppError && err.code === "not_found")) throw err;
        }
      }),
    );
    return hits.map(({ id, hit }) => {
      const url = urls.get(hit.documentId);
      return {
        id,
        documentId: hit.documentId,
        title: hit.title,
        version: hit.version,
        chunkIndex: hit.chunkIndex,
        snippet: snippetOf(hit.text),
        score: hit.score,
        ...(url ? { sourceUrl: url } : {}),
      };
    });
  }

  /**
   * One turn: validate → resolve the session → reserve (1 chat message, the estimated tokens)
   * → retrieve (hybrid, the tenant's top k, minimum score and filters) → build the prompt
   * (system prompt, history within its token budget) → generate → one transaction: the
   * session (created on its first turn), the user and assistant messages, the billable facts,
   * the quota settlement, `conversation_started` / `message_sent`, and on a session's first
   * turn its audit row. Any failure releases the reservations and saves nothing.
   */
  async function turn(ctx: TenantContext, input: ChatInput): Promise<ChatAnswer> {
    const message = input.message.trim();
    const length = [...message].length;
    if (length > deps.maxMessageChars) {
      throw new AppError(
        "chat.message_too_long",
        `the message has ${length} characters; at most ${deps.maxMessageChars} are accepted`,
        { limit: deps.maxMessageChars, length },
      );
    }
    const sessionId = input.sessionId
      ? chatId(ctx.tenantId, "session", input.sessionId)
      : randomUUID();
    const userId = input.userId ? chatId(ctx.tenantId, "user", input.userId) : null;
    const s: EffectiveSettings = await settings.effective(ctx);
    const earlier = input.sessionId
      ? await store.recentMessages(db, ctx.tenantId, sessionId, HISTORY_WINDOW)
      : [];
    const { history, tokens: historyTokens } = trimHistory(earlier, s.historyTokenBudget);
    const estimate =
      countTokens(s.systemPrompt) +
      countTokens(message) +
      historyTokens +
      s.topK * PASSAGE_TOKENS_ESTIMATE +
      ANSWER_TOKENS_ESTIMATE;
    const held = await deps.quotas.reserveAll(ctx, [
      { quota: "chat_messages", amount: 1 },
      { quota: "tokens", amount: estimate },
    ]);
    try {
      const started = performance.now();
      const results = await deps.search.search(ctx, {
        query: message,
        mode: "hybrid",
        limit: s.topK,
        ...(s.filters ? { filters: s.filters } : {}),
      });
      const kept = results.filter((r) => r.score >= s.minScore);
      const passages: Passage[] = kept.map((r, i) => ({ id: i + 1, title: r.title, text: r.text }));
      const result = await generate(ctx, {
        question: message,
        passages,
        history,
        systemPrompt: s.systemPrompt,
      });
      const latencyMs = Math.round(performance.now() - started);
      const cited = citedIds(result.text, passages.length);
      const citations = await citationsOf(ctx, cited, kept);
      const confidence = confidenceOf(message, passages, result, cited.length);
      return await commit(ctx, {
        input,
        message,
        sessionId,
        userId,
        held,
        result,
        citations,
        confidence,
        latencyMs,
      });
    } catch (err) {
      for (const r of held) await deps.quotas.release(r);
      throw err;
    }
  }

  async function commit(
    ctx: TenantContext,
    t: {
      input: ChatInput;
      message: string;
      sessionId: string;
      userId: string | null;
      held: Reservation[];
      result: ChatModelResult;
      citations: Citation[];
      confidence: number;
      latencyMs: number;
    },
  ): Promise<ChatAnswer> {
    const { result, sessionId } = t;
    const userMessageId = randomUUID();
    const messageId = randomUUID();
    const subject = { type: "chat_message", id: messageId } as const;
    const payer = "platform" as const;
    const key = { provider: result.provider, model: result.model, payer, subject };
    const facts: BillableFact[] = [
      { metric: "chat_input_tokens", quantity: result.usage.promptTokens, ...key },
      { metric: "chat_output_tokens", quantity: result.usage.completionTokens, ...key },
      {
        metric: "chat_messages",
        quantity: 1,
        provider: "tenantrag",
        model: "chat",
        payer,
        subject,
      },
    ];
    const tokens = result.usage.promptTokens + result.usage.completionTokens;
    return inTransaction(db, undefined, async (tx) => {
      const created = await store.createSession(tx, {
        tenantId: ctx.tenantId,
        id: sessionId,
        externalId: t.input.sessionId ?? null,
        userId: t.userId,
        externalUserId: t.input.userId ?? null,
        metadata: t.input.metadata ?? {},
      });
      const last = await store.lockSession(tx, ctx.tenantId, sessionId);
      const recorded = await deps.usage.record(ctx, facts, { tx });
      const costUsd = sumDecimals(recorded.map((r) => r.costUsd));
      await store.insertMessages(tx, [
        {
          id: userMessageId,
          tenantId: ctx.tenantId,
          sessionId,
          seq: last + 1,
          role: "user",
          content: t.message,
        },
        {
          id: messageId,
          tenantId: ctx.tenantId,
          sessionId,
          seq: last + 2,
          role: "assistant",
          content: result.text,
          citations: t.citations,
          confidence: t.confidence,
          promptTokens: result.usage.promptTokens,
          completionTokens: result.usage.completionTokens,
          costUsd,
          provider: result.provider,
          model: result.model,
          latencyMs: t.latencyMs,
          status: "complete",
        },
      ]);
      await store.afterTurn(tx, ctx.tenantId, sessionId, {
        messageCount: last + 2,
        userId: t.userId,
        externalUserId: t.input.userId ?? null,
        metadata: created ? undefined : t.input.metadata,
      });
      await deps.quotas.settleAll(
        ctx,
        t.held.map((r) => ({ reservation: r, actual: r.quota === "tokens" ? tokens : r.amount })),
        { tx },
      );
      await deps.events.logMany(
        ctx,
        [
          ...(created
            ? [
                {
                  name: "conversation_started" as const,
                  data: { sessionId, conversationId: sessionId, channel: "api" as const },
                },
              ]
            : []),
          {
            name: "message_sent",
            data: { conversationId: sessionId, messageId: userMessageId, role: "user" },
          },
          {
            name: "message_sent",
            data: {
              conversationId: sessionId,
              messageId,
              role: "assistant",
              confidence: t.confidence,
            },
          },
        ],
        { tx },
      );
      if (created) {
        // Last in the transaction: the chain's head lock is held from here to the commit.
        await deps.audit.record(
          ctx,
          {
            eventType: "chat_session.create",
            entityType: "chat_session",
            entityId: sessionId,
            action: "create",
            newValues: {
              externalId: t.input.sessionId ?? null,
              userId: t.userId,
              externalUserId: t.input.userId ?? null,
              metadataKeys: Object.keys(t.input.metadata ?? {}).sort(),
            },
          },
          { tx },
        );
      }
      return {
        sessionId,
        messageId,
        answer: result.text,
        citations: t.citations,
        confidence: t.confidence,
        escalated: false,
        usage: {
          promptTokens: result.usage.promptTokens,
          completionTokens: result.usage.completionTokens,
          costUsd,
        },
      };
    });
  }

  return {
    turn,
    ...createChatSessions({ db, audit: deps.audit }),
    settings: settings.view,
    putSettings: settings.put,
  };
}

export type ChatService = ReturnType<typeof createChatService>;
