import { generateKeyPairSync, randomUUID, verify as verifySignature } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DigestContent, digestHash } from "../../src/modules/audit/canonical.js";
import { NIL_UUID, rowHash, verifyExportFile } from "../../src/modules/audit/index.js";
import { createTestClock, type TestClock } from "../../src/platform/clock.js";
import { keyIdOf, signText } from "../../src/platform/crypto/signing.js";
import type { Db, Queryable } from "../../src/platform/db/index.js";
import {
  bearer,
  expectError,
  platformAdminToken,
  type SignedUp,
  signup,
  startApp,
  type TestApp,
  uniqueEmail,
} from "../fixtures/app.js";
import { auditChain, expectIntactChain, type StoredAuditRow } from "../fixtures/audit.js";
import { backends } from "../fixtures/db.js";

/**
 * What the audit log promises an auditor: the verifier finds tampering done behind the
 * append-only triggers' back (as a superuser could), the signed digests pin the chain's head,
 * an export verifies offline with the public key alone, and retention removes old rows without
 * breaking any of that.
 */

const HOUR = 3_600_000;
const DAY = 86_400_000;
/**
 * Test clocks start tomorrow (UTC midnight) and only move forward: sessions expire by the
 * database's now() while their expiry is set by the app's clock, so a clock in the past would
 * end them.
 */
const DAY0 = Math.floor(Date.now() / DAY) * DAY + DAY;
/** Hour `h`, minute `m` of DAY0. */
const at = (h: number, m = 0) => DAY0 + h * HOUR + m * 60_000;

interface VerifyBody {
  ok: boolean;
  checked: number;
  firstBrokenId: string | null;
  firstBrokenSeq: number | null;
  digestsChecked: number;
  firstBrokenDigestId: string | null;
  reason: string | null;
}

interface DigestRow {
  id: string;
  chain_id: string;
  tenant_id: string | null;
  period_start: Date;
  period_end: Date;
  last_event_id: string;
  last_seq: number;
  last_hash: string;
  row_count: number;
  prev_digest_hash: string | null;
  key_id: string;
  created_at: Date;
  hash: string;
  signature: string;
}

/**
 * Runs `fn` with the triggers off for this transaction only, as a superuser tampering with
 * the table would (`session_replication_role = replica` skips ordinary triggers). Being
 * transaction-local, the append-only guarantee is back for everyone once it commits.
 */
function behindTheTriggers(db: Db, fn: (tx: Queryable) => Promise<void>): Promise<void> {
  return db.transaction(async (tx) => {
    await tx.query("set local session_replication_role = replica");
    await fn(tx);
  });
}

/** The hash a row's content gives (what a forger recomputes after an edit). */
function hashOf(r: StoredAuditRow): string {
  const content = { ...r, created_at: r.created_at.toISOString() };
  return rowHash(content as unknown as Parameters<typeof rowHash>[0]);
}

function digests(db: Db, chainId: string): Promise<DigestRow[]> {
  return db.query<DigestRow>(
    "select * from audit_digests where chain_id = $1 order by last_seq, period_start",
    [chainId],
  );
}

/** A digest row signed with `privateKey` over `content` (a forged or a mismatched one). */
function signedDigest(
  content: DigestContent,
  privateKey: Parameters<typeof signText>[0],
): DigestContent & { hash: string; signature: string } {
  const hash = digestHash(content);
  return { ...content, hash, signature: signText(privateKey, hash) };
}

async function insertDigest(db: Db, d: DigestContent & { hash: string; signature: string }) {
  const cols = Object.keys(d);
  await db.query(
    `insert into audit_digests (${cols.join(", ")}) values (${cols.map((_, i) => `$${i + 1}`).join(", ")})`,
    Object.values(d),
  );
}

/** The content of a digest made after `prev`, over the row `last`, for the hour at `start`. */
function nextDigest(
  prev: DigestRow,
  last: StoredAuditRow,
  start: number,
  keyId: string,
): DigestContent {
  return {
    id: randomUUID(),
    chain_id: prev.chain_id,
    tenant_id: prev.tenant_id,
    period_start: new Date(start).toISOString(),
    period_end: new Date(start + HOUR).toISOString(),
    last_event_id: last.id,
    last_seq: last.seq,
    last_hash: last.hash,
    row_count: last.seq - prev.last_seq,
    prev_digest_hash: prev.hash,
    key_id: keyId,
    created_at: new Date(start + HOUR).toISOString(),
  };
}

