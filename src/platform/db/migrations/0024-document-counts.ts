/**
 * Each tenant's document figures, maintained (ingestion module): how many documents it has
 * and the sum of their `file_size_bytes` — what `count(*)` and `sum(file_size_bytes)` over its
 * documents give, read as one row instead of a scan. The document limit, the `documents` and
 * `storage_bytes` quota levels and the usage ledger's gauges read it.
 *
 * Kept by triggers on `documents`, in the transaction of the write that changes it, so that no
 * writer can forget it (submissions, discards of unstored versions, activation by the worker,
 * deletion, a tenant's purge): a statement that inserts documents adds them (one upsert per
 * statement and tenant), one that deletes them takes them away, an update that changes a
 * document's `file_size_bytes` moves the bytes. An insert locks the tenant's row until its
 * transaction ends: creations of one tenant take turns there, and the document limit is
 * checked on that row after the insert (ingestion.service.ts).
 *
 * Deletes and updates only update an existing row: a tenant's deletion cascades to its
 * documents after its row may be gone, and must not bring it back.
 */
export const sql = `
create table tenant_document_counts (
  tenant_id uuid primary key references tenants(id) on delete cascade,
  documents bigint not null default 0,
  stored_bytes bigint not null default 0
);

insert into tenant_document_counts (tenant_id, documents, stored_bytes)
select t.id, count(d.id), coalesce(sum(d.file_size_bytes), 0)
from tenants t left join documents d on d.tenant_id = t.id
group by t.id;

create function document_counts_inserted() returns trigger language plpgsql as $$
begin
  insert into tenant_document_counts as c (tenant_id, documents, stored_bytes)
  select tenant_id, count(*), coalesce(sum(file_size_bytes), 0) from new_documents group by tenant_id
  on conflict (tenant_id) do update
    set documents = c.documents + excluded.documents,
        stored_bytes = c.stored_bytes + excluded.stored_bytes;
  return null;
end $$;

create function document_counts_deleted() returns trigger language plpgsql as $$
begin
  update tenant_document_counts c
    set documents = c.documents - g.n, stored_bytes = c.stored_bytes - g.bytes
  from (select tenant_id, count(*) as n, coalesce(sum(file_size_bytes), 0) as bytes
        from old_documents group by tenant_id) g
  where c.tenant_id = g.tenant_id;
  return null;
end $$;

create function document_counts_resized() returns trigger language plpgsql as $$
begin
  update tenant_document_counts
    set stored_bytes = stored_bytes + coalesce(new.file_size_bytes, 0) - coalesce(old.file_size_bytes, 0)
  where tenant_id = new.tenant_id;
  return null;
end $$;

create trigger documents_counted_insert after insert on documents
  referencing new table as new_documents
  for each statement execute function document_counts_inserted();
create trigger documents_counted_delete after delete on documents
  referencing old table as old_documents
  for each statement execute function document_counts_deleted();
create trigger documents_counted_resize after update of file_size_bytes on documents
  for each row when (old.file_size_bytes is distinct from new.file_size_bytes)
  execute function document_counts_resized();
`;
