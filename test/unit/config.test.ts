import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { generateSigningKeyPem, loadSigningKey } from "../../src/platform/crypto/signing.js";

let dataDir: string;
beforeEach(() => {
  dataDir = mkdtempSync(path.join(tmpdir(), "tenantrag-config-"));
});
afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

const secretsFile = () => path.join(dataDir, "secrets.json");
const JWT_SECRET = randomBytes(32).toString("hex");
const MASTER_KEY = randomBytes(32).toString("hex");
const AUDIT_SIGNING_KEY = generateSigningKeyPem();

/** The ConfigError `loadConfig(env)` throws; fails the test when it throws nothing or another error. */
function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig({ DATA_DIR: dataDir, ...env });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe("loadConfig defaults", () => {
  it("starts in embedded mode on 127.0.0.1:3000 with no variable set", () => {
    const config = loadConfig({ DATA_DIR: dataDir });
    expect(config).toMatchObject({
      mode: "embedded",
      port: 3000,
      host: "127.0.0.1",
      dataDir: path.resolve(dataDir),
      databaseUrl: undefined,
      redisUrl: undefined,
      corsOrigins: [],
      trustProxy: false,
      logLevel: "info",
    });
    expect(config.masterKey).toHaveLength(32);
    expect(config.jwtSecret.length).toBeGreaterThanOrEqual(32);
  });

  it("resolves a relative DATA_DIR against the working directory", () => {
    const rel = path.relative(process.cwd(), dataDir);
    expect(loadConfig({ DATA_DIR: rel }).dataDir).toBe(path.resolve(dataDir));
  });

  it("searches ANN indexes at ef 1000 × refine 20 and bounds vector searches by the CPU count", () => {
    const config = loadConfig({ DATA_DIR: dataDir });
    expect(config.annSearch).toEqual({ ef: 1000, refineFactor: 4, nprobes: 20 });
    expect(config.annIndex).toEqual({ type: "ivf_pq" });
    expect(config.vectorSearchConcurrency).toBeUndefined();
    const tuned = loadConfig({
      DATA_DIR: dataDir,
      ANN_EF: "300",
      ANN_REFINE_FACTOR: "5",
      ANN_NPROBES: "40",
      ANN_INDEX_TYPE: "ivf_hnsw_sq",
      ANN_ROWS_PER_PARTITION: "4096",
      VECTOR_SEARCH_CONCURRENCY: "3",
    });
    expect(tuned.annSearch).toEqual({ ef: 300, refineFactor: 5, nprobes: 40 });
    expect(tuned.annIndex).toEqual({ type: "ivf_hnsw_sq", rowsPerPartition: 4096 });
    expect(() => loadConfig({ DATA_DIR: dataDir, ANN_INDEX_TYPE: "hnsw" })).toThrow();
    expect(tuned.vectorSearchConcurrency).toBe(3);
  });

  it("throttles 5 failed logins per email and 20 per client address in 15 minutes", () => {
    expect(loadConfig({ DATA_DIR: dataDir })).toMatchObject({
      loginMaxFailures: 5,
      loginMaxFailuresPerIp: 20,
      loginLockoutSeconds: 900,
    });
    const tuned = loadConfig({ DATA_DIR: dataDir, LOGIN_MAX_FAILURES_PER_IP: "100" });
    expect(tuned.loginMaxFailuresPerIp).toBe(100);
    expect(configError({ LOGIN_MAX_FAILURES_PER_IP: "0" }).message).toContain(
      "LOGIN_MAX_FAILURES_PER_IP",
    );
  });

  it("limits request rates unless RATE_LIMITS_ENABLED=false (benchmarks, trusted deployments)", () => {
    expect(loadConfig({ DATA_DIR: dataDir }).rateLimitsEnabled).toBe(true);
    expect(loadConfig({ DATA_DIR: dataDir, RATE_LIMITS_ENABLED: "false" }).rateLimitsEnabled).toBe(
      false,
    );
  });

  it("accepts PORT=0 (any free port) and explicit values", () => {
    const config = loadConfig({ DATA_DIR: dataDir, PORT: "0", HOST: "0.0.0.0", LOG_LEVEL: "warn" });
    expect(config).toMatchObject({ port: 0, host: "0.0.0.0", logLevel: "warn" });
  });
});

describe("loadConfig refuses invalid values, naming the variable", () => {
  it.each([
    ["PORT", "abc"],
    ["PORT", "70000"],
    ["LOG_LEVEL", "loud"],
    ["DATABASE_URL", "mysql://x"],
    ["REDIS_URL", "http://x"],
    ["MASTER_KEY", "short"],
    ["MASTER_KEY", "z".repeat(64)],
    ["JWT_SECRET", "too-short"],
    ["TRUST_PROXY", "maybe"],
    ["RATE_LIMITS_ENABLED", "off"],
    ["JOB_LOCK_MS", "100"],
    // A ':' would let one deployment's queue keys read as another prefix's.
    ["QUEUE_PREFIX", "tenant:rag"],
    ["ANN_EF", "5"],
    ["ANN_REFINE_FACTOR", "0"],
    ["VECTOR_SEARCH_CONCURRENCY", "0"],
    ["EXTRACTION_TIMEOUT_MS", "10"],
  ])("%s=%s", (name, value) => {
    const err = configError({ [name]: value });
    expect(err.message).toContain(name);
    // A refused start-up leaves nothing behind.
    expect(existsSync(secretsFile())).toBe(false);
  });

  it("names every invalid variable at once", () => {
    const err = configError({ PORT: "abc", LOG_LEVEL: "loud" });
    expect(err.message).toContain("PORT");
    expect(err.message).toContain("LOG_LEVEL");
  });
});

