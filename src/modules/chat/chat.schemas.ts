import { z } from "zod";
import { plainText } from "../../http/schemas.js";
import { metadataSchema } from "../ingestion/index.js";

/**
 * A session or visitor id from outside: any short plain string. A UUID is used as is; anything
 * else maps to a UUID in the tenant's namespace (ids.ts), so nothing is refused for its form.
 * At most 100 characters: the router's limit on a path parameter (a longer one in a URL is
 * answered 414), so that every id a turn accepts can also name its session in a URL.
 */
export const outsideId = () => plainText().trim().min(1).max(100);

/** POST /api/chat. The message's configured length limit is checked by the service (413). */
export const chatBody = z.strictObject({
  message: z.string().trim().min(1, "must not be empty or only whitespace"),
  sessionId: outsideId().optional(),
  userId: outsideId().optional(),
  metadata: metadataSchema.optional(),
});
export type ChatInput = z.infer<typeof chatBody>;

/**
 * One source an answer cites: `id` is the `[n]` in the answer's text. The same objects are
 * answered by the turn, stored with the message, and shown in the session's history.
 */
export const citationSchema = z.object({
  id: z.number().int().min(1),
  documentId: z.uuid(),
  title: z.string(),
  version: z.number().int(),
  chunkIndex: z.number().int(),
  snippet: z.string(),
  score: z.number(),
  sourceUrl: z.string().optional(),
});
export type Citation = z.infer<typeof citationSchema>;

const usageSchema = z.object({
  promptTokens: z.number().int(),
  completionTokens: z.number().int(),
  /** Exact decimal, USD, from the price book. */
  costUsd: z.string(),
});

export const chatResponse = z.object({
  sessionId: z.uuid(),
  messageId: z.uuid(),
  answer: z.string(),
  citations: z.array(citationSchema),
  confidence: z.number().min(0).max(1),
  escalated: z.boolean(),
  usage: usageSchema,
});
export type ChatAnswer = z.infer<typeof chatResponse>;

export const sessionSchema = z.object({
  id: z.uuid(),
  /** The session id the caller sent, when there was one. */
  externalId: z.string().nullable(),
  userId: z.uuid().nullable(),
  externalUserId: z.string().nullable(),
  metadata: z.record(z.string(), z.string()),
  messageCount: z.number().int(),
  lastMessageAt: z.string().nullable(),
  summary: z.string().nullable(),
  keyPoints: z.array(z.string()).nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type SessionView = z.infer<typeof sessionSchema>;

export const messageSchema = z.object({
  id: z.uuid(),
  seq: z.number().int(),
  role: z.enum(["user", "assistant", "agent"]),
  content: z.string(),
  citations: z.array(citationSchema),
  confidence: z.number().nullable(),
  status: z.enum(["complete", "incomplete", "failed"]),
  provider: z.string().nullable(),
  model: z.string().nullable(),
  /** The generation's figures (assistant messages); null for the others. */
  usage: usageSchema.nullable(),
  latencyMs: z.number().int().nullable(),
  createdAt: z.string(),
});
export type MessageView = z.infer<typeof messageSchema>;

export const sessionPageSchema = z.object({
  items: z.array(sessionSchema),
  nextCursor: z.string().nullable(),
});
export type SessionPage = z.infer<typeof sessionPageSchema>;

export const sessionDetailSchema = sessionSchema.extend({
  messages: z.array(messageSchema),
  /** More messages follow: pass it as `cursor`. */
  nextCursor: z.string().nullable(),
});
export type SessionDetail = z.infer<typeof sessionDetailSchema>;

export const sessionListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(200).optional(),
  /** Sessions of this visitor (the `userId` sent to POST /api/chat). */
  userId: outsideId().optional(),
});

export const sessionParams = z.object({ id: outsideId() });

export const sessionMessagesQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(500).default(200),
  cursor: z
    .string()
    .regex(/^\d{1,9}$/, "not a cursor returned by this endpoint")
    .optional(),
});

const DEFAULT_SYSTEM_PROMPT =
  "You are the assistant of this knowledge base. Answer only from the context given, cite " +
  "every statement with its source number in brackets, like [1], and say plainly when the " +
  "context does not answer the question.";

/** The tenant's assistant settings; a key left out takes its default (CHAT_DEFAULTS). */
export const chatSettingsSchema = z.strictObject({
  systemPrompt: z.string().trim().min(1).max(8000).optional(),
  /** Passages retrieved per turn. */
  topK: z.number().int().min(1).max(20).optional(),
  /** Passages scoring below this (the hybrid search's score) are not given to the model. */
  minScore: z.number().min(0).max(1).optional(),
  /** A turn below this confidence is low-confidence (escalation will act on it). */
  confidenceThreshold: z.number().min(0).max(1).optional(),
  /** Tokens of earlier messages given to the model, newest first. */
  historyTokenBudget: z.number().int().min(0).max(32_000).optional(),
  /** Retrieval filters applied to every turn. */
  filters: z
    .strictObject({
      docTypes: z.array(z.string().min(1).max(50)).max(20).optional(),
      metadata: metadataSchema.optional(),
    })
    .optional(),
});
export type ChatSettings = z.infer<typeof chatSettingsSchema>;

export const CHAT_DEFAULTS = {
  systemPrompt: DEFAULT_SYSTEM_PROMPT,
  topK: 5,
  minScore: 0,
  confidenceThreshold: 0.35,
  historyTokenBudget: 1000,
} as const;

export const chatSettingsView = z.object({
  settings: chatSettingsSchema,
  effective: chatSettingsSchema.required({
    systemPrompt: true,
    topK: true,
    minScore: true,
    confidenceThreshold: true,
    historyTokenBudget: true,
  }),
});
export type ChatSettingsView = z.infer<typeof chatSettingsView>;