function otherKey() {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privateKey,
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

/** Helpers over one running app. */
function over(get: () => TestApp, clock: TestClock) {
  const inject = (token: string, url: string) =>
    get().app.inject({ method: "GET", url, headers: bearer(token) });
  return {
    /** `n` real audited mutations (tenant.update rows), each its own request. */
    async rename(s: SignedUp, n: number, label = "Name") {
      for (let i = 0; i < n; i++) {
        const res = await get().app.inject({
          method: "PUT",
          url: "/api/customers/profile",
          headers: bearer(s.token),
          payload: { companyName: `${label} ${i} ${randomUUID().slice(0, 8)}` },
        });
        expect(res.statusCode, res.body).toBe(200);
        // Rows a second apart, so that a time window can cut between them.
        clock.advance(1000);
      }
    },
    async verify(token: string, query = ""): Promise<VerifyBody> {
      const res = await inject(token, `/api/audit/verify${query}`);
      expect(res.statusCode, res.body).toBe(200);
      return res.json();
    },
    async adminVerify(token: string, tenantId: string | null): Promise<VerifyBody> {
      const q = tenantId ? `?tenantId=${tenantId}` : "";
      const res = await inject(token, `/api/admin/audit/verify${q}`);
      expect(res.statusCode, res.body).toBe(200);
      return res.json();
    },
    async export(token: string): Promise<string> {
      const res = await inject(token, "/api/audit/export");
      expect(res.statusCode, res.body).toBe(200);
      expect(res.headers["content-type"]).toMatch(/^application\/x-ndjson/);
      return res.body;
    },
    async publicKey(): Promise<{ keyId: string; publicKey: string }> {
      const res = await get().app.inject({ method: "GET", url: "/api/audit/public-key" });
      expect(res.statusCode, res.body).toBe(200);
      return res.json();
    },
    async login(s: SignedUp): Promise<SignedUp> {
      const res = await get().app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { email: s.email, password: s.password },
      });
      expect(res.statusCode, res.body).toBe(200);
      return { ...s, token: res.json().token };
    },
  };
}

const parseLines = (body: string) =>
  body
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as { type: string; [k: string]: unknown });

