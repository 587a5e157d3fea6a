import { type SelectQueryBuilder, sql } from "kysely";

/** Where the previous page ended: its last row's creation time (milliseconds) and id. */
export interface PageAfter {
  createdAt: Date;
  id: string;
}

/**
 * The SQL of one page of rows, newest first, keyset-paginated on (created_at, id). Compares
 * created_at truncated to milliseconds, because that is what a cursor carries (a JavaScript
 * Date; cursor.ts) while Postgres keeps microseconds. `filters` are column
 * expressions and their values, all of which must match; an undefined value is no filter.
 */
export function pageQuery(opts: {
  select: string;
  from: string;
  filters: Array<[column: string, value: unknown]>;
  after?: PageAfter | undefined;
  limit: number;
}): { sql: string; params: unknown[] } {
  const params: unknown[] = [opts.limit];
  const where: string[] = [];
  for (const [column, value] of opts.filters) {
    if (value === undefined) continue;
    params.push(value);
    where.push(`${column} = $${params.length}`);
  }
  if (opts.after) {
    params.push(opts.after.createdAt, opts.after.id);
    where.push(
      `(date_trunc('milliseconds', created_at), id) < ($${params.length - 1}, $${params.length})`,
    );
  }
  const sql = `select ${opts.select} from ${opts.from}
    ${where.length > 0 ? `where ${where.join(" and ")}` : ""}
    order by date_trunc('milliseconds', created_at) desc, id desc limit $1`;
  return { sql, params };
}

/**
 * One page of a typed query, newest first, keyset-paginated on (created_at, id) of the query's
 * table, with the same millisecond truncation as `pageQuery`. The query's filters stay the
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
