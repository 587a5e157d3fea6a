/**
 * A tenant's hybrid-search settings (`tenant_config`): how the vector and full-text lists are
 * fused (`search_fusion`: `rrf` by rank, `weighted` by min-max normalised scores) and how much
 * the full-text list counts (`search_text_weight`, 0–1; the vector list weighs the rest).
 *
 * Both nullable, null meaning "the default for the tenant's embedder", chosen by the search
 * module (modules/search/fusion.ts), so existing tenants get the measured defaults without a
 * backfill, and a default that improves reaches every tenant that did not choose.
 */
export const sql = `
alter table tenant_config
  add column search_fusion text check (search_fusion in ('rrf', 'weighted')),
  add column search_text_weight double precision
    check (search_text_weight >= 0 and search_text_weight <= 1);
`;
