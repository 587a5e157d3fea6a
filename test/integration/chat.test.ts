import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chatId } from "../../src/modules/chat/index.js";
import { kysely } from "../../src/platform/db/index.js";
import {
  type ChatModel,
  createExtractiveModel,
  NOTHING_RELEVANT,
} from "../../src/platform/llm/index.js";
import {
  bearer,
  expectError,
  platformAdminToken,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
} from "../fixtures/app.js";
import { backends } from "../fixtures/db.js";
import { settle } from "../fixtures/ingest.js";

const REFUNDS = [
  "Refunds and returns.",
  "You may return any unused item within 30 days of delivery for a full refund.",
  "Refunds are paid back to the original card within five working days.",
  "Gift cards cannot be refunded.",
].join(" ");
const SHIPPING = [
  "Shipping.",
  "Orders placed before noon are shipped the same day.",
  "Delivery to the islands takes three extra days.",
].join(" ");

/** A model that sends one delta and then fails: the mid-stream failure of a real provider. */
function failingModel(): ChatModel {
  const real = createExtractiveModel();
  return {
    provider: real.provider,
    model: real.model,
    async *generate() {
      yield { type: "delta", text: "You may return" };
      throw new Error("the provider hung up");
    },
  };
}

describe.each(backends)("chat ($name)", (backend) => {
  let t: TestApp;
  /** A second app on its own database: a failing model and a 50-character message limit. */
  let broken: TestApp;
  let a: SignedUp;
  let refundsId: string;
  let shippingId: string;

  const chatAs = (s: SignedUp, payload: Record<string, unknown>, app = t.app) =>
    app.inject({ method: "POST", url: "/api/chat", headers: bearer(s.token), payload });

  async function ask(s: SignedUp, payload: Record<string, unknown>) {
    const res = await chatAs(s, payload);
    expect(res.statusCode, res.body).toBe(200);
    return res.json();
  }

  const getAs = (s: SignedUp, url: string, app = t.app) =>
    app.inject({ url, headers: bearer(s.token) });

  async function ingest(s: SignedUp, title: string, content: string, app = t.app) {
    const res = await app.inject({
      method: "POST",
      url: "/api/ingest/document",
      headers: bearer(s.token),
      payload: { title, content, sourceUrl: `https://shop.example/${title.toLowerCase()}` },
    });
    expect(res.statusCode, res.body).toBe(202);
    const id = res.json().documentId as string;
    expect((await settle(app, s.token, id)).status).toBe("completed");
    return id;
  }

  const usageOf = (app: TestApp, messageId: string) =>
    kysely(app.ctx.db)
      .selectFrom("usage_events")
      .select(["metric", "quantity", "provider", "model"])
      .where("subject_type", "=", "chat_message")
      .where("subject_id", "=", messageId)
      .orderBy("metric")
      .execute();

  beforeAll(async () => {
    t = await startApp(backend, {}, { workers: true });
    broken = await startApp(
      backend,
      { CHAT_MAX_MESSAGE_CHARS: "50" },
      { workers: true, chatModel: failingModel() },
    );
    a = await signup(t.app);
    refundsId = await ingest(a, "Refunds", REFUNDS);
    shippingId = await ingest(a, "Shipping", SHIPPING);
  }, 180_000);
  afterAll(async () => {
    await t?.close();
    await broken?.close();
  });

  it("answers from the ingested document, citing it inline with citations that name it", async () => {
    const body = await ask(a, { message: "How many days do I have to return an item?" });
    expect(body.escalated).toBe(false);
    expect(body.answer).toContain("within 30 days of delivery");
    const inline = [...body.answer.matchAll(/\[(\d+)\]/g)].map((m) => Number(m[1]));
    expect(inline.length).toBeGreaterThan(0);
    expect([...new Set(inline)].sort()).toEqual(
      body.citations.map((c: { id: number }) => c.id).sort(),
    );
    const first = body.citations.find((c: { id: number }) => c.id === inline[0]);
    expect(first).toMatchObject({
      documentId: refundsId,
      title: "Refunds",
      version: 1,
      chunkIndex: 0,
      sourceUrl: "https://shop.example/refunds",
    });
    expect(first.snippet).toContain("30 days");
    expect(body.citations.some((c: { documentId: string }) => c.documentId === shippingId)).toBe(
      false,
    );
    expect(body.confidence).toBeGreaterThan(0.5);
    expect(body.usage.promptTokens).toBeGreaterThan(20);
    expect(body.usage.completionTokens).toBeGreaterThan(5);
    expect(body.usage.costUsd).toBe("0");
    // Billed once each, in the turn's transaction, by the real tokenizer's counts.
    expect(await usageOf(t, body.messageId)).toEqual([
      {
        metric: "chat_input_tokens",
        quantity: body.usage.promptTokens,
        provider: "tenantrag",
        model: "extractive",
      },
      { metric: "chat_messages", quantity: 1, provider: "tenantrag", model: "chat" },
      {
        metric: "chat_output_tokens",
        quantity: body.usage.completionTokens,
        provider: "tenantrag",
        model: "extractive",
      },
    ]);
  });

  it("says plainly when the knowledge base has nothing relevant, with confidence 0", async () => {
    const body = await ask(a, { message: "Which telescope photographs Jupiter's moons?" });
    expect(body.answer).toBe(NOTHING_RELEVANT);
    expect(body.citations).toEqual([]);
    expect(body.confidence).toBe(0);
  });

  it("keeps a session across turns under the caller's own id, and its history has the same citations", async () => {
    const first = await ask(a, {
      message: "When are refunds paid back?",
      sessionId: "test_123",
      userId: "crm-42",
      metadata: { channel: "web" },
    });
    expect(first.sessionId).toBe(chatId(a.tenantId, "session", "test_123"));
    const second = await ask(a, { message: "When are orders shipped?", sessionId: "test_123" });
    expect(second.sessionId).toBe(first.sessionId);
    expect(second.citations[0].documentId).toBe(shippingId);
    // By its UUID and by the caller's id alike.
    for (const id of [first.sessionId, "test_123"]) {
      const res = await getAs(a, `/api/chat/sessions/${id}`);
      expect(res.statusCode, res.body).toBe(200);
      const s = res.json();
      expect(s).toMatchObject({
        id: first.sessionId,
        externalId: "test_123",
        userId: chatId(a.tenantId, "user", "crm-42"),
        externalUserId: "crm-42",
        metadata: { channel: "web" },
        messageCount: 4,
      });
      expect(s.messages.map((m: { role: string; seq: number }) => [m.seq, m.role])).toEqual([
        [1, "user"],
        [2, "assistant"],
        [3, "user"],
        [4, "assistant"],
      ]);
      expect(s.messages[0].content).toBe("When are refunds paid back?");
      expect(s.messages[1]).toMatchObject({
        id: first.messageId,
        content: first.answer,
        confidence: first.confidence,
        status: "complete",
        model: "extractive",
        usage: first.usage,
      });
      // One citation contract: the turn's objects are the history's.
      expect(s.messages[1].citations).toEqual(first.citations);
      expect(s.messages[3].citations).toEqual(second.citations);
    }
  });

  it("maps two tenants' same outside id to different sessions", async () => {
    const b = await signup(t.app);
    const mine = await ask(b, { message: "When are orders shipped?", sessionId: "test_123" });
    expect(mine.sessionId).toBe(chatId(b.tenantId, "session", "test_123"));
    expect(mine.sessionId).not.toBe(chatId(a.tenantId, "session", "test_123"));
    // B's knowledge base is empty: nothing of A's is cited.
    expect(mine.citations).toEqual([]);
    const res = await getAs(b, "/api/chat/sessions/test_123");
    expect(res.json().messageCount).toBe(2);
  });

  it("lists sessions newest first in cursor pages, filtered by the visitor", async () => {
    const s = await signup(t.app);
    const made: string[] = [];
    for (let i = 0; i < 3; i += 1) {
      made.push(
        (await ask(s, { message: `Question ${i} about refunds`, userId: "visitor-1" })).sessionId,
      );
    }
    await ask(s, { message: "Another visitor's question", userId: "visitor-2" });
    const page1 = (await getAs(s, "/api/chat/sessions?userId=visitor-1&limit=2")).json();
    expect(page1.items).toHaveLength(2);
    expect(page1.nextCursor).toEqual(expect.any(String));
    const page2 = (
      await getAs(s, `/api/chat/sessions?userId=visitor-1&limit=2&cursor=${page1.nextCursor}`)
    ).json();
    expect(page2.items).toHaveLength(1);
    expect(page2.nextCursor).toBeNull();
    const seen = [...page1.items, ...page2.items];
    expect(seen.map((x: { id: string }) => x.id)).toEqual([...made].reverse());
    expect(seen.every((x: { externalUserId: string }) => x.externalUserId === "visitor-1")).toBe(
      true,
    );
    expect((await getAs(s, "/api/chat/sessions")).json().items).toHaveLength(4);
    expectError(await getAs(s, "/api/chat/sessions?cursor=nonsense"), 400, "validation.failed");
  });

  it("pages a long session's messages in order", async () => {
    const s = await signup(t.app);
    for (let i = 0; i < 3; i += 1)
      await ask(s, { message: `Refund question ${i}`, sessionId: "long" });
    const p1 = (await getAs(s, "/api/chat/sessions/long?limit=4")).json();
    expect(p1.messages.map((m: { seq: number }) => m.seq)).toEqual([1, 2, 3, 4]);
    const p2 = (await getAs(s, `/api/chat/sessions/long?limit=4&cursor=${p1.nextCursor}`)).json();
    expect(p2.messages.map((m: { seq: number }) => m.seq)).toEqual([5, 6]);
    expect(p2.nextCursor).toBeNull();
  });

  it("deletes a session and its messages; the billable usage stays", async () => {
    const s = await signup(t.app);
    const turn = await ask(s, { message: "Can gift cards be refunded?", sessionId: "to-delete" });
    const del = await t.app.inject({
      method: "DELETE",
      url: "/api/chat/sessions/to-delete",
      headers: bearer(s.token),
    });
    expect(del.statusCode, del.body).toBe(204);
    expectError(await getAs(s, "/api/chat/sessions/to-delete"), 404, "not_found");
    expectError(
      await t.app.inject({
        method: "DELETE",
        url: `/api/chat/sessions/${turn.sessionId}`,
        headers: bearer(s.token),
      }),
      404,
      "not_found",
    );
    const left = await kysely(t.ctx.db)
      .selectFrom("chat_messages")
      .select("id")
      .where("tenant_id", "=", s.tenantId)
      .execute();
    expect(left).toEqual([]);
    expect((await usageOf(t, turn.messageId)).map((u) => u.metric)).toHaveLength(3);
  });

  it("refuses bad input with a clear 4xx and saves nothing", async () => {
    const s = await signup(t.app);
    const refusals: Array<[Record<string, unknown>, number, string]> = [
      [{ message: "" }, 400, "validation.failed"],
      [{ message: "   \n\t " }, 400, "validation.failed"],
      [{}, 400, "validation.failed"],
      [{ message: "a\u0000b" }, 400, "validation.failed"],
      [{ message: "hi", sessionId: "" }, 400, "validation.failed"],
      [{ message: "hi", sessionId: "x".repeat(101) }, 400, "validation.failed"],
      [{ message: "hi", sessionId: "bad\u0001id" }, 400, "validation.failed"],
      [{ message: "hi", userId: 42 }, 400, "validation.failed"],
      [{ message: "hi", metadata: { "bad key": "x" } }, 400, "validation.failed"],
      [{ message: "hi", unknownField: true }, 400, "validation.failed"],
    ];
    for (const [payload, status, code] of refusals) {
      expectError(await chatAs(s, payload), status, code);
    }
    expect((await getAs(s, "/api/chat/sessions")).json().items).toEqual([]);
    expectError(await getAs(s, "/api/chat/sessions/never-used"), 404, "not_found");
    expectError(
      await getAs(s, `/api/chat/sessions/${"y".repeat(300)}`),
      414,
      "request.uri_too_long",
    );
    expectError(await getAs(s, "/api/chat/sessions/bad%01id"), 400, "validation.failed");
    // Another tenant's session, by its UUID and by its outside id: not found.
    const other = await ask(a, { message: "When are orders shipped?", sessionId: "a-private" });
    expectError(await getAs(s, `/api/chat/sessions/${other.sessionId}`), 404, "not_found");
    expectError(await getAs(s, "/api/chat/sessions/a-private"), 404, "not_found");
  });

  it("refuses a message over the configured limit (413) and saves nothing", async () => {
    const s = await signup(broken.app);
    const body = expectError(
      await chatAs(s, { message: "x".repeat(51) }, broken.app),
      413,
      "chat.message_too_long",
    );
    expect(body.error.details).toEqual({ limit: 50, length: 51 });
    expect((await getAs(s, "/api/chat/sessions", broken.app)).json().items).toEqual([]);
  });

  it("answers 429 when the chat-messages quota is used up, and saves nothing of the refused turn", async () => {
    const s = await signup(t.app);
    const admin = await platformAdminToken(t);
    const set = await t.app.inject({
      method: "PUT",
      url: `/api/admin/customers/${s.tenantId}/quotas`,
      headers: bearer(admin),
      payload: { overrides: { chat_messages: 1 } },
    });
    expect(set.statusCode, set.body).toBe(200);
    await ask(s, { message: "When are orders shipped?", sessionId: "quota" });
    const refused = expectError(
      await chatAs(s, { message: "And refunds?", sessionId: "quota" }),
      429,
      "quota.exceeded",
    );
    expect(refused.error.details).toMatchObject({ quota: "chat_messages", limit: 1 });
    const session = (await getAs(s, "/api/chat/sessions/quota")).json();
    expect(session.messageCount).toBe(2);
    const quotas = (await getAs(s, "/api/customers/quotas")).json().quotas;
    expect(quotas.chat_messages).toMatchObject({ used: 1, reserved: 0 });
    expect(quotas.tokens.reserved).toBe(0);
  });

  it("a model failing mid-answer: 502, nothing saved or billed, the reservations released", async () => {
    const s = await signup(broken.app);
    await ingest(s, "Refunds", REFUNDS, broken.app);
    const res = await chatAs(
      s,
      { message: "How do refunds work?", sessionId: "fails" },
      broken.app,
    );
    expectError(res, 502, "chat.model_failed");
    expectError(await getAs(s, "/api/chat/sessions/fails", broken.app), 404, "not_found");
    const rows = await kysely(broken.ctx.db)
      .selectFrom("usage_events")
      .select("metric")
      .where("tenant_id", "=", s.tenantId)
      .where("metric", "in", ["chat_input_tokens", "chat_output_tokens", "chat_messages"])
      .execute();
    expect(rows).toEqual([]);
    const quotas = (await getAs(s, "/api/customers/quotas", broken.app)).json().quotas;
    expect(quotas.chat_messages).toMatchObject({ used: 0, reserved: 0 });
    expect(quotas.tokens.reserved).toBe(0);
    const events = await kysely(broken.ctx.db)
      .selectFrom("events")
      .select("name")
      .where("tenant_id", "=", s.tenantId)
      .where("name", "in", ["conversation_started", "message_sent"])
      .execute();
    expect(events).toEqual([]);
  });

  it("uses the tenant's settings (top k, minimum score), changed by admins only, audited", async () => {
    const s = await signup(t.app);
    await ingest(s, "Refunds", REFUNDS);
    await ingest(s, "Shipping", SHIPPING);
    const member = {
      email: `m-${Date.now()}@example.test`,
      password: "a long password",
      role: "member",
    };
    const created = await t.app.inject({
      method: "POST",
      url: "/api/customers/users",
      headers: bearer(s.token),
      payload: member,
    });
    expect(created.statusCode, created.body).toBe(201);
    const login = await t.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: member.email, password: member.password },
    });
    const memberToken = login.json().token as string;
    // A member chats and reads the history, but does not change the assistant.
    const asMember = await t.app.inject({
      method: "POST",
      url: "/api/chat",
      headers: bearer(memberToken),
      payload: { message: "When are refunds paid back?" },
    });
    expect(asMember.statusCode, asMember.body).toBe(200);
    expect(
      (await t.app.inject({ url: "/api/chat/sessions", headers: bearer(memberToken) })).statusCode,
    ).toBe(200);
    expectError(
      await t.app.inject({
        method: "PUT",
        url: "/api/chat/settings",
        headers: bearer(memberToken),
        payload: { topK: 1 },
      }),
      403,
      "auth.forbidden",
    );
    const put = (payload: unknown) =>
      t.app.inject({
        method: "PUT",
        url: "/api/chat/settings",
        headers: bearer(s.token),
        payload: payload as object,
      });
    expectError(await put({ topK: 0 }), 400, "validation.failed");
    expectError(await put({ minScore: 2 }), 400, "validation.failed");
    expectError(await put({ unknown: 1 }), 400, "validation.failed");
    const ok = await put({ topK: 1, systemPrompt: "Be brief." });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json()).toMatchObject({
      settings: { topK: 1, systemPrompt: "Be brief." },
      effective: { topK: 1, systemPrompt: "Be brief.", minScore: 0, confidenceThreshold: 0.35 },
    });
    expect((await getAs(s, "/api/chat/settings")).json().settings).toEqual({
      topK: 1,
      systemPrompt: "Be brief.",
    });
    const both = "When are refunds paid back and when are orders shipped?";
    expect((await ask(s, { message: both })).citations).toHaveLength(1);
    // With the default depth both documents are cited; a minimum score between their scores
    // keeps the lower one from the model.
    expect((await put({ systemPrompt: "Be brief." })).statusCode).toBe(200);
    const wide = await ask(s, { message: both });
    const scores = wide.citations.map((c: { score: number }) => c.score) as number[];
    expect(new Set(wide.citations.map((c: { documentId: string }) => c.documentId)).size).toBe(2);
    const minScore = (Math.max(...scores) + Math.min(...scores)) / 2;
    expect((await put({ minScore })).statusCode).toBe(200);
    const narrow = await ask(s, { message: both });
    expect(narrow.citations.length).toBeGreaterThan(0);
    expect(narrow.citations.every((c: { score: number }) => c.score >= minScore)).toBe(true);
    // Above every score: nothing reaches the model, and the assistant says so.
    expect((await put({ minScore: Math.min(1, Math.max(...scores) + 0.001) })).statusCode).toBe(
      200,
    );
    expect((await ask(s, { message: both })).answer).toBe(NOTHING_RELEVANT);
    const audit = await getAs(s, "/api/audit?eventType=chat_settings.update");
    expect(audit.statusCode, audit.body).toBe(200);
    const rows = audit.json().items;
    expect(rows).toHaveLength(4);
    // The prompt is a text body: the row keeps its digest and length only.
    expect(JSON.stringify(rows)).not.toContain("Be brief.");
  });

  it("audits a session's creation and deletion, never its content", async () => {
    const s = await signup(t.app);
    const turn = await ask(s, { message: "Secret question about refunds", sessionId: "audited" });
    await t.app.inject({
      method: "DELETE",
      url: "/api/chat/sessions/audited",
      headers: bearer(s.token),
    });
    const res = await getAs(s, `/api/audit?entityType=chat_session&entityId=${turn.sessionId}`);
    expect(res.statusCode, res.body).toBe(200);
    const rows = res.json().items as Array<{ eventType: string; actorId: string }>;
    expect(rows.map((r) => r.eventType).sort()).toEqual([
      "chat_session.create",
      "chat_session.delete",
    ]);
    expect(res.body).not.toContain("Secret question");
  });

  it("another tenant's session UUID sent to the chat makes a session of the sender's own", async () => {
    const b = await signup(t.app);
    const mine = await ask(a, { message: "When are orders shipped?", sessionId: "a-only" });
    const theirs = await ask(b, { message: "When are orders shipped?", sessionId: mine.sessionId });
    expect(theirs.sessionId).toBe(mine.sessionId);
    expect((await getAs(b, `/api/chat/sessions/${mine.sessionId}`)).json().messageCount).toBe(2);
    const own = (await getAs(a, `/api/chat/sessions/${mine.sessionId}`)).json();
    expect(own.messageCount).toBe(2);
    expect(own.messages[1].id).toBe(mine.messageId);
  });

  it("concurrent turns on one session are all saved, each question followed by its answer", async () => {
    const s = await signup(t.app);
    const questions = [
      "refunds?",
      "shipping?",
      "gift cards?",
      "islands delivery?",
      "card refunds?",
    ];
    const answers = await Promise.all(
      questions.map((q) => ask(s, { message: `Tell me about ${q}`, sessionId: "busy" })),
    );
    expect(new Set(answers.map((x) => x.sessionId)).size).toBe(1);
    const session = (await getAs(s, "/api/chat/sessions/busy")).json();
    expect(session.messageCount).toBe(10);
    const msgs = session.messages as Array<{
      seq: number;
      role: string;
      id: string;
      content: string;
    }>;
    expect(msgs.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (let i = 0; i < msgs.length; i += 2) {
      expect(msgs[i]?.role).toBe("user");
      expect(msgs[i + 1]?.role).toBe("assistant");
      // The answer right after a question is that question's answer.
      const turn = answers[questions.findIndex((q) => msgs[i]?.content === `Tell me about ${q}`)];
      expect(msgs[i + 1]?.id).toBe(turn?.messageId);
    }
    // One session: one conversation_started.
    const started = await kysely(t.ctx.db)
      .selectFrom("events")
      .select("name")
      .where("tenant_id", "=", s.tenantId)
      .where("name", "=", "conversation_started")
      .execute();
    expect(started).toHaveLength(1);
  });
});
