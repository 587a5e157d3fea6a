import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { migrate } from "../src/platform/db/index.js";
import { createPgliteDb } from "../src/platform/db/pglite.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** A migrated PGlite data directory, as a tarball: each test file starts from a copy. */
    pgliteTemplate: string;
    /**
     * A DATA_DIR whose embedded database is migrated (and nothing else: no secrets), for the
     * tests that start the CLI to copy (test/fixtures/cli.ts).
     */
    dataDirTemplate: string;
    /** Where the first test that runs the built CLI builds it (test/fixtures/cli.ts). */
    cliBuildDir: string;
  }
}

/**
 * Creating a PGlite database takes seconds (initdb); loading a dump of a migrated one takes a
 * fraction of that. So the suite migrates once and every test file loads the dump.
 */
export default async function setup(project: TestProject) {
  const dir = mkdtempSync(path.join(tmpdir(), "tenantrag-test-"));
  const db = await createPgliteDb();
  await migrate(db);
  const file = path.join(dir, "template.tar");
  writeFileSync(file, Buffer.from(await (await db.dump()).arrayBuffer()));
  await db.close();
  project.provide("pgliteTemplate", file);

  // The same database on disk, where `openDb` puts it under DATA_DIR.
  const dataDir = path.join(dir, "data");
  const onDisk = await createPgliteDb({
    dataDir: path.join(dataDir, "pg"),
    loadDataDir: new Blob([readFileSync(file)]),
  });
  await onDisk.close();
  project.provide("dataDirTemplate", dataDir);
  // Built on demand, not here: most runs (one unit test file, say) never start the CLI.
  project.provide("cliBuildDir", path.join(dir, "build"));

  const skipped = [
    process.env.TEST_DATABASE_URL ? null : "PostgreSQL (set TEST_DATABASE_URL)",
    process.env.TEST_REDIS_URL ? null : "Redis (set TEST_REDIS_URL)",
  ].filter(Boolean);
  if (skipped.length > 0) {
    process.stdout.write(`\nserver-mode tests skipped: no ${skipped.join(", no ")}\n\n`);
  }
  return () => rmSync(dir, { recursive: true, force: true });
}