describe("server mode (DATABASE_URL set)", () => {
  const DATABASE_URL = "postgres://app@db.internal:5432/tenantrag";

  it("requires JWT_SECRET and MASTER_KEY, naming both when both are missing", () => {
    const err = configError({ DATABASE_URL });
    expect(err.message).toMatch(/requires JWT_SECRET and MASTER_KEY/);
  });

  it("names only the missing one", () => {
    expect(configError({ DATABASE_URL, JWT_SECRET, AUDIT_SIGNING_KEY }).message).toMatch(
      /requires MASTER_KEY:/,
    );
    expect(configError({ DATABASE_URL, MASTER_KEY, AUDIT_SIGNING_KEY }).message).toMatch(
      /requires JWT_SECRET:/,
    );
    const noKey = configError({ DATABASE_URL, JWT_SECRET, MASTER_KEY }).message;
    expect(noKey).toMatch(/requires AUDIT_SIGNING_KEY:/);
    expect(noKey).toContain("tenantrag audit keygen");
  });

  it("treats a blank secret as missing", () => {
    const err = configError({ DATABASE_URL, JWT_SECRET: "   ", MASTER_KEY, AUDIT_SIGNING_KEY });
    expect(err.message).toMatch(/requires JWT_SECRET:/);
  });

  it("takes AUDIT_SIGNING_KEY as PKCS#8 PEM or base64 DER, and refuses anything else", () => {
    const env = { DATA_DIR: dataDir, DATABASE_URL, JWT_SECRET, MASTER_KEY };
    const der = loadSigningKey(AUDIT_SIGNING_KEY)
      .privateKey.export({ type: "pkcs8", format: "der" })
      .toString("base64");
    const a = loadConfig({ ...env, AUDIT_SIGNING_KEY });
    const b = loadConfig({ ...env, AUDIT_SIGNING_KEY: der });
    expect(b.audit.signingKeyPem).toBe(a.audit.signingKeyPem);
    expect(configError({ ...env, AUDIT_SIGNING_KEY: "not a key" }).message).toMatch(
      /AUDIT_SIGNING_KEY: is not a PKCS#8 private key/,
    );
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 })
      .privateKey.export({ type: "pkcs8", format: "pem" })
      .toString();
    expect(configError({ ...env, AUDIT_SIGNING_KEY: rsa }).message).toMatch(
      /AUDIT_SIGNING_KEY: is a rsa key; an Ed25519 key is required/,
    );
  });

  it("uses the given secrets and never writes a secrets file", () => {
    const config = loadConfig({
      DATA_DIR: dataDir,
      DATABASE_URL,
      JWT_SECRET,
      MASTER_KEY,
      AUDIT_SIGNING_KEY,
    });
    expect(config.mode).toBe("server");
    expect(config.databaseUrl).toBe(DATABASE_URL);
    expect(config.jwtSecret).toBe(JWT_SECRET);
    expect(config.masterKey.equals(Buffer.from(MASTER_KEY, "hex"))).toBe(true);
    expect(existsSync(secretsFile())).toBe(false);
  });

  it("accepts postgresql:// and rediss:// URLs", () => {
    const config = loadConfig({
      DATA_DIR: dataDir,
      DATABASE_URL: "postgresql://db/x",
      REDIS_URL: "rediss://cache:6380",
      JWT_SECRET,
      MASTER_KEY,
      AUDIT_SIGNING_KEY,
    });
    expect(config.redisUrl).toBe("rediss://cache:6380");
  });
});

