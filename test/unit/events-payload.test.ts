import { describe, expect, it } from "vitest";
import {
  fitSize,
  isDeniedKey,
  MAX_EVENT_BYTES,
  REDACTED,
  sampled,
  TRUNCATED_KEY,
  validateEvent,
} from "../../src/modules/events/index.js";

const DOC = "7d1c2b8e-6a45-4c3f-9d2e-0b1a2c3d4e5f";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe("event payloads", () => {
  it("accepts the data of each name's schema and drops undefined values", () => {
    const data = validateEvent("ingest_started", {
      sourceType: "text",
      url: null,
      documentId: DOC,
      version: 1,
    });
    expect(data).toEqual({ sourceType: "text", url: null, documentId: DOC, version: 1 });
    const withUndefined = validateEvent("escalation_triggered", {
      conversationId: "c1",
      reason: "low_confidence",
      integrationId: undefined,
    });
    expect(withUndefined).toEqual({ conversationId: "c1", reason: "low_confidence" });
    expect(Object.keys(withUndefined)).not.toContain("integrationId");
  });

  it("refuses a name outside the taxonomy, a missing required key, and an undeclared key", () => {
    expect(codeOf(() => validateEvent("user_clicked", {}))).toBe("events.invalid_payload");
    expect(codeOf(() => validateEvent("ingest_completed", { sourceType: "url", url: null }))).toBe(
      "events.invalid_payload",
    );
    expect(
      codeOf(() =>
        validateEvent("document_deleted", { documentId: DOC, email: "someone@example.test" }),
      ),
    ).toBe("events.invalid_payload");
    expect(
      codeOf(() =>
        validateEvent("message_sent", { conversationId: "c", messageId: "m", role: "bot" }),
      ),
    ).toBe("events.invalid_payload");
  });

  it("redacts personal keys at any depth, and leaves look-alikes alone", () => {
    const data = validateEvent("integration_failed", {
      integrationId: "i1",
      type: "zendesk",
      errorCode: "http_401",
      details: {
        customerEmail: "a@example.test",
        contact: { phone: "+44 20 7946 0000", Full_Name: "Ada Lovelace", street: "1 Main St" },
        list: [{ ip: "203.0.113.9", fileName: "menu.pdf" }],
        ipAddress: "203.0.113.9",
        accessToken: "tok",
        status: 401,
        ownership: "tenant",
        hostname: "api.example.test",
      },
    });
    const d = data.details as Record<string, unknown>;
    expect(d.customerEmail).toBe(REDACTED);
    expect(d.ipAddress).toBe(REDACTED);
    expect(d.accessToken).toBe(REDACTED);
    expect(d.contact).toEqual({ phone: REDACTED, Full_Name: REDACTED, street: REDACTED });
    expect(d.list).toEqual([{ ip: REDACTED, fileName: "menu.pdf" }]);
    expect(d.status).toBe(401);
    expect(d.ownership).toBe("tenant");
    expect(d.hostname).toBe("api.example.test");
    expect(JSON.stringify(data)).not.toMatch(/a@example|Lovelace|203\.0\.113|Main St|7946/);
    for (const k of ["email", "e-mail", "phone_number", "name", "address", "ip", "user_agent"])
      expect(isDeniedKey(k), k).toBe(true);
    for (const k of ["plan", "reason", "tokens", "filename", "sessionId", "type"])
      expect(isDeniedKey(k), k).toBe(false);
  });

  it("refuses non-JSON values", () => {
    expect(
      codeOf(() =>
        validateEvent("workflow_failed", {
          workflowId: "w",
          runId: "r",
          errorCode: "x",
          details: { n: Number.NaN },
        }),
      ),
    ).toBe("events.invalid_payload");
  });

  const big = () =>
    validateEvent("workflow_failed", {
      workflowId: "w1",
      runId: "r1",
      errorCode: "step_failed",
      details: { log: "x".repeat(3000) },
    });

  it("keeps data up to 2 KB as it is", () => {
    const data = validateEvent("workflow_failed", {
      workflowId: "w1",
      runId: "r1",
      errorCode: "e",
      details: { log: "x".repeat(MAX_EVENT_BYTES - 200) },
    });
    expect(fitSize("workflow_failed", data, "refuse")).toEqual({ data, truncated: false });
  });

  it("refuses data over 2 KB with refuse, naming its size", () => {
    let err: { code?: string; details?: Record<string, unknown> } | undefined;
    try {
      fitSize("workflow_failed", big(), "refuse");
    } catch (e) {
      err = e as typeof err;
    }
    expect(err?.code).toBe("events.payload_too_large");
    expect(err?.details?.max).toBe(MAX_EVENT_BYTES);
    expect(err?.details?.bytes).toBeGreaterThan(3000);
  });

  it("truncates data over 2 KB with truncate: scalars kept, a marker with the size it had", () => {
    const r = fitSize("workflow_failed", big(), "truncate");
    expect(r.truncated).toBe(true);
    expect(r.data).toMatchObject({ workflowId: "w1", runId: "r1", errorCode: "step_failed" });
    expect(r.data).not.toHaveProperty("details");
    expect(r.data[TRUNCATED_KEY]).toBeGreaterThan(3000);
    expect(Buffer.byteLength(JSON.stringify(r.data))).toBeLessThanOrEqual(MAX_EVENT_BYTES);
  });

  it("samples by key: the same key always decides the same, and the rate is the share kept", () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => `message-${i}`);
    const kept = keys.filter((k) => sampled(k, 0.1)).length;
    expect(kept / keys.length).toBeGreaterThan(0.08);
    expect(kept / keys.length).toBeLessThan(0.12);
    for (const k of keys.slice(0, 500)) expect(sampled(k, 0.1)).toBe(sampled(k, 0.1));
    expect(keys.every((k) => sampled(k, 1))).toBe(true);
    expect(keys.some((k) => sampled(k, 0))).toBe(false);
    // A key kept at a rate is kept at every higher rate: raising the rate only adds events.
    expect(keys.filter((k) => sampled(k, 0.1)).every((k) => sampled(k, 0.5))).toBe(true);
  });
});
