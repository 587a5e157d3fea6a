import { type SelectQueryBuilder, sql } from "kysely";

/** Where the previous page ended: its last row's creation time (milliseconds) and id. */
export interface PageAfter {
  createdAt: Date;
  id: string;
}

/**
 * One page of a typed query, newest first, keyset-paginated on (created_at, id) of the query's
 * table. Compares created_at truncated to milliseconds, because that is what a cursor carries (a
 * JavaScript Date; cursor.ts) while Postgres keeps microseconds. The query's filters stay the
 * caller's; its selection must include `created_at` and `id`, which the next cursor is made of.
 * Ask for `limit + 1` rows to learn whether another page follows.
 */
export function keysetPage<DB, TB extends keyof DB, O extends { created_at: Date; id: string }>(
  query: SelectQueryBuilder<DB, TB, O>,
  page: { after?: PageAfter | undefined; limit: number },
): SelectQueryBuilder<DB, TB, O> {
  const createdAt = sql`date_trunc('milliseconds', created_at)`;
  const after = page.after;
  const filtered = after
    ? query.where(sql<boolean>`(${createdAt}, id) < (${after.createdAt}, ${after.id})`)
    : query;
  return filtered.orderBy(createdAt, "desc").orderBy(sql`id`, "desc").limit(page.limit);
}
