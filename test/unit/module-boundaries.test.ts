import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * The import rules of src/ (docs/architecture.md, "Layout"), checked over the real import graph:
 * - a module (src/modules/<name>/) is imported from outside only through its index.ts;
 * - in a module, only the HTTP-facing files (routes, zod schemas, the multipart reader) import
 *   src/http/, and only its shared helpers (the request's tenant context, shared schemas, the
 *   text rule); services, stores and jobs never do;
 * - src/platform/ knows no module and no HTTP;
 * - modules do not import each other in a cycle.
 * Every import counts: type-only ones, `export … from`, and dynamic `import()`.
 */

const SRC = path.resolve(import.meta.dirname, "../../src");

/** What a module file may import from src/http/, and which module files may. */
const HTTP_HELPERS = new Set([
  "http/auth-hook.ts",
  "http/schemas.ts",
  "http/stream.ts",
  "http/text.ts",
]);
const HTTP_FACING = /(\.routes|\.schemas)\.ts$|\/multipart\.ts$/;

type Graph = Map<string, string[]>;

/** Every .ts file under src/ (paths relative to src/) with the src/ files it imports. */
function importGraph(root: string): Graph {
  const graph: Graph = new Map();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) {
        const { importedFiles } = ts.preProcessFile(readFileSync(full, "utf8"), true, true);
        const targets = importedFiles
          .map((f) => f.fileName)
          .filter((spec) => spec.startsWith("."))
          .map((spec) =>
            path
              .relative(root, path.resolve(path.dirname(full), spec))
              .replace(/\.js$/, ".ts")
              .split(path.sep)
              .join("/"),
          );
        graph.set(path.relative(root, full).split(path.sep).join("/"), targets);
      }
    }
  };
  walk(root);
  return graph;
}

const moduleOf = (file: string) => /^modules\/([^/]+)\//.exec(file)?.[1];

/** Strongly connected groups of more than one module (Tarjan), each sorted. */
function moduleCycles(edges: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
      }
    }
    if (low.get(v) === index.get(v)) {
      const group: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      if (group.length > 1) cycles.push(group.sort());
    }
  };
  for (const v of edges.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

/** Every broken rule, one line each; the cycles, allowed ones included, apart. */
function checkBoundaries(graph: Graph): { violations: string[]; cycles: string[][] } {
  const violations: string[] = [];
  const edges = new Map<string, Set<string>>();
  const modules = new Set([...graph.keys()].map(moduleOf).filter((m) => m !== undefined));
  for (const m of modules) {
    if (!graph.has(`modules/${m}/index.ts`)) violations.push(`modules/${m} has no index.ts`);
  }
  for (const [file, targets] of graph) {
    const from = moduleOf(file);
    for (const target of targets) {
      const to = moduleOf(target);
      if (to !== undefined && to !== from) {
        if (target !== `modules/${to}/index.ts`)
          violations.push(`${file} imports ${target}: import modules/${to}/index.ts instead`);
        if (from !== undefined) {
          if (!edges.has(from)) edges.set(from, new Set());
          edges.get(from)?.add(to);
        }
      }
      if (target.startsWith("http/")) {
        if (from !== undefined && !(HTTP_FACING.test(file) && HTTP_HELPERS.has(target)))
          violations.push(
            `${file} imports ${target}: only a module's routes, schemas and multipart reader import src/http/, and only ${[...HTTP_HELPERS].join(", ")}`,
          );
        if (file.startsWith("platform/")) violations.push(`${file} imports ${target}`);
      }
      if (file.startsWith("platform/") && to !== undefined)
        violations.push(`${file} imports ${target}: platform code knows no module`);
    }
  }
  return { violations, cycles: moduleCycles(edges) };
}

describe("module boundaries of src/", () => {
  const graph = importGraph(SRC);
  const { violations, cycles } = checkBoundaries(graph);

  it("reads the real graph", () => {
    expect(graph.get("context.ts")).toContain("modules/ingestion/index.ts");
  });

  it("has no deep import, no HTTP import outside routes and schemas, no module in platform", () => {
    expect(violations).toEqual([]);
  });

  it("has no cycle between modules", () => {
    expect(cycles).toEqual([]);
  });
});

describe("the boundary check itself", () => {
  const graph = (files: Record<string, string[]>): Graph => new Map(Object.entries(files));
  const base = {
    "context.ts": ["modules/a/index.ts", "modules/b/index.ts"],
    "modules/a/index.ts": ["modules/a/a.service.ts", "modules/a/a.routes.ts"],
    "modules/a/a.service.ts": ["modules/b/index.ts", "errors.ts"],
    "modules/a/a.routes.ts": ["http/auth-hook.ts", "modules/a/a.service.ts"],
    "modules/b/index.ts": ["modules/b/b.store.ts"],
    "modules/b/b.store.ts": ["platform/db/index.ts"],
    "platform/db/index.ts": [],
  };

  it("passes a graph that keeps the rules", () => {
    expect(checkBoundaries(graph(base))).toEqual({ violations: [], cycles: [] });
  });

  it("finds a deep import, from a module or from the composition root", () => {
    const { violations } = checkBoundaries(
      graph({
        ...base,
        "context.ts": ["modules/b/b.store.ts"],
        "modules/a/a.service.ts": ["modules/b/b.store.ts"],
      }),
    );
    expect(violations).toEqual([
      "context.ts imports modules/b/b.store.ts: import modules/b/index.ts instead",
      "modules/a/a.service.ts imports modules/b/b.store.ts: import modules/b/index.ts instead",
    ]);
  });

  it("finds a type-only deep import and an export-from in real source", () => {
    const source = [
      'import type { Row } from "../b/b.store.js";',
      'export { thing } from "../b/b.service.js";',
    ].join("\n");
    const specs = ts.preProcessFile(source, true, true).importedFiles.map((f) => f.fileName);
    expect(specs).toEqual(["../b/b.store.js", "../b/b.service.js"]);
  });

  it("finds HTTP imports outside routes, or of HTTP internals", () => {
    const { violations } = checkBoundaries(
      graph({
        ...base,
        "modules/a/a.service.ts": ["http/auth-hook.ts"],
        "modules/a/a.routes.ts": ["http/error-handler.ts"],
        "platform/db/index.ts": ["http/schemas.ts", "modules/a/index.ts"],
      }),
    );
    expect(violations.map((v) => v.split(":")[0])).toEqual([
      "modules/a/a.service.ts imports http/auth-hook.ts",
      "modules/a/a.routes.ts imports http/error-handler.ts",
      "platform/db/index.ts imports http/schemas.ts",
      "platform/db/index.ts imports modules/a/index.ts",
    ]);
  });

  it("finds a module without an index and a cycle between modules", () => {
    const { violations, cycles } = checkBoundaries(
      graph({
        ...base,
        "modules/b/b.store.ts": ["modules/a/index.ts"],
        "modules/c/c.service.ts": [],
      }),
    );
    expect(violations).toEqual(["modules/c has no index.ts"]);
    expect(cycles).toEqual([["a", "b"]]);
  });
});