describe.each(backends)("audit log: verification, digests and export ($name)", (backend) => {
  let t: TestApp;
  let admin: string;
  let dir: string;
  const clock = createTestClock(at(9, 10));
  const api = over(() => t, clock);
  /** A tenant whose chain nobody tampers with; verified after each tampering. */
  let bystander: SignedUp;

  beforeAll(async () => {
    t = await startApp(backend, {}, { clock });
    admin = await platformAdminToken(t);
    dir = mkdtempSync(path.join(tmpdir(), "tenantrag-audit-verify-"));
    bystander = await signup(t.app);
    await api.rename(bystander, 5);
  });
  afterAll(async () => {
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A throwaway tenant with `n` audited changes, and its chain. */
  async function victim(n = 10) {
    const s = await signup(t.app);
    await api.rename(s, n);
    const rows = await auditChain(t.ctx.db, s.tenantId);
    expectIntactChain(rows);
    expect((await api.verify(s.token)).ok).toBe(true);
    return { s, rows };
  }

  /** Tampering is per chain: the untouched tenant's chain still verifies. */
  async function bystanderIntact() {
    const v = await api.verify(bystander.token);
    expect(v).toMatchObject({ ok: true, firstBrokenId: null });
  }

  describe("verify", () => {
    it("a chain of a few dozen real changes verifies: every row checked, nothing broken", async () => {
      const s = await signup(t.app);
      await api.rename(s, 36);
      const rows = await auditChain(t.ctx.db, s.tenantId);
      expect(rows.length).toBeGreaterThanOrEqual(37);
      const v = await api.verify(s.token);
      expect(v).toEqual({
        ok: true,
        checked: rows.length,
        firstBrokenId: null,
        firstBrokenSeq: null,
        digestsChecked: 0,
        firstBrokenDigestId: null,
        reason: null,
      });
      // The platform admin's view of the same chain says the same.
      expect(await api.adminVerify(admin, s.tenantId)).toEqual(v);
      // A window: only the rows created in [from, to).
      const middle = rows[10] as StoredAuditRow;
      const end = rows[20] as StoredAuditRow;
      const from = encodeURIComponent(middle.created_at.toISOString());
      const to = encodeURIComponent(end.created_at.toISOString());
      const w = await api.verify(s.token, `?from=${from}&to=${to}`);
      const inWindow = rows.filter(
        (r) => r.created_at >= middle.created_at && r.created_at < end.created_at,
      );
      expect(w).toMatchObject({ ok: true, checked: inWindow.length, firstBrokenId: null });
    });

    it("an edited row's values: the row itself is named", async () => {
      const { s, rows } = await victim();
      const target = rows[4] as StoredAuditRow;
      await behindTheTriggers(t.ctx.db, async (tx) => {
        await tx.query("update audit_events set new_values = $2 where id = $1", [
          target.id,
          JSON.stringify({ name: "Someone Else Ltd" }),
        ]);
      });
      const v = await api.verify(s.token);
      expect(v).toMatchObject({ ok: false, firstBrokenId: target.id, firstBrokenSeq: target.seq });
      expect(v.reason).toMatch(/hash does not match its content/);
      await bystanderIntact();
    });

    it("a deleted middle row: the row after the gap is named, the gap reported", async () => {
      const { s, rows } = await victim();
      const gone = rows[5] as StoredAuditRow;
      const after = rows[6] as StoredAuditRow;
      await behindTheTriggers(t.ctx.db, async (tx) => {
        await tx.query("delete from audit_events where id = $1", [gone.id]);
      });
      const v = await api.verify(s.token);
      expect(v).toMatchObject({ ok: false, firstBrokenId: after.id, firstBrokenSeq: after.seq });
      expect(v.reason).toContain(`rows ${gone.seq}..${gone.seq} are missing`);
      expect(v.checked).toBe(rows.length - 1);
      await bystanderIntact();
    });

    it("two rows swapped (their seqs exchanged): the first row out of place is named", async () => {
      const { s, rows } = await victim();
      const a = rows[3] as StoredAuditRow;
      const b = rows[4] as StoredAuditRow;
      await behindTheTriggers(t.ctx.db, async (tx) => {
        // Through a free seq: (chain_id, seq) is unique.
        await tx.query("update audit_events set seq = 1000000 where id = $1", [a.id]);
        await tx.query("update audit_events set seq = $2 where id = $1", [b.id, a.seq]);
        await tx.query("update audit_events set seq = $2 where id = $1", [a.id, b.seq]);
      });
      const v = await api.verify(s.token);
      // In seq order b now comes first, at a's seq.
      expect(v).toMatchObject({ ok: false, firstBrokenId: b.id, firstBrokenSeq: a.seq });
      await bystanderIntact();
    });

    it("a row edited and re-hashed: only the link to the next row breaks, and the edited row is named", async () => {
      const { s, rows } = await victim();
      const target = rows[6] as StoredAuditRow;
      const forged = { ...target, new_values: { name: "Rewritten" } };
      const hash = hashOf(forged);
      await behindTheTriggers(t.ctx.db, async (tx) => {
        await tx.query("update audit_events set new_values = $2, hash = $3 where id = $1", [
          target.id,
          JSON.stringify(forged.new_values),
          hash,
        ]);
      });
      const stored = (await auditChain(t.ctx.db, s.tenantId))[6] as StoredAuditRow;
      expect(hashOf(stored)).toBe(stored.hash);
      const v = await api.verify(s.token);
      expect(v).toMatchObject({ ok: false, firstBrokenId: target.id, firstBrokenSeq: target.seq });
      expect(v.reason).toMatch(/rewritten/);
      await bystanderIntact();
    });

    it("a cut tail or a moved head: the head no longer matches the rows", async () => {
      const { s, rows } = await victim();
      const last = rows.at(-1) as StoredAuditRow;
      await behindTheTriggers(t.ctx.db, async (tx) => {
        await tx.query("delete from audit_events where id = $1", [last.id]);
      });
      const v = await api.verify(s.token);
      expect(v.ok).toBe(false);
      expect(v.reason).toContain(`head is at seq ${last.seq}`);
      await bystanderIntact();
    });

    it("the triggers are back after the tampering: UPDATE and DELETE are refused again", async () => {
      const rows = await auditChain(t.ctx.db, bystander.tenantId);
      const row = rows[1] as StoredAuditRow;
      await expect(
        t.ctx.db.query("update audit_events set new_values = null where id = $1", [row.id]),
      ).rejects.toThrow(/append-only/);
      await expect(
        t.ctx.db.query("delete from audit_events where id = $1", [row.id]),
      ).rejects.toThrow(/append-only/);
      await bystanderIntact();
    });
  });

  describe("digests", () => {
    let s: SignedUp;

    it("the hourly job signs a digest of each chain that has rows, which verify then checks", async () => {
      s = await signup(t.app);
      await api.rename(s, 4);
      const rows = await auditChain(t.ctx.db, s.tenantId);
      clock.set(at(10, 2));
      const run = await t.ctx.auditTrail.digestAll();
      expect(run.digested).toBeGreaterThanOrEqual(3); // this tenant, the bystander, the platform

      const [d, ...more] = await digests(t.ctx.db, s.tenantId);
      expect(more).toEqual([]);
      const last = rows.at(-1) as StoredAuditRow;
      expect(d).toMatchObject({
        tenant_id: s.tenantId,
        period_start: new Date(at(9)),
        period_end: new Date(at(10)),
        last_event_id: last.id,
        last_seq: last.seq,
        last_hash: last.hash,
        row_count: rows.length,
        prev_digest_hash: null,
      });
      const key = await api.publicKey();
      expect(d?.key_id).toBe(key.keyId);
      // Signed with the key GET /api/audit/public-key gives.
      const signed = verifySignature(
        null,
        Buffer.from(d?.hash as string, "utf8"),
        key.publicKey,
        Buffer.from(d?.signature as string, "base64"),
      );
      expect(signed).toBe(true);
      expect(await digests(t.ctx.db, bystander.tenantId)).toHaveLength(1);
      expect((await digests(t.ctx.db, NIL_UUID)).length).toBe(1);

      const v = await api.verify(s.token);
      expect(v).toMatchObject({ ok: true, digestsChecked: 1, firstBrokenId: null });
      expect((await api.adminVerify(admin, null)).ok).toBe(true);
    });

    it("the next hour's digest chains to the previous one, covering the rows since", async () => {
      const before = (await auditChain(t.ctx.db, s.tenantId)).length;
      await api.rename(s, 3);
      clock.set(at(11, 2));
      await t.ctx.auditTrail.digestAll();
      const [first, second] = await digests(t.ctx.db, s.tenantId);
      const rows = await auditChain(t.ctx.db, s.tenantId);
      expect(second).toMatchObject({
        period_start: new Date(at(10)),
        prev_digest_hash: first?.hash,
        last_seq: rows.length,
        row_count: rows.length - before,
      });
      expect(await api.verify(s.token)).toMatchObject({ ok: true, digestsChecked: 2 });
    });

    it("run twice for the same hour, also at once: one digest per chain", async () => {
      await api.rename(s, 2);
      await api.rename(bystander, 2);
      clock.set(at(12, 2));
      const runs = await Promise.all([
        t.ctx.auditTrail.digestAll(),
        t.ctx.auditTrail.digestAll(),
        t.ctx.auditTrail.digestAll(),
      ]);
      // Both chains digested once between the three runs.
      expect(runs.reduce((n, r) => n + r.digested, 0)).toBeGreaterThanOrEqual(2);
      const again = await t.ctx.auditTrail.digestAll();
      expect(again.digested).toBe(0);
      clock.set(at(12, 40));
      await api.rename(s, 1);
      // Still the same hour to digest: the chain advanced, but its hour is done.
      expect((await t.ctx.auditTrail.digestAll()).digested).toBe(0);
      for (const tenantId of [s.tenantId, bystander.tenantId]) {
        const ds = await digests(t.ctx.db, tenantId);
        const hour = ds.filter((d) => d.period_start.getTime() === at(11));
        expect(hour).toHaveLength(1);
        // Each digest chains to the one before it: no fork.
        ds.forEach((d, i) => {
          expect(d.prev_digest_hash).toBe(i === 0 ? null : ds[i - 1]?.hash);
        });
      }
      expect(await api.verify(s.token)).toMatchObject({ ok: true, digestsChecked: 3 });
      await bystanderIntact();
    });

    it("a digest signed with another key is refused", async () => {
      const { s: v } = await victim(3);
      clock.advance(HOUR);
      await t.ctx.auditTrail.digestAll();
      await api.rename(v, 1);
      const [real] = await digests(t.ctx.db, v.tenantId);
      const last = (await auditChain(t.ctx.db, v.tenantId)).at(-1) as StoredAuditRow;
      const forger = otherKey();
      const start = (real?.period_start.getTime() ?? 0) + HOUR;
      // Signed by the forger's key and naming it…
      const forged = signedDigest(
        nextDigest(real as DigestRow, last, start, forger.keyId),
        forger.privateKey,
      );
      await insertDigest(t.ctx.db, forged);
      const named = await api.verify(v.token);
      expect(named).toMatchObject({ ok: false, firstBrokenDigestId: forged.id });
      expect(named.reason).toContain(`signed by key ${forger.keyId}`);
    });

    it("a digest naming the deployment's key but signed by another one is refused", async () => {
      const { s: v } = await victim(3);
      clock.advance(HOUR);
      await t.ctx.auditTrail.digestAll();
      await api.rename(v, 1);
      const [real] = await digests(t.ctx.db, v.tenantId);
      const last = (await auditChain(t.ctx.db, v.tenantId)).at(-1) as StoredAuditRow;
      const start = (real?.period_start.getTime() ?? 0) + HOUR;
      const forged = signedDigest(
        nextDigest(real as DigestRow, last, start, t.ctx.auditTrail.signingKey.keyId),
        otherKey().privateKey,
      );
      await insertDigest(t.ctx.db, forged);
      const v2 = await api.verify(v.token);
      expect(v2).toMatchObject({ ok: false, firstBrokenDigestId: forged.id });
      expect(v2.reason).toMatch(/signature is not valid/);
    });

    it("a validly signed digest whose last hash is not the row's: the row is named", async () => {
      const { s: v } = await victim(3);
      clock.advance(HOUR);
      await t.ctx.auditTrail.digestAll();
      await api.rename(v, 1);
      const [real] = await digests(t.ctx.db, v.tenantId);
      const last = (await auditChain(t.ctx.db, v.tenantId)).at(-1) as StoredAuditRow;
      const start = (real?.period_start.getTime() ?? 0) + HOUR;
      const content = nextDigest(real as DigestRow, last, start, t.ctx.auditTrail.signingKey.keyId);
      const wrong = signedDigest(
        { ...content, last_hash: "f".repeat(64) },
        t.ctx.auditTrail.signingKey.privateKey,
      );
      await insertDigest(t.ctx.db, wrong);
      const res = await api.verify(v.token);
      expect(res).toMatchObject({ ok: false, firstBrokenId: last.id, firstBrokenSeq: last.seq });
      expect(res.reason).toContain(`not the row digest ${wrong.id} signed`);
    });

    it("the head row rewritten with its hash and the head recomputed: only a digest tells", async () => {
      const { s: v, rows } = await victim(3);
      const last = rows.at(-1) as StoredAuditRow;
      const forged = { ...last, new_values: { name: "Rewritten" } };
      const hash = hashOf(forged);
      await behindTheTriggers(t.ctx.db, async (tx) => {
        await tx.query("update audit_events set new_values = $2, hash = $3 where id = $1", [
          last.id,
          JSON.stringify(forged.new_values),
          hash,
        ]);
        await tx.query("update audit_chains set hash = $2 where chain_id = $1", [v.tenantId, hash]);
      });
      // Without a digest, nothing is left that remembers the old head: by design undetectable.
      expect((await api.verify(v.token)).ok).toBe(true);

      // With one: the same rewrite after the hour's digest is caught.
      const { s: w, rows: wRows } = await victim(3);
      clock.advance(HOUR);
      await t.ctx.auditTrail.digestAll();
      const wLast = wRows.at(-1) as StoredAuditRow;
      const wForged = { ...wLast, new_values: { name: "Rewritten" } };
      const wHash = hashOf(wForged);
      await behindTheTriggers(t.ctx.db, async (tx) => {
        await tx.query("update audit_events set new_values = $2, hash = $3 where id = $1", [
          wLast.id,
          JSON.stringify(wForged.new_values),
          wHash,
        ]);
        await tx.query("update audit_chains set hash = $2 where chain_id = $1", [
          w.tenantId,
          wHash,
        ]);
      });
      const caught = await api.verify(w.token);
      expect(caught).toMatchObject({ ok: false, firstBrokenId: wLast.id });
    });

    it("digests are append-only too", async () => {
      const [d] = await digests(t.ctx.db, bystander.tenantId);
      await expect(
        t.ctx.db.query("update audit_digests set row_count = 0 where id = $1", [d?.id]),
      ).rejects.toThrow(/append-only/);
      await expect(
        t.ctx.db.query("delete from audit_digests where id = $1", [d?.id]),
      ).rejects.toThrow(/append-only/);
    });
  });

  describe("export", () => {
    async function exported(s: SignedUp, name: string) {
      const body = await api.export(s.token);
      const file = path.join(dir, `${name}.jsonl`);
      writeFileSync(file, body);
      return { body, file, lines: parseLines(body) };
    }

    it("every row with its hashes and the digests, verified offline with the public key", async () => {
      const s = await signup(t.app);
      await api.rename(s, 6);
      clock.advance(HOUR);
      await t.ctx.auditTrail.digestAll();
      await api.rename(s, 2);
      const { file, lines } = await exported(s, `all-${backend.name}`);
      // The export's own access row is on the chain, and in the export.
      const rows = await auditChain(t.ctx.db, s.tenantId);
      expect(rows.at(-1)?.event_type).toBe("audit.export");
      const rowLines = lines.filter((l) => l.type === "row");
      expect(lines[0]).toMatchObject({ type: "header", chainId: s.tenantId, toEnd: true });
      expect(rowLines.map((l) => l.id)).toEqual(rows.map((r) => r.id));
      rowLines.forEach((l, i) => {
        expect(l).toMatchObject({ seq: i + 1, prev_hash: rows[i]?.prev_hash, hash: rows[i]?.hash });
      });
      const ds = await digests(t.ctx.db, s.tenantId);
      expect(ds).toHaveLength(1);
      expect(lines.filter((l) => l.type === "digest").map((l) => l.id)).toEqual(
        ds.map((d) => d.id),
      );

      const key = await api.publicKey();
      const r = await verifyExportFile(file, key.publicKey);
      expect(r).toMatchObject({
        ok: true,
        checked: rows.length,
        digestsChecked: 1,
        firstBrokenId: null,
        chainId: s.tenantId,
      });

      // One row's values changed in the file: that row is named.
      const target = rowLines[3] as unknown as { id: string };
      const tampered = readFileSync(file, "utf8")
        .split("\n")
        .map((l) => {
          if (!l.includes(`"id":"${target.id}"`)) return l;
          const v = JSON.parse(l);
          return JSON.stringify({ ...v, new_values: { name: "Edited In The File" } });
        })
        .join("\n");
      const tamperedFile = path.join(dir, `tampered-${backend.name}.jsonl`);
      writeFileSync(tamperedFile, tampered);
      const broken = await verifyExportFile(tamperedFile, key.publicKey);
      expect(broken).toMatchObject({ ok: false, firstBrokenId: target.id, firstBrokenSeq: 4 });

      // Another key than the deployment's: refused before any digest is read, naming both keys.
      const wrong = await verifyExportFile(file, otherKey().publicKeyPem);
      expect(wrong.ok).toBe(false);
      expect(wrong.reason).toMatch(/not the given key/);
    });

    it("a tenant's export holds its own chain only", async () => {
      const a = await signup(t.app);
      const b = await signup(t.app);
      await api.rename(a, 3);
      await api.rename(b, 3);
      clock.advance(HOUR);
      await t.ctx.auditTrail.digestAll();
      const { body, lines } = await exported(a, `a-${backend.name}`);
      const bRows = await auditChain(t.ctx.db, b.tenantId);
      for (const l of lines.slice(1)) {
        expect(l.chain_id).toBe(a.tenantId);
        expect(l.tenant_id).toBe(a.tenantId);
      }
      for (const r of bRows) expect(body).not.toContain(r.id);
      expect(body).not.toContain(b.tenantId);
      for (const d of await digests(t.ctx.db, b.tenantId)) expect(body).not.toContain(d.id);
    });

    it("a member cannot verify or export (owners and admins only), nor can a key without the admin scope", async () => {
      const s = await signup(t.app);
      const email = uniqueEmail("member");
      const password = "a long password";
      const made = await t.app.inject({
        method: "POST",
        url: "/api/customers/users",
        headers: bearer(s.token),
        payload: { email, password, role: "member" },
      });
      expect(made.statusCode, made.body).toBe(201);
      const login = await t.app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { email, password },
      });
      const member = login.json().token as string;
      for (const url of ["/api/audit", "/api/audit/verify", "/api/audit/export"]) {
        const res = await t.app.inject({ method: "GET", url, headers: bearer(member) });
        expectError(res, 403, "auth.forbidden");
        const key = await t.app.inject({
          method: "GET",
          url,
          headers: { "x-api-key": s.apiKey },
        });
        expectError(key, 403, "auth.scope_required");
        // A tenant user is no platform admin.
        const adminUrl = url.replace("/api/audit", "/api/admin/audit");
        const asOwner = await t.app.inject({
          method: "GET",
          url: adminUrl,
          headers: bearer(s.token),
        });
        expect(asOwner.statusCode).toBe(403);
      }
      // No export happened: no access row.
      const after = await auditChain(t.ctx.db, s.tenantId);
      expect(after.filter((r) => r.event_type === "audit.export")).toEqual([]);
    });
  });
});

