/**
 * Known-item corpora of the retrieval-quality benchmark (bench/quality.ts), made at run time
 * from text already on the machine that nobody here wrote. Each item is one document and the
 * one query whose right answer it is. Both loaders are deterministic: the same files give the
 * same items in the same order.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { mapLimit } from "./report.js";

export interface Item {
  /** The document's title (package name, man page name). */
  name: string;
  documentId: string;
  body: string;
  query: string;
}

export interface Corpus {
  name: string;
  items: Item[];
  /** Why candidates were left out, by reason. */
  dropped: Record<string, number>;
  /** Where the items came from, for the report. */
  source: string;
  /** Set when the corpus could not be made on this machine. */
  skipped?: string;
}

export interface CorpusOptions {
  items: number;
  /** Smallest document kept, in characters. */
  minChars: number;
  /** Documents are cut to this many characters. */
  maxChars: number;
}

export const normalise = (s: string) => s.toLowerCase().replace(/\s+/g, " ").trim();

/** A stable uuid-shaped id per name, so ties break the same way every run. */
export function idOf(name: string): string {
  const h = createHash("sha256").update(name).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const byName = (a: Item, b: Item) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Every package directory under `root` (scoped ones included, nested node_modules too). */
function packageDirs(root: string, out: string[] = [], depth = 0): string[] {
  let entries: string[];
  try {
    entries = readdirSync(root).sort();
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (entry.startsWith(".")) continue;
    const dir = path.join(root, entry);
    if (entry.startsWith("@")) {
      packageDirs(dir, out, depth);
      continue;
    }
    out.push(dir);
    if (depth < 3) packageDirs(path.join(dir, "node_modules"), out, depth + 1);
  }
  return out;
}

const README = /^readme(\.(md|markdown|txt))?$/i;

/**
 * Each package README in `root` (a node_modules directory) is a document; its `package.json`
 * `description` is the query. Packages whose README holds the description verbatim (case and
 * spacing aside) are dropped, since those queries would test string matching only; so are
 * READMEs under `minChars`, descriptions under 3 words and duplicates of a name (the first
 * path in sorted order wins). Items are sorted by package name and the first `items` kept.
 */
export function readmeCorpus(root: string, opts: CorpusOptions): Corpus {
  const dropped = { noReadme: 0, tiny: 0, noDescription: 0, verbatim: 0, duplicate: 0 };
  const found = new Map<string, Item>();
  for (const dir of packageDirs(root)) {
    let pkg: { name?: unknown; description?: unknown };
    try {
      pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
    } catch {
      continue;
    }
    if (typeof pkg.name !== "string") continue;
    if (found.has(pkg.name)) {
      dropped.duplicate++;
      continue;
    }
    const file = readdirSync(dir).find((f) => README.test(f));
    if (!file || !statSync(path.join(dir, file)).isFile()) {
      dropped.noReadme++;
      continue;
    }
    const readme = readFileSync(path.join(dir, file), "utf8");
    if (readme.length < opts.minChars) {
      dropped.tiny++;
      continue;
    }
    const description = typeof pkg.description === "string" ? pkg.description.trim() : "";
    if (description.split(/\s+/).length < 3) {
      dropped.noDescription++;
      continue;
    }
    if (normalise(readme).includes(normalise(description))) {
      dropped.verbatim++;
      continue;
    }
    found.set(pkg.name, {
      name: pkg.name,
      documentId: idOf(pkg.name),
      body: readme.slice(0, opts.maxChars),
      query: description,
    });
  }
  const items = [...found.values()].sort(byName).slice(0, opts.items);
  return { name: "readmes", items, dropped, source: root };
}

/** A section heading of a rendered man page: unindented, upper case. */
const HEADING = /^[A-Z][A-Z0-9 ,/&()'-]*$/;

/**
 * A rendered man page split into its NAME line's description and the rest: the page's header
 * and footer lines (name, section, date) go too. Undefined when there is no NAME section or
 * its line has no ` - ` separating names from the description.
 */
export function splitManPage(rendered: string): { description: string; body: string } | undefined {
  const lines = rendered.replace(/\r/g, "").split("\n");
  const content = lines.map((l, i) => ({ l, i })).filter(({ l }) => l.trim() !== "");
  if (content.length < 3) return undefined;
  const header = (content[0] as { i: number }).i;
  const footer = (content[content.length - 1] as { i: number }).i;
  const start = lines.findIndex((l) => l.trim() === "NAME" && /^\S/.test(l));
  if (start < 0) return undefined;
  let end = start + 1;
  while (end < lines.length && !HEADING.test(lines[end] as string)) end++;
  const nameText = lines
    .slice(start + 1, end)
    .join(" ")
    .replace(/\s+/g, " ")
    .trim();
  const sep = nameText.match(/\s[-\u2010\u2013\u2014]{1,2}\s/);
  if (!sep || sep.index === undefined) return undefined;
  const description = nameText.slice(sep.index + sep[0].length).trim();
  const body = lines
    .filter((_, i) => i !== header && i !== footer && (i < start || i >= end))
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
  return { description, body };
}

/** `cmd args` with `input` on its stdin; its stdout (stderr ignored). */
function run(cmd: string, args: string[], input?: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { env: { PATH: process.env.PATH, LC_ALL: "C.UTF-8" }, maxBuffer: 16 * 1024 ** 2 },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    );
    child.stdin?.end(input);
  });
}

