/**
 * Knowledge items: structured content (FAQs, menu items, policies) that a tenant edits field by
 * field. Each item is backed by a document (its fields rendered as Markdown), which ingestion
 * versions, embeds and indexes; the item keeps the link. The document may vanish on its own
 * (DELETE /api/documents/:id), so the link is cleared rather than the item deleted with it.
 */
export const sql = `
create table knowledge_items (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references tenants(id) on delete cascade,
  type text not null check (type in ('faq', 'menu_item', 'policy')),
  fields jsonb not null,
  document_id uuid references documents(id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index knowledge_items_tenant_type_created_idx
  on knowledge_items (tenant_id, type, created_at desc, id desc);
create index knowledge_items_document_idx on knowledge_items (document_id) where document_id is not null;
`;