describe.each(backends)("audit log: retention ($name)", (backend) => {
  let t: TestApp;
  let dir: string;
  const T0 = at(8);
  const clock = createTestClock(T0);
  const api = over(() => t, clock);
  const RETENTION_DAYS = 30;
  const job = () => ({ id: randomUUID(), name: "audit.retention" });

  beforeAll(async () => {
    t = await startApp(backend, { AUDIT_RETENTION_DAYS: String(RETENTION_DAYS) }, { clock });
    dir = mkdtempSync(path.join(tmpdir(), "tenantrag-audit-retention-"));
  });
  afterAll(async () => {
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A tenant with `old` changes at the start, digested, and `recent` changes 40 days on. */
  async function agedTenant(old: number, recent: number, at: number) {
    clock.set(at);
    let s = await signup(t.app);
    await api.rename(s, old, "Old");
    clock.set(at + HOUR);
    await t.ctx.auditTrail.digestAll();
    clock.set(at + 40 * DAY);
    s = await api.login(s);
    await api.rename(s, recent, "Recent");
    return s;
  }

  it("only the job removes old rows; it anchors the new start, and verify and an offline export still pass", async () => {
    const s = await agedTenant(8, 4, T0);
    const cutoff = new Date(clock.now() - RETENTION_DAYS * DAY);
    const before = await auditChain(t.ctx.db, s.tenantId);
    const old = before.filter((r) => r.created_at < cutoff);
    const kept = before.filter((r) => r.created_at >= cutoff);
    expect(old.length).toBeGreaterThanOrEqual(9);
    expect(kept.length).toBeGreaterThanOrEqual(5);
    // Old enough is not enough: a plain DELETE is refused.
    await expect(
      t.ctx.db.query("delete from audit_events where chain_id = $1 and created_at < $2", [
        s.tenantId,
        cutoff,
      ]),
    ).rejects.toThrow(/append-only/);

    const run = await t.ctx.auditTrail.retention(job());
    expect(run).toEqual({ chains: 1, deleted: old.length });

    const after = await auditChain(t.ctx.db, s.tenantId);
    const lastOld = old.at(-1) as StoredAuditRow;
    const anchor = after.at(-1) as StoredAuditRow;
    expect(after.slice(0, -1).map((r) => r.id)).toEqual(kept.map((r) => r.id));
    expect(anchor).toMatchObject({
      event_type: "audit.retention",
      action: "delete",
      actor_type: "system",
      seq: (before.at(-1)?.seq ?? 0) + 1,
      prev_hash: before.at(-1)?.hash,
      new_values: {
        cutoff: cutoff.toISOString(),
        deletedRows: old.length,
        firstKeptSeq: lastOld.seq + 1,
        firstKeptPrevHash: lastOld.hash,
      },
    });
    // The digest of the deleted rows is kept (digests are append-only).
    expect(await digests(t.ctx.db, s.tenantId)).toHaveLength(1);

    const v = await api.verify(s.token);
    expect(v).toMatchObject({ ok: true, checked: after.length, firstBrokenId: null });
    expect(v.digestsChecked).toBe(1);

    const body = await api.export(s.token);
    const file = path.join(dir, `retained-${backend.name}.jsonl`);
    writeFileSync(file, body);
    const lines = parseLines(body);
    expect(lines.filter((l) => l.type === "anchor").map((l) => l.id)).toEqual([anchor.id]);
    const offline = await verifyExportFile(file, (await api.publicKey()).publicKey);
    // The kept rows, the anchor and the export's own row.
    expect(offline).toMatchObject({ ok: true, checked: after.length + 1 });

    // The exception was the job's transaction's only: a plain DELETE is refused again.
    await expect(
      t.ctx.db.query("delete from audit_events where chain_id = $1", [s.tenantId]),
    ).rejects.toThrow(/append-only/);

    // Rows deleted behind the triggers' back are not the job's: no anchor accounts for them.
    const extra = (await auditChain(t.ctx.db, s.tenantId))[0] as StoredAuditRow;
    await behindTheTriggers(t.ctx.db, async (tx) => {
      await tx.query("delete from audit_events where id = $1", [extra.id]);
    });
    const cut = await api.verify(s.token);
    expect(cut.ok).toBe(false);
    expect(cut.reason).toMatch(/no retention row accounts for them/);
  });

  it("a second run deletes nothing more and appends no row", async () => {
    const s = await agedTenant(3, 2, T0 + 60 * DAY);
    await t.ctx.auditTrail.retention(job());
    const once = await auditChain(t.ctx.db, s.tenantId);
    const again = await t.ctx.auditTrail.retention(job());
    expect(again.deleted).toBe(0);
    expect(await auditChain(t.ctx.db, s.tenantId)).toEqual(once);
    expect((await api.verify(s.token)).ok).toBe(true);
  });

  it("concurrent runs delete each row once and append one anchor: no fork", async () => {
    const s = await agedTenant(12, 3, T0 + 120 * DAY);
    const cutoff = new Date(clock.now() - RETENTION_DAYS * DAY);
    const [{ n: oldRows }] = (await t.ctx.db.query<{ n: number }>(
      "select count(*)::int as n from audit_events where created_at < $1",
      [cutoff],
    )) as [{ n: number }];
    const before = await auditChain(t.ctx.db, s.tenantId);
    const runs = await Promise.all([
      t.ctx.auditTrail.retention(job()),
      t.ctx.auditTrail.retention(job()),
      t.ctx.auditTrail.retention(job()),
    ]);
    expect(runs.reduce((n, r) => n + r.deleted, 0)).toBe(oldRows);
    const after = await auditChain(t.ctx.db, s.tenantId);
    const anchors = after.filter((r) => r.event_type === "audit.retention");
    expect(anchors).toHaveLength(1);
    expect(after.map((r) => r.seq)).toEqual(
      Array.from({ length: after.length }, (_, i) => (after[0]?.seq ?? 0) + i),
    );
    expect(after.at(-1)?.seq).toBe((before.at(-1)?.seq ?? 0) + 1);
    expect(await api.verify(s.token)).toMatchObject({ ok: true, checked: after.length });
  });
});
