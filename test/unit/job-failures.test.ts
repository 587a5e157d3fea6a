import { describe, expect, it } from "vitest";
import { AppError } from "../../src/errors.js";
import { ExtractionError } from "../../src/modules/ingestion/extract.js";
import { classify, IngestionJobError } from "../../src/modules/ingestion/job-failures.js";
import { EmbeddingError } from "../../src/platform/embeddings/embedder.js";
import { FetchError } from "../../src/platform/fetch/safe-fetch.js";

const decision = (err: unknown) => {
  const { retry, code } = classify(err);
  return { retry, code };
};

describe("the retry decision of an ingestion job", () => {
  it("stops at once on what a retry cannot fix", () => {
    expect(decision(new IngestionJobError("gone", "ingestion.content_missing"))).toEqual({
      retry: false,
      code: "ingestion.content_missing",
    });
    expect(decision(new ExtractionError("ingestion.pdf_encrypted", "locked"))).toEqual({
      retry: false,
      code: "ingestion.pdf_encrypted",
    });
    expect(decision(new FetchError("ingestion.url_forbidden", "private"))).toEqual({
      retry: false,
      code: "ingestion.url_forbidden",
    });
    expect(decision(new EmbeddingError("bad key", false, 401))).toEqual({
      retry: false,
      code: "ingestion.embedding_failed",
    });
  });

  it("keeps the code of a service's refusal, and does not retry it", () => {
    expect(decision(new AppError("embedding.not_configured", "no endpoint"))).toEqual({
      retry: false,
      code: "embedding.not_configured",
    });
  });

  it("retries a server's 5xx or 429, not its other answers", () => {
    const http = (status: number) =>
      decision(new FetchError("ingestion.url_http_error", `HTTP ${status}`, status)).retry;
    expect([http(500), http(503), http(429), http(404), http(403)]).toEqual([
      true,
      true,
      true,
      false,
      false,
    ]);
  });

  it("retries timeouts, passing embedder failures and the unforeseen", () => {
    expect(decision(new FetchError("ingestion.url_timeout", "slow"))).toEqual({
      retry: true,
      code: "ingestion.url_timeout",
    });
    expect(decision(new EmbeddingError("busy", true, 503)).retry).toBe(true);
    expect(decision(new Error("boom"))).toEqual({ retry: true, code: "ingestion.internal" });
  });

  it("does not retry a version over its tokens quota, and retries a quota store that did not answer", () => {
    expect(decision(new IngestionJobError("over", "quota.exceeded"))).toEqual({
      retry: false,
      code: "quota.exceeded",
    });
    expect(decision(new AppError("plan.trial_expired", "ended"))).toEqual({
      retry: false,
      code: "plan.trial_expired",
    });
    expect(decision(new AppError("quota.unavailable", "database down"))).toEqual({
      retry: true,
      code: "quota.unavailable",
    });
  });
});
