import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { builtMain, migratedDataDir } from "../fixtures/cli.js";

/**
 * The README's curl walk-through, run as written against the built server: the sh blocks of its
 * "Walk-through with curl" section, in one bash session as a reader would type them, with only
 * the server's address (and the local page's port) changed. Each numbered step must answer
 * without an error.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const LISTENING = /listening on (http:\/\/127\.0\.0\.1:\d+)/;

/** The shell blocks of the walk-through section of README.md. */
function walkthroughScript(readme: string): string {
  const start = readme.indexOf("## Walk-through with curl");
  if (start < 0) throw new Error("README.md has no '## Walk-through with curl' section");
  const rest = readme.slice(start + 3);
  const end = rest.search(/\n## /);
  const section = end < 0 ? rest : rest.slice(0, end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]).join("\n");
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as { port: number };
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

let server: ChildProcess | undefined;
const dirs: string[] = [];
const tempDir = (label: string) => {
  const dir = mkdtempSync(path.join(tmpdir(), `tenantrag-readme-${label}-`));
  dirs.push(dir);
  return dir;
};

afterAll(() => {
  server?.kill("SIGKILL");
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("the README walk-through", () => {
  let url: string;

  beforeAll(async () => {
    // What `npm start` runs: the build, then dist/main.js.
    const main = await builtMain();
    const dataDir = migratedDataDir("tenantrag-readme-data-");
    dirs.push(dataDir);
    server = spawn(process.execPath, [main, "serve"], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? tmpdir(),
        PORT: "0",
        DATA_DIR: dataDir,
        // As the walk-through says to start it: step 9 ingests a page served on loopback.
        ALLOW_PRIVATE_URLS: "true",
        LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    server.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
    });
    url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`server did not start:\n${out}\n${err}`)),
        60_000,
      );
      server?.stdout?.on("data", (d: Buffer) => {
        out += d.toString();
        const m = out.match(LISTENING);
        if (m) {
          clearTimeout(timer);
          resolve(m[1] as string);
        }
      });
      server?.on("exit", (code) =>
        reject(new Error(`server exited with ${code}:\n${out}\n${err}`)),
      );
    });
  }, 180_000);

  it("runs as written, every step answering without an error", { timeout: 120_000 }, async () => {
    const sitePort = await freePort();
    const script = walkthroughScript(readFileSync(path.join(ROOT, "README.md"), "utf8"))
      .replaceAll("http://127.0.0.1:3000", url)
      .replace(/\b8000\b/g, String(sitePort))
      // A marker before each numbered step, so that each step's output can be told apart.
      .replace(/^# (\d+)\. /gm, (line, n: string) => `echo; echo "@@step ${n}"\n${line}`);
    const dir = tempDir("shell");
    writeFileSync(
      path.join(dir, "walkthrough.sh"),
      `trap 'kill $(jobs -p) 2>/dev/null' EXIT\n${script}`,
    );
    const run = spawnSync("bash", ["walkthrough.sh"], {
      cwd: dir,
      encoding: "utf8",
      env: { PATH: process.env.PATH ?? "", HOME: dir },
      timeout: 90_000,
    });
    const output = run.stdout;
    expect(run.status, `bash exited ${run.status}\n${output}\n${run.stderr}`).toBe(0);

    const steps = new Map<number, string>();
    // curl prints JSON without a final newline, so a marker may follow output on its line.
    const parts = output.split(/@@step (\d+)\n/);
    for (let i = 1; i < parts.length; i += 2) steps.set(Number(parts[i]), parts[i + 1] ?? "");
    expect([...steps.keys()]).toEqual(Array.from({ length: steps.size }, (_, i) => i + 1));

    const failures: string[] = [];
    for (const [n, text] of steps) {
      if (text.trim() === "") failures.push(`step ${n}: printed nothing`);
      for (const m of text.matchAll(/"error":\{"code":"([^"]+)"/g)) {
        failures.push(`step ${n}: answered the error ${m[1]}`);
      }
      for (const m of text.matchAll(/HTTP\/1\.1 (\d{3}) /g)) {
        if (!(m[1] as string).startsWith("2")) failures.push(`step ${n}: answered HTTP ${m[1]}`);
      }
    }
    // What each step is there to show.
    const shows: [number, RegExp, string][] = [
      [1, /"token":"ey[^"]+".*"apiKey":"trk_/s, "a token and an API key"],
      [
        4,
        /"apiKey":"trk_.*HTTP\/1\.1 204 .*"apiKey":"trk_/s,
        "a key added, one revoked, all regenerated",
      ],
      [5, /"token":"ey[^"]+"/, "a new session's token"],
      [6, /"documentId":"[0-9a-f-]{36}"/, "the document's id"],
      [7, /"status":"completed"/, "the document processed"],
      [8, /kitchen closes at four/, "the ingested text found"],
      [9, /"documentId".*\n?.*"documentId".*"status":"completed"/s, "a file and a page ingested"],
      [10, /HTTP\/1\.1 204 /, "the document deleted"],
      [11, /HTTP\/1\.1 204 /, "the session ended"],
    ];
    for (const [n, re, what] of shows) {
      if (!re.test(steps.get(n) ?? "")) failures.push(`step ${n}: does not show ${what}`);
    }
    expect(failures, `${failures.join("\n")}\n\n${output}\n${run.stderr}`).toEqual([]);
  });
});