/**
 * groff as `man` would call it, without its pipeline (4× faster here): input encoding
 * guessed (`-k`), the man macros, UTF-8 text 100 columns wide, no hyphenation, ragged right,
 * no overstriking or colour.
 */
const GROFF = ["-k", "-mandoc", "-Tutf8", "-rLL=100n", "-rHY=0", "-dAD=l", "-P-c", "-P-b", "-P-u"];

/** The family of a page (`git` for git-log, `gcloud` for gcloud_ai_…), for the sample cap. */
const familyOf = (page: string) => page.split(/[-_.]/)[0] as string;

/**
 * The man pages of `dir` (section 1), rendered to text by groff (`GROFF`): the NAME line's description is the query
 * and the rest of the page the document. Pages that are links or `.so` redirects are skipped;
 * pages whose body holds the description verbatim, bodies under `minChars`, descriptions under
 * 3 words and repeated descriptions are dropped. The sample: pages in the order of the SHA-256
 * of their file name, at most `perFamily` from one family (one tool's pages: this machine's
 * man1 is 90 % `gcloud …`), the first `items` kept, then sorted by name.
 * Skipped (not an error) when the directory or groff is missing.
 */
export async function manCorpus(
  dir: string,
  opts: CorpusOptions & { perFamily: number },
): Promise<Corpus> {
  const dropped = {
    link: 0,
    unrendered: 0,
    noDescription: 0,
    tiny: 0,
    verbatim: 0,
    duplicate: 0,
    familyCap: 0,
  };
  const skip = (why: string): Corpus => ({
    name: "man",
    items: [],
    dropped,
    source: dir,
    skipped: why,
  });
  if (!existsSync(dir)) return skip(`${dir} does not exist`);
  try {
    await run("groff", ["--version"]);
  } catch {
    return skip("groff is not installed");
  }
  const hash = (f: string) => createHash("sha256").update(f).digest("hex");
  const files = readdirSync(dir)
    .filter((f) => /\.1[a-z]*(\.gz)?$/.test(f))
    .map((f) => ({ f, h: hash(f) }))
    .sort((a, b) => (a.h < b.h ? -1 : a.h > b.h ? 1 : 0))
    .map(({ f }) => f);
  const perFamily = new Map<string, number>();
  const seen = new Set<string>();
  const items: Item[] = [];
  // Rendered a batch at a time (two groff processes at once) until enough items are kept.
  for (let i = 0; i < files.length && items.length < opts.items; i += 16) {
    const batch: Array<{ f: string; raw: Buffer }> = [];
    for (const f of files.slice(i, i + 16)) {
      const family = familyOf(f);
      if ((perFamily.get(family) ?? 0) >= opts.perFamily) {
        dropped.familyCap++;
        continue;
      }
      const file = path.join(dir, f);
      if (lstatSync(file).isSymbolicLink()) {
        dropped.link++;
        continue;
      }
      const raw = f.endsWith(".gz") ? gunzipSync(readFileSync(file)) : readFileSync(file);
      if (raw.length < 200 && /^\.so\s/m.test(raw.toString("latin1"))) {
        dropped.link++;
        continue;
      }
      batch.push({ f, raw });
    }
    const rendered = await mapLimit(batch, 2, ({ raw }) =>
      run("groff", GROFF, raw).catch(() => ""),
    );
    batch.forEach(({ f }, j) => {
      if (items.length >= opts.items) return;
      const family = familyOf(f);
      if ((perFamily.get(family) ?? 0) >= opts.perFamily) {
        dropped.familyCap++;
        return;
      }
      const page = splitManPage(rendered[j] as string);
      if (!page) {
        dropped[rendered[j] ? "noDescription" : "unrendered"]++;
        return;
      }
      if (page.description.split(/\s+/).length < 3) {
        dropped.noDescription++;
        return;
      }
      if (page.body.length < opts.minChars) {
        dropped.tiny++;
        return;
      }
      if (normalise(page.body).includes(normalise(page.description))) {
        dropped.verbatim++;
        return;
      }
      const key = normalise(page.description);
      if (seen.has(key)) {
        dropped.duplicate++;
        return;
      }
      seen.add(key);
      perFamily.set(family, (perFamily.get(family) ?? 0) + 1);
      const name = f.replace(/\.gz$/, "").replace(/\.1[a-z]*$/, "");
      items.push({
        name,
        documentId: idOf(`man:${name}`),
        body: page.body.slice(0, opts.maxChars),
        query: page.description,
      });
    });
  }
  return { name: "man", items: items.sort(byName), dropped, source: dir };
}
