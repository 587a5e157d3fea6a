import { makeArrowTable } from "@lancedb/lancedb";
import {
  type Table as ArrowTable,
  Field,
  FixedSizeList,
  Float32,
  Int32,
  List,
  Schema,
  Utf8,
} from "apache-arrow";
import { metadataEntries } from "./filters.js";
import type { CatalogRow, ChunkRow, VectorHit } from "./vectors.js";

/** The two tables of a tenant's LanceDB database. */
export type TableName = "chunks" | "catalog";

/**
 * Explicit schemas: inferring them from the first batch would make `vector` a list of float64
 * and let a batch with a missing field create a table without that column.
 */
export function chunksSchema(dimensions: number): Schema {
  return new Schema([
    new Field("id", new Utf8(), false),
    new Field("document_id", new Utf8(), false),
    new Field("version", new Int32(), false),
    new Field("chunk_index", new Int32(), false),
    new Field("text", new Utf8(), false),
    new Field(
      "vector",
      new FixedSizeList(dimensions, new Field("item", new Float32(), true)),
      false,
    ),
    new Field("title", new Utf8(), false),
    new Field("doc_type", new Utf8(), false),
    /** The chunk's metadata as JSON text, returned with hits. */
    new Field("metadata", new Utf8(), false),
    /** The same metadata flattened for filters (filters.ts). */
    new Field("metadata_kv", new List(new Field("item", new Utf8(), true)), false),
  ]);
}

export const catalogSchema = new Schema([
  new Field("document_id", new Utf8(), false),
  new Field("version", new Int32(), false),
  new Field("title", new Utf8(), false),
  new Field("doc_type", new Utf8(), false),
  new Field("summary", new Utf8(), false),
  new Field("chunk_count", new Int32(), false),
]);

/** The columns a hit needs (never the vector: it is the bulk of a row). */
export const HIT_COLUMNS = [
  "id",
  "document_id",
  "version",
  "chunk_index",
  "text",
  "title",
  "doc_type",
  "metadata",
];

export function chunksTable(rows: ChunkRow[], dimensions: number): ArrowTable {
  return makeArrowTable(
    rows.map((r) => ({
      id: r.id,
      document_id: r.documentId,
      version: r.version,
      chunk_index: r.chunkIndex,
      text: r.text,
      vector: r.vector,
      title: r.title,
      doc_type: r.docType,
      metadata: JSON.stringify(r.metadata),
      metadata_kv: metadataEntries(r.metadata),
    })),
    { schema: chunksSchema(dimensions) },
  );
}

export function catalogTable(rows: CatalogRow[]): ArrowTable {
  return makeArrowTable(
    rows.map((row) => ({
      document_id: row.documentId,
      version: row.version,
      title: row.title,
      doc_type: row.docType,
      summary: row.summary,
      chunk_count: row.chunkCount,
    })),
    { schema: catalogSchema },
  );
}

export function toHit(r: Record<string, unknown>, score: number): VectorHit {
  return {
    id: String(r.id),
    documentId: String(r.document_id),
    version: Number(r.version),
    chunkIndex: Number(r.chunk_index),
    text: String(r.text),
    title: String(r.title),
    docType: String(r.doc_type),
    metadata: JSON.parse(String(r.metadata)) as Record<string, string>,
    score,
  };
}

export function toCatalogRow(r: Record<string, unknown>): CatalogRow {
  return {
    documentId: String(r.document_id),
    version: Number(r.version),
    title: String(r.title),
    docType: String(r.doc_type),
    summary: String(r.summary),
    chunkCount: Number(r.chunk_count),
  };
}

/** The vector size of an existing chunks table, to refuse a mismatched configuration early. */
export function vectorDimensions(schema: Schema): number | undefined {
  // Structural, not instanceof: the schema may come from LanceDB's copy of apache-arrow.
  const type = schema.fields.find((f) => f.name === "vector")?.type as { listSize?: number };
  return type?.listSize;
}
