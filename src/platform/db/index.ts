import path from "node:path";
import type { Config } from "../../config.js";
import type { Db } from "./db.js";
import { createPgliteDb } from "./pglite.js";
import { createPostgresDb } from "./postgres.js";

export { sql } from "kysely";
export type { Db, InTransaction, Queryable } from "./db.js";
export { inTransaction, isUniqueViolation } from "./db.js";
export { kysely } from "./kysely.js";
export { migrate, pendingMigrations } from "./migrate.js";
export { keysetPage, type PageAfter } from "./page.js";
export type { Database, Patch, Row } from "./schema.js";

/** Opens the store the configuration names: PostgreSQL when DATABASE_URL is set, else PGlite. */
export async function openDb(config: Config): Promise<Db> {
  if (config.databaseUrl) {
    return createPostgresDb({ url: config.databaseUrl, poolSize: config.databasePoolSize });
  }
  return createPgliteDb({ dataDir: path.join(config.dataDir, "pg") });
}
