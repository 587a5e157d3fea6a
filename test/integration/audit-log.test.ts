import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AuditContext,
  type AuditLog,
  createAuditLog,
  GENESIS_HASH,
  NIL_UUID,
  REDACTED,
} from "../../src/modules/audit/index.js";
import { createTestClock } from "../../src/platform/clock.js";
import type { PlatformContext, TenantContext } from "../../src/tenancy.js";
import { auditChain, expectIntactChain } from "../fixtures/audit.js";
import { apiKeyContext, testRequest, userContext } from "../fixtures/contexts.js";
import { backends, type TestDb } from "../fixtures/db.js";

const chainRows = auditChain;

const entry = {
  eventType: "document.update",
  entityType: "document",
  entityId: "d1",
  action: "update",
} as const;

describe.each(backends)("audit log: record ($name)", (backend) => {
  let t: TestDb;
  let audit: AuditLog;
  const clock = createTestClock(Date.parse("2026-12-02T08:00:00.123Z"));

  beforeAll(async () => {
    t = await backend.open();
    audit = createAuditLog({ db: t.db, clock });
  });
  afterAll(() => t.dispose());

  it("stores the actor, the request and the entry, hashed over exactly what is stored", async () => {
    const tenantId = randomUUID();
    const ctx = userContext(tenantId, randomUUID());
    const out = await t.db.transaction((tx) =>
      audit.record(
        ctx,
        {
          ...entry,
          oldValues: { title: "a\u0000b", tags: ["x"], password: "hunter2" },
          newValues: {
            title: "ab",
            tags: ["x"],
            nested: { deep: [{ refreshToken: "rtk_x", apiKeyId: "k1", keyHash: "h" }] },
            note: "Bearer abc.def",
            tokens: 1000,
          },
        },
        { tx },
      ),
    );
    expect(out.seq).toBe(1);
    const [row] = await chainRows(t.db, tenantId);
    expect(row).toMatchObject({
      id: out.id,
      tenant_id: tenantId,
      chain_id: tenantId,
      seq: 1,
      event_type: "document.update",
      entity_type: "document",
      entity_id: "d1",
      action: "update",
      actor_type: "user",
      actor_id: ctx.actor.kind === "user" ? ctx.actor.userId : "",
      caused_by: null,
      result: "success",
      ip_address: testRequest.ip,
      user_agent: testRequest.userAgent,
      request_id: testRequest.id,
      prev_hash: GENESIS_HASH,
    });
    expect(row?.created_at.toISOString()).toBe("2026-12-02T08:00:00.123Z");
    // NUL removed; secrets redacted at any depth; counts named "tokens" are not secrets.
    expect(row?.old_values).toEqual({ title: "ab", tags: ["x"], password: REDACTED });
    expect(row?.new_values).toEqual({
      title: "ab",
      tags: ["x"],
      nested: { deep: [{ refreshToken: REDACTED, apiKeyId: "k1", keyHash: REDACTED }] },
      note: REDACTED,
      tokens: 1000,
    });
    // Compared before redaction (a password that went is a change), after cleaning (the NUL).
    expect(row?.changes_summary).toBe("nested, note, tokens, password changed");
    expectIntactChain(row ? [row] : []);
  });

  it("names each kind of actor; a job's cause is kept; the platform has its own chain", async () => {
    const tenantId = randomUUID();
    const userId = randomUUID();
    const keyCtx = apiKeyContext(tenantId);
    const visitorId = randomUUID();
    const contexts: AuditContext[] = [
      userContext(tenantId, userId),
      keyCtx,
      {
        tenantId,
        actor: { kind: "widget_visitor", visitorId, tenantId },
        request: testRequest,
      },
      {
        tenantId,
        actor: {
          kind: "system",
          job: { id: "j1", name: "ingest.process" },
          causedBy: { actor: { kind: "user", userId }, requestId: "r1" },
        },
        request: null,
      } satisfies TenantContext,
      { actor: { kind: "anonymous" }, request: testRequest },
    ];
    for (const c of contexts) {
      await t.db.transaction((tx) =>
        audit.record(c, { ...entry, tenantId: "tenantId" in c ? undefined : tenantId }, { tx }),
      );
    }
    const rows = await chainRows(t.db, tenantId);
    expect(rows.map((r) => [r.actor_type, r.actor_id])).toEqual([
      ["user", userId],
      ["api_key", keyCtx.actor.kind === "api_key" ? keyCtx.actor.keyId : ""],
      ["widget_visitor", visitorId],
      ["system", "ingest.process:j1"],
      ["anonymous", null],
    ]);
    expect(rows[3]?.caused_by).toEqual({ actor: { kind: "user", userId }, requestId: "r1" });
    expect(rows[3]?.request_id).toBeNull();
    expectIntactChain(rows);

    const admin: PlatformContext = {
      actor: { kind: "platform_admin", userId, sessionId: randomUUID() },
      request: testRequest,
    };
    await t.db.transaction((tx) =>
      audit.record(admin, { ...entry, eventType: "tenant.suspend" }, { tx }),
    );
    const platform = await chainRows(t.db, NIL_UUID);
    expect(platform.at(-1)).toMatchObject({
      tenant_id: null,
      actor_type: "platform_admin",
      actor_id: userId,
    });
    expectIntactChain(platform);
  });

  it("a rolled-back transaction leaves no row and does not advance the chain", async () => {
    const tenantId = randomUUID();
    const ctx = userContext(tenantId, randomUUID());
    await t.db.transaction((tx) => audit.record(ctx, entry, { tx }));
    await expect(
      t.db.transaction(async (tx) => {
        await audit.record(ctx, entry, { tx });
        throw new Error("the change failed");
      }),
    ).rejects.toThrow("the change failed");
    await t.db.transaction((tx) => audit.record(ctx, entry, { tx }));
    const rows = await chainRows(t.db, tenantId);
    expect(rows.map((r) => r.seq)).toEqual([1, 2]);
    expectIntactChain(rows);
  });

  it("refuses a malformed entry before writing", async () => {
    const ctx = userContext(randomUUID(), randomUUID());
    await expect(
      t.db.transaction((tx) => audit.record(ctx, { ...entry, eventType: "Nope" }, { tx })),
    ).rejects.toThrow(/event type/);
    await expect(
      t.db.transaction((tx) => audit.record(ctx, { ...entry, tenantId: randomUUID() }, { tx })),
    ).rejects.toThrow(/names tenant/);
  });

  it("concurrent writers of one tenant never fork its chain", async () => {
    const tenantId = randomUUID();
    const other = randomUUID();
    const n = 60;
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        t.db.transaction(async (tx) => {
          // Some work of the change before the audit row, as a service does.
          await tx.query("select pg_sleep($1)", [(i % 5) / 1000]);
          return audit.record(userContext(i % 3 === 0 ? other : tenantId, randomUUID()), entry, {
            tx,
          });
        }),
      ),
    );
    const rows = await chainRows(t.db, tenantId);
    const others = await chainRows(t.db, other);
    expect(rows.length + others.length).toBe(n);
    expectIntactChain(rows);
    expectIntactChain(others);
    const [head] = await t.db.query<{ seq: number; hash: string }>(
      "select seq, hash from audit_chains where chain_id = $1",
      [tenantId],
    );
    expect(head).toEqual({ seq: rows.length, hash: rows.at(-1)?.hash });
  });

  it("recordMany appends consecutive rows as many records would, beside concurrent writers, or none on rollback", async () => {
    const tenantId = randomUUID();
    const ctx = userContext(tenantId, randomUUID());
    const many = (n: number, tag: string) =>
      Array.from({ length: n }, (_, i) => ({ ...entry, entityId: `${tag}-${i}` }));
    const results = await Promise.all([
      t.db.transaction((tx) => audit.recordMany(ctx, many(20, "a"), { tx })),
      ...Array.from({ length: 5 }, (_, i) =>
        t.db.transaction((tx) => audit.record(ctx, { ...entry, entityId: `one-${i}` }, { tx })),
      ),
      t.db.transaction((tx) => audit.recordMany(ctx, many(7, "b"), { tx })),
    ]);
    const batch = results[0] as Array<{ seq: number }>;
    expect(batch.map((r) => r.seq)).toEqual(
      Array.from({ length: 20 }, (_, i) => (batch[0]?.seq ?? 0) + i),
    );
    await expect(
      t.db.transaction(async (tx) => {
        await audit.recordMany(ctx, many(3, "gone"), { tx });
        throw new Error("rolled back");
      }),
    ).rejects.toThrow(/rolled back/);
    const rows = await chainRows(t.db, tenantId);
    expect(rows).toHaveLength(32);
    expectIntactChain(rows);
    const ids = rows.map((r) => r.entity_id);
    expect(ids.filter((id) => id?.startsWith("a-"))).toEqual(many(20, "a").map((e) => e.entityId));
    expect(ids.some((id) => id?.startsWith("gone"))).toBe(false);
    const [head] = await t.db.query<{ seq: number; hash: string }>(
      "select seq, hash from audit_chains where chain_id = $1",
      [tenantId],
    );
    expect(head).toEqual({ seq: 32, hash: rows.at(-1)?.hash });
  });

  it("refuses UPDATE, DELETE and TRUNCATE of audit rows and digests", async () => {
    const tenantId = randomUUID();
    await t.db.transaction((tx) =>
      audit.record(userContext(tenantId, randomUUID()), entry, { tx }),
    );
    await expect(
      t.db.query("update audit_events set result = 'failure' where chain_id = $1", [tenantId]),
    ).rejects.toThrow(/append-only/);
    await expect(
      t.db.query("delete from audit_events where chain_id = $1", [tenantId]),
    ).rejects.toThrow(/append-only/);
    await expect(t.db.query("truncate audit_events")).rejects.toThrow(/append-only/);
    await t.db.query(
      `insert into audit_digests (id, chain_id, period_start, period_end, last_event_id, last_seq,
         last_hash, row_count, key_id, created_at, hash, signature)
       values ($1, $2, now(), now(), $1, 1, 'h', 1, 'k', now(), 'h', 's')`,
      [randomUUID(), tenantId],
    );
    await expect(t.db.query("update audit_digests set signature = 'x'")).rejects.toThrow(
      /append-only/,
    );
    await expect(t.db.query("delete from audit_digests")).rejects.toThrow(/append-only/);
    await expect(t.db.query("truncate audit_digests")).rejects.toThrow(/append-only/);
    // A transaction-local retention cutoff lets only older rows go.
    await expect(
      t.db.transaction(async (tx) => {
        await tx.query("select set_config('tenantrag.audit_retention_cutoff', $1, true)", [
          "2000-01-01T00:00:00Z",
        ]);
        await tx.query("delete from audit_events where chain_id = $1", [tenantId]);
      }),
    ).rejects.toThrow(/append-only/);
    expect(await chainRows(t.db, tenantId)).toHaveLength(1);
  });
});
