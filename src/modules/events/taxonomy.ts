import { z } from "zod";

/**
 * The event taxonomy: every name the feed accepts and the shape of its data. Seed 003's table
 * gives the required keys of the conversation, escalation, billing, ingestion, integration
 * and limits events; the document, knowledge-item, workflow, alert and the rest of the chat
 * and billing events are designed here for the issues that build them. A name that is not
 * here is refused, and so is a key its schema does not declare (strict objects): the feed's
 * analytics depend on names and keys that do not drift.
 *
 * Payloads hold ids, codes and counts, never content or people's details (seed 003: "no raw
 * user PII; prefer id references"); the few free-form `details` objects are redacted at any
 * depth all the same (payload.ts).
 */

const id = z.string().min(1).max(255);
const code = z.string().min(1).max(100);
const count = z.number().int().min(0);
const details = z.record(z.string(), z.unknown());

/** How content came in: the submission's way in, or a knowledge item's rendering. */
export const SOURCE_TYPES = [
  "text",
  "batch",
  "url",
  "file",
  "upload",
  "content_update",
  "knowledge",
] as const;
const sourceType = z.enum(SOURCE_TYPES);
/** The URL a document is fetched from; null for content sent as text or a file. */
const url = z.string().max(2048).nullable();

export const eventSchemas = {
  // Conversation (chat): emitted by the chat issue.
  conversation_started: z.strictObject({
    sessionId: id,
    conversationId: id,
    channel: z.enum(["widget", "api", "mcp"]).optional(),
  }),
  /** Sampled at EVENTS_MESSAGE_SENT_SAMPLE_RATE, decided by `messageId`. */
  message_sent: z.strictObject({
    conversationId: id,
    messageId: id,
    role: z.enum(["user", "assistant"]),
    confidence: z.number().min(0).max(1).optional(),
  }),
  conversation_ended: z.strictObject({
    conversationId: id,
    messages: count,
    resolved: z.boolean(),
  }),
  // Escalation
  escalation_triggered: z.strictObject({
    conversationId: id,
    reason: code,
    integrationId: id.optional(),
  }),
  escalation_resolved: z.strictObject({
    conversationId: id,
    escalationId: id,
    outcome: z.enum(["resolved", "abandoned", "returned_to_bot"]),
  }),
  // Billing: emitted by the billing issue (Stripe webhooks, trials).
  trial_started: z.strictObject({ plan: id, trialEndsAt: z.iso.datetime({ offset: true }) }),
  checkout_completed: z.strictObject({ plan: id, stripeSessionId: id }),
  plan_updated: z.strictObject({ previousPlan: id, newPlan: id, status: code }),
  subscription_canceled: z.strictObject({ plan: id, reason: code.optional() }),
  // Ingestion
  ingest_started: z.strictObject({
    sourceType,
    url,
    documentId: z.uuid(),
    version: count,
  }),
  ingest_completed: z.strictObject({
    sourceType,
    url,
    docs: count,
    chunks: count,
    documentId: z.uuid(),
    version: count,
    tokens: count.optional(),
    durationMs: count.optional(),
  }),
  ingest_failed: z.strictObject({
    sourceType,
    url,
    errorCode: code,
    documentId: z.uuid(),
    version: count,
    attempts: count.optional(),
  }),
  // Documents
  document_created: z.strictObject({ documentId: z.uuid(), docType: code, sourceType }),
  document_updated: z.strictObject({ documentId: z.uuid(), version: count, sourceType }),
  document_activated: z.strictObject({ documentId: z.uuid(), version: count, chunks: count }),
  document_deleted: z.strictObject({ documentId: z.uuid() }),
  // Knowledge items
  knowledge_item_created: z.strictObject({ itemId: z.uuid(), itemType: code, documentId: id }),
  knowledge_item_updated: z.strictObject({ itemId: z.uuid(), itemType: code, version: count }),
  knowledge_item_deleted: z.strictObject({ itemId: z.uuid(), itemType: code }),
  // Workflows: emitted by the workflows issue.
  workflow_started: z.strictObject({ workflowId: id, runId: id, trigger: code }),
  workflow_completed: z.strictObject({ workflowId: id, runId: id, durationMs: count.optional() }),
  workflow_failed: z.strictObject({
    workflowId: id,
    runId: id,
    errorCode: code,
    details: details.optional(),
  }),
  // Alerts
  alert_raised: z.strictObject({ alertId: z.uuid(), kind: code, severity: code }),
  alert_acknowledged: z.strictObject({ alertId: z.uuid(), kind: code }),
  // Integrations: emitted by the integrations issue (its dispatcher).
  integration_succeeded: z.strictObject({ integrationId: id, type: code }),
  integration_failed: z.strictObject({
    integrationId: id,
    type: code,
    errorCode: code,
    details: details.optional(),
  }),
  // Limits
  quota_exceeded: z.strictObject({
    quotaType: code,
    /** Null: no limit (never refused on it; present for the shape's sake). */
    limit: z.number().int().nullable(),
    attempted: count,
    used: count.optional(),
    reserved: count.optional(),
  }),
} as const satisfies Record<string, z.ZodType<Record<string, unknown>>>;

export type EventName = keyof typeof eventSchemas;
export const EVENT_NAMES = Object.keys(eventSchemas) as EventName[];

/** What `events.log` takes for a name: its schema's input (undefined values are dropped). */
export type EventData<N extends EventName> = z.input<(typeof eventSchemas)[N]>;

export function isEventName(name: string): name is EventName {
  return Object.hasOwn(eventSchemas, name);
}

/** The domain of each name, for the README's table and the feed's readers. */
export const EVENT_DOMAINS: Record<EventName, string> = {
  conversation_started: "conversation",
  message_sent: "conversation",
  conversation_ended: "conversation",
  escalation_triggered: "escalation",
  escalation_resolved: "escalation",
  trial_started: "billing",
  checkout_completed: "billing",
  plan_updated: "billing",
  subscription_canceled: "billing",
  ingest_started: "ingestion",
  ingest_completed: "ingestion",
  ingest_failed: "ingestion",
  document_created: "documents",
  document_updated: "documents",
  document_activated: "documents",
  document_deleted: "documents",
  knowledge_item_created: "knowledge",
  knowledge_item_updated: "knowledge",
  knowledge_item_deleted: "knowledge",
  workflow_started: "workflows",
  workflow_completed: "workflows",
  workflow_failed: "workflows",
  alert_raised: "alerts",
  alert_acknowledged: "alerts",
  integration_succeeded: "integrations",
  integration_failed: "integrations",
  quota_exceeded: "limits",
};
