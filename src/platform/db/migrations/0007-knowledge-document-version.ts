/**
 * The version of its document that an item's fields were submitted as. Concurrent updates of
 * one item submit versions in some order and save fields in another; only fields of a version
 * at least as new as the saved one are kept, so the fields always match the newest submission.
 */
export const sql = `
alter table knowledge_items add column document_version integer;
`;
