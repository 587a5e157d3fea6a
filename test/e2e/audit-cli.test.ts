import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadPublicKey } from "../../src/platform/crypto/signing.js";
import { bearer, type SignedUp, signup, startApp, type TestApp } from "../fixtures/app.js";
import { builtMain } from "../fixtures/cli.js";
import { backends } from "../fixtures/db.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** Runs the built CLI to its end, with a clean environment. */
function tenantrag(
  main: string,
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [main, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? tmpdir(), LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`tenantrag ${args.join(" ")}: still running after 30 s`));
    }, 30_000);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * `tenantrag audit keygen` and `tenantrag audit verify` as an auditor runs them, on a real
 * export (with signed digests): 0 and OK for the export as made; 1 and the first broken row or
 * digest for a tampered file or another deployment's key; 2 for what cannot be read.
 */
describe("tenantrag audit keygen | verify", { timeout: 120_000 }, () => {
  let main: string;
  let t: TestApp;
  let s: SignedUp;
  let dir: string;
  let exportFile: string;
  let publicKeyFile: string;
  let lines: string[];

  beforeAll(async () => {
    main = await builtMain();
    dir = mkdtempSync(path.join(tmpdir(), "tenantrag-audit-cli-"));
    t = await startApp(backends[0] as (typeof backends)[number]);
    s = await signup(t.app);
    for (let i = 0; i < 4; i++) {
      const res = await t.app.inject({
        method: "PUT",
        url: "/api/alerts/settings",
        headers: bearer(s.token),
        payload: { costUsdMonthly: 10 + i },
      });
      expect(res.statusCode, res.body).toBe(200);
    }
    // Signed digests over the rows so far, then one more row after them.
    expect((await t.ctx.auditTrail.digestAll()).digested).toBeGreaterThan(0);
    const res = await t.app.inject({ url: "/api/audit/export", headers: bearer(s.token) });
    expect(res.statusCode, res.body).toBe(200);
    lines = res.body.trimEnd().split("\n");
    expect(lines.filter((l) => l.includes('"type":"digest"')).length).toBeGreaterThan(0);
    exportFile = path.join(dir, "export.jsonl");
    writeFileSync(exportFile, res.body);
    const key = await t.app.inject({ url: "/api/audit/public-key" });
    publicKeyFile = path.join(dir, "deployment.pub.pem");
    writeFileSync(publicKeyFile, key.json().publicKey);
  }, 240_000);
  afterAll(async () => {
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The export with line `n` (0: the header) changed by `edit`, or removed when it answers null. */
  function variant(name: string, n: number, edit: (v: Record<string, unknown>) => unknown): string {
    const out = lines.flatMap((l, i) => {
      if (i !== n) return [l];
      const changed = edit(JSON.parse(l));
      return changed === null ? [] : [JSON.stringify(changed)];
    });
    const file = path.join(dir, name);
    writeFileSync(file, `${out.join("\n")}\n`);
    return file;
  }
  const rowLine = (seq: number) =>
    lines.findIndex((l) => l.includes(`"type":"row"`) && JSON.parse(l).seq === seq);

  it("keygen prints a signing key and its public key; verify accepts the export as made", async () => {
    const gen = await tenantrag(main, ["audit", "keygen"]);
    expect(gen.code, gen.stderr).toBe(0);
    expect(gen.stdout).toMatch(/^-----BEGIN PRIVATE KEY-----\n[\s\S]+-----END PRIVATE KEY-----\n$/);
    expect(gen.stderr).toMatch(/key id [0-9a-f]{64}/);
    expect(() => loadPublicKey(gen.stderr.slice(gen.stderr.indexOf("-----BEGIN")))).not.toThrow();

    const ok = await tenantrag(main, [
      "audit",
      "verify",
      exportFile,
      "--public-key",
      publicKeyFile,
    ]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^OK: .*chain .*: \d+ rows and [1-9]\d* signed digests verified\n$/);
    // The key given as text works as the file does.
    const inline = readFileSync(publicKeyFile, "utf8");
    const ok2 = await tenantrag(main, ["audit", "verify", exportFile, "--public-key", inline]);
    expect(ok2.code, ok2.stdout + ok2.stderr).toBe(0);
  });

  it("another deployment's public key: exit 1, naming both key ids, with or without digests", async () => {
    const gen = await tenantrag(main, ["audit", "keygen"]);
    const other = path.join(dir, "other.pub.pem");
    const otherPem = gen.stderr.slice(gen.stderr.indexOf("-----BEGIN"));
    writeFileSync(other, otherPem);
    const otherId = (gen.stderr.match(/key id ([0-9a-f]{64})/) as RegExpMatchArray)[1];
    const res = await tenantrag(main, ["audit", "verify", exportFile, "--public-key", other]);
    expect(res.code, res.stdout + res.stderr).toBe(1);
    expect(res.stdout).toMatch(
      new RegExp(`^BROKEN: .*made with signing key [0-9a-f]{64}, not the given key ${otherId}`),
    );
    // The header names the key but is not signed: made to name the other key, the digests'
    // signatures still refuse it.
    const relabelled = variant("relabelled.jsonl", 0, (v) => ({ ...v, keyId: otherId }));
    const forged = await tenantrag(main, ["audit", "verify", relabelled, "--public-key", other]);
    expect(forged.code, forged.stdout + forged.stderr).toBe(1);
    expect(forged.stdout).toMatch(
      new RegExp(
        `^BROKEN: .*first broken digest [0-9a-f-]{36}: .*signed by key [0-9a-f]{64}, not by the given key ${otherId}`,
      ),
    );
    // A chain younger than its first digest has no signature: the key is refused all the same.
    const young = await signup(t.app);
    const e = await t.app.inject({ url: "/api/audit/export", headers: bearer(young.token) });
    expect(e.body).not.toContain('"type":"digest"');
    const youngFile = path.join(dir, "young.jsonl");
    writeFileSync(youngFile, e.body);
    const ok = await tenantrag(main, ["audit", "verify", youngFile, "--public-key", publicKeyFile]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/: 2 rows and 0 signed digests verified/);
    const wrong = await tenantrag(main, ["audit", "verify", youngFile, "--public-key", other]);
    expect(wrong.code, wrong.stdout + wrong.stderr).toBe(1);
    expect(wrong.stdout).toMatch(/^BROKEN: .*not the given key/);
  });

  it.each([
    [
      "a row's content changed",
      "content.jsonl",
      () => variant("content.jsonl", rowLine(2), (v) => ({ ...v, result: "failure" })),
      /first broken row .*\(seq 2\): .*its hash does not match its content/,
    ],
    [
      "a row's hash replaced",
      "rehashed.jsonl",
      () => variant("rehashed.jsonl", rowLine(2), (v) => ({ ...v, hash: "0".repeat(64) })),
      /first broken row .*\(seq 2\)/,
    ],
    [
      "a row removed",
      "gap.jsonl",
      () => variant("gap.jsonl", rowLine(3), () => null),
      /first broken row .*\(seq 4\): rows 3\.\.3 are missing before it/,
    ],
    [
      "the last rows cut off",
      "tail.jsonl",
      () => {
        const last = JSON.parse(
          lines.filter((l) => l.includes('"type":"row"')).at(-1) as string,
        ).seq;
        return variant("tail.jsonl", rowLine(last), () => null);
      },
      /missing from the end/,
    ],
    [
      "a digest's signature forged",
      "signature.jsonl",
      () =>
        variant(
          "signature.jsonl",
          lines.findIndex((l) => l.includes('"type":"digest"')),
          (v) => ({ ...v, signature: Buffer.alloc(64, 7).toString("base64") }),
        ),
      /first broken digest .*signature is not valid/,
    ],
    [
      "not an export",
      "garbage.jsonl",
      () => {
        const file = path.join(dir, "garbage.jsonl");
        writeFileSync(file, "hello\nworld\n");
        return file;
      },
      /line 1: the header must be line 1/,
    ],
  ])("%s: exit 1 and what broke", async (_what, _name, make, message) => {
    const file = make();
    const res = await tenantrag(main, ["audit", "verify", file, "--public-key", publicKeyFile]);
    expect(res.code, res.stdout + res.stderr).toBe(1);
    expect(res.stdout).toMatch(/^BROKEN: /);
    expect(res.stdout).toMatch(message);
  });

  it("a key or a file that cannot be read: exit 2 and why, on stderr", async () => {
    const badKey = await tenantrag(main, [
      "audit",
      "verify",
      exportFile,
      "--public-key",
      "not a key",
    ]);
    expect(badKey.code, badKey.stdout + badKey.stderr).toBe(2);
    expect(badKey.stderr).toMatch(/^tenantrag: --public-key /);
    // A private key is not what an auditor should hold, nor what verifies.
    const gen = await tenantrag(main, ["audit", "keygen"]);
    const priv = path.join(dir, "private.pem");
    writeFileSync(priv, gen.stdout);
    const privKey = await tenantrag(main, ["audit", "verify", exportFile, "--public-key", priv]);
    expect(privKey.code, privKey.stdout + privKey.stderr).not.toBe(0);
    const missing = await tenantrag(main, [
      "audit",
      "verify",
      path.join(dir, "nope.jsonl"),
      "--public-key",
      publicKeyFile,
    ]);
    expect(missing.code, missing.stdout + missing.stderr).toBe(2);
    expect(missing.stderr).toMatch(/no such file/);
    const noKey = await tenantrag(main, ["audit", "verify", exportFile]);
    expect(noKey.code).not.toBe(0);
    expect(noKey.stderr).toMatch(/--public-key/);
  });
});