describe("embedded secrets", () => {
  it("generates DATA_DIR/secrets.json, readable by its owner only", () => {
    loadConfig({ DATA_DIR: dataDir });
    expect(statSync(secretsFile()).mode & 0o777).toBe(0o600);
  });

  it("creates a missing DATA_DIR", () => {
    const nested = path.join(dataDir, "a", "b");
    loadConfig({ DATA_DIR: nested });
    expect(existsSync(path.join(nested, "secrets.json"))).toBe(true);
  });

  it("returns the same secrets on the next start, so tokens and encrypted keys stay valid", () => {
    const first = loadConfig({ DATA_DIR: dataDir });
    const before = readFileSync(secretsFile(), "utf8");
    const second = loadConfig({ DATA_DIR: dataDir });
    expect(second.jwtSecret).toBe(first.jwtSecret);
    expect(second.masterKey.equals(first.masterKey)).toBe(true);
    expect(readFileSync(secretsFile(), "utf8")).toBe(before);
  });

  it("gives different installations different secrets", () => {
    const other = mkdtempSync(path.join(tmpdir(), "tenantrag-config-"));
    try {
      const a = loadConfig({ DATA_DIR: dataDir });
      const b = loadConfig({ DATA_DIR: other });
      expect(b.jwtSecret).not.toBe(a.jwtSecret);
      expect(b.masterKey.equals(a.masterKey)).toBe(false);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it("keeps an audit signing key in the file, the same on every start", () => {
    const first = loadConfig({ DATA_DIR: dataDir });
    expect(loadSigningKey(first.audit.signingKeyPem).keyId).toMatch(/^[0-9a-f]{64}$/);
    expect(loadConfig({ DATA_DIR: dataDir }).audit.signingKeyPem).toBe(first.audit.signingKeyPem);
  });

  it("adds a signing key to a secrets file written before the audit log, keeping its secrets", () => {
    const old = { jwtSecret: randomBytes(48).toString("base64url"), masterKey: MASTER_KEY };
    writeFileSync(secretsFile(), `${JSON.stringify(old, null, 2)}\n`, { mode: 0o600 });
    const config = loadConfig({ DATA_DIR: dataDir });
    expect(config.jwtSecret).toBe(old.jwtSecret);
    expect(config.masterKey.toString("hex")).toBe(MASTER_KEY);
    const now = JSON.parse(readFileSync(secretsFile(), "utf8"));
    expect(now).toEqual({ ...old, auditSigningKey: config.audit.signingKeyPem });
    expect(statSync(secretsFile()).mode & 0o777).toBe(0o600);
    expect(existsSync(`${secretsFile()}.lock`)).toBe(false);
    expect(loadConfig({ DATA_DIR: dataDir }).audit.signingKeyPem).toBe(config.audit.signingKeyPem);
  });

  it("lets explicit JWT_SECRET and MASTER_KEY win over the file", () => {
    loadConfig({ DATA_DIR: dataDir });
    const config = loadConfig({ DATA_DIR: dataDir, JWT_SECRET, MASTER_KEY });
    expect(config.jwtSecret).toBe(JWT_SECRET);
    expect(config.masterKey.toString("hex")).toBe(MASTER_KEY);
  });

  it.each([
    ["not JSON", "{ this is not json"],
    ["the wrong shape", JSON.stringify({ jwtSecret: "x", masterKey: "y" })],
    ["empty", ""],
  ])("refuses a secrets file that is %s with a ConfigError naming the file", (_label, content) => {
    writeFileSync(secretsFile(), content, { mode: 0o600 });
    const err = configError({});
    expect(err.message).toContain(secretsFile());
    // The file is the only copy of the keys: it must never be replaced silently.
    expect(readFileSync(secretsFile(), "utf8")).toBe(content);
  });
});

describe("CORS_ORIGINS", () => {
  it.each([
    [undefined, []],
    ["", []],
    ["https://app.example", ["https://app.example"]],
    [" https://a.example , https://b.example,, ", ["https://a.example", "https://b.example"]],
  ])("%j → %j", (value, expected) => {
    const env = value === undefined ? {} : { CORS_ORIGINS: value };
    expect(loadConfig({ DATA_DIR: dataDir, ...env }).corsOrigins).toEqual(expected);
  });
});

describe("telemetry, metrics and retention settings", () => {
  it("defaults: batches of 500 each second, 2 writers, 100 000 held, retention 30 / 400 days", () => {
    const config = loadConfig({ DATA_DIR: dataDir });
    expect(config.telemetry).toEqual({
      batchSize: 500,
      flushIntervalMs: 1000,
      maxBuffered: 100_000,
      retryBaseMs: 250,
      retryMaxMs: 30_000,
      writers: 2,
    });
    expect(config.metricsToken).toBeUndefined();
    expect(config.retention).toEqual({ apiCallsDays: 30, usageEventsDays: 400, batchSize: 10_000 });
  });

  it("takes each variable, and never holds less than one batch", () => {
    const config = loadConfig({
      DATA_DIR: dataDir,
      TELEMETRY_BATCH_SIZE: "2000",
      TELEMETRY_BUFFER_MAX: "10",
      METRICS_TOKEN: "a-long-enough-token",
      API_CALLS_RETENTION_DAYS: "7",
    });
    expect(config.telemetry.batchSize).toBe(2000);
    expect(config.telemetry.maxBuffered).toBe(2000);
    expect(config.metricsToken).toBe("a-long-enough-token");
    expect(config.retention.apiCallsDays).toBe(7);
  });

  it.each([
    ["TELEMETRY_BATCH_SIZE", "0"],
    ["TELEMETRY_FLUSH_INTERVAL_MS", "abc"],
    ["METRICS_TOKEN", "short"],
    ["API_CALLS_RETENTION_DAYS", "0"],
    ["RETENTION_BATCH_SIZE", "-1"],
  ])("refuses %s=%s, naming it", (name, value) => {
    expect(configError({ [name]: value }).message).toContain(name);
  });
});
