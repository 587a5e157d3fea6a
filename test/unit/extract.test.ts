import { describe, expect, it } from "vitest";
import {
  declaredTypeProblem,
  ExtractionError,
  extractDocument,
} from "../../src/modules/ingestion/extract.js";
import { rejectionOf } from "../fixtures/errors.js";
import { buildPdf } from "../fixtures/pdf.js";

const extractionFailure = (p: Promise<unknown>) => rejectionOf(p, ExtractionError);

describe("extractDocument: PDF", () => {
  it("extracts the text of a one-page Helvetica PDF", async () => {
    const doc = await extractDocument(buildPdf(["Hello from a hand-made PDF (v1)"]), "pdf");
    expect(doc).toEqual({
      text: "Hello from a hand-made PDF (v1)",
      pageCount: 1,
      contentType: "application/pdf",
    });
  });

  it("counts pages and keeps them in order, separated by a blank line", async () => {
    const doc = await extractDocument(buildPdf(["Page one text", "Page two text"]), "pdf");
    expect(doc.pageCount).toBe(2);
    expect(doc.text).toBe("Page one text\n\nPage two text");
  });

  it("leaves the caller's buffer intact, so it can still be hashed and stored", async () => {
    const bytes = buildPdf(["Same bytes twice"]);
    const copy = Buffer.from(bytes);
    await extractDocument(bytes, "pdf");
    expect(bytes.equals(copy)).toBe(true);
    expect((await extractDocument(bytes, "pdf")).text).toBe("Same bytes twice");
  });

  it("refuses a password-protected PDF as encrypted", async () => {
    const err = await extractionFailure(
      extractDocument(buildPdf(["secret"], { encrypt: true }), "pdf"),
    );
    expect(err.code).toBe("ingestion.pdf_encrypted");
  });

  it.each([
    ["truncated after the header", (pdf: Buffer) => pdf.subarray(0, 60)],
    ["cut in half", (pdf: Buffer) => pdf.subarray(0, Math.floor(pdf.length / 2))],
    [
      "garbage after the header",
      () => Buffer.concat([Buffer.from("%PDF-1.4\n"), Buffer.alloc(300, 7)]),
    ],
    ["nothing but the header", () => Buffer.from("%PDF-")],
  ])("refuses a PDF %s as corrupt", async (_label, damage) => {
    const err = await extractionFailure(
      extractDocument(damage(buildPdf(["Some text here"])), "pdf"),
    );
    expect(err.code).toBe("ingestion.pdf_corrupt");
  });

  it("refuses a PDF without extractable text (a scan) as having no text", async () => {
    const err = await extractionFailure(extractDocument(buildPdf(["", ""]), "pdf"));
    expect(err.code).toBe("ingestion.no_text");
  });

  it.each([
    ["HTML", "<html><body><p>not a pdf</p></body></html>"],
    ["plain text", "just some words"],
  ])("refuses %s declared as a PDF", async (_label, content) => {
    const err = await extractionFailure(extractDocument(Buffer.from(content), "pdf"));
    expect(err.code).toBe("ingestion.type_mismatch");
  });
});

describe("extractDocument: text and Markdown", () => {
  it("returns UTF-8 text as is, with line endings normalised", async () => {
    const doc = await extractDocument(
      Buffer.from("clé secrète — 秘密 🔑\r\nsecond line\r\n"),
      "txt",
    );
    expect(doc).toEqual({
      text: "clé secrète — 秘密 🔑\nsecond line\n",
      contentType: "text/plain",
    });
  });

  it("takes a Markdown document's first heading as its title and keeps the Markdown", async () => {
    const md = "Intro line\n#hashtag\n\n# Getting started ##\n\nSome *text*.\n\n# Later heading\n";
    const doc = await extractDocument(Buffer.from(md), "md");
    expect(doc).toEqual({ text: md, title: "Getting started", contentType: "text/markdown" });
  });

  it("drops a byte-order mark and decodes UTF-16 files that carry one", async () => {
    const utf8 = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from("with BOM")]);
    expect((await extractDocument(utf8, "txt")).text).toBe("with BOM");
    const utf16 = Buffer.concat([
      Buffer.from([0xff, 0xfe]),
      Buffer.from("Notepad Unicode é", "utf16le"),
    ]);
    expect((await extractDocument(utf16, "txt")).text).toBe("Notepad Unicode é");
  });

  it("accepts ordinary whitespace control characters (tab, form feed)", async () => {
    const doc = await extractDocument(Buffer.from("col1\tcol2\n\fpage two"), "txt");
    expect(doc.text).toBe("col1\tcol2\n\fpage two");
  });

  it.each([
    ["NUL bytes", Buffer.from("text\u0000with\u0000nuls")],
    ["invalid UTF-8", Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x6f, 0x6b])],
    [
      "a PNG image",
      Buffer.from("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489", "hex"),
    ],
    ["mostly control characters", Buffer.from("a\u0001b\u0002c\u0003d\u0004e\u0005")],
  ])("refuses %s as not text", async (_label, bytes) => {
    const err = await extractionFailure(extractDocument(bytes, "md"));
    expect(err.code).toBe("ingestion.type_mismatch");
    expect(err.message).toContain("content does not look like text");
  });

  it("reads a terminal log with colour codes as text, and indexes its words without the codes", async () => {
    const line = (n: number) =>
      `\u001b[32m✓\u001b[0m test ${n} \u001b[1;31mred\u001b[0m \u001b]0;title\u0007ok\n`;
    const log = Buffer.from(Array.from({ length: 50 }, (_, i) => line(i)).join(""));
    expect(declaredTypeProblem(log, "txt")).toBeUndefined();
    const doc = await extractDocument(log, "txt");
    expect(doc.text.split("\n")[0]).toBe("✓ test 0 red ok");
    expect(doc.text).not.toContain("\u001b");
  });

  it("with sniffing off (content sent as text), control characters are kept as text", async () => {
    const bytes = Buffer.from("\u0001\u0002 bell\u0007 \u001b[31mred\u001b[0m");
    expect((await extractDocument(bytes, "txt", { sniff: false })).text).toBe(
      "\u0001\u0002 bell\u0007 red",
    );
    const pdfLike = Buffer.from("%PDF-1.7 is the version the spec names");
    expect((await extractDocument(pdfLike, "md", { sniff: false })).text).toContain("spec names");
  });

  it("declaredTypeProblem makes extraction's checks without extracting", () => {
    expect(declaredTypeProblem(Buffer.from("a\u0001b\u0002c\u0003d"), "txt")?.kind).toBe(
      "not_text",
    );
    expect(declaredTypeProblem(Buffer.from([0x63, 0xe9, 0x20]), "md")?.kind).toBe("not_text");
    expect(declaredTypeProblem(buildPdf(["Hello"]), "txt")?.kind).toBe("is_pdf");
    expect(declaredTypeProblem(Buffer.from("just text"), "pdf")?.kind).toBe("not_pdf");
    expect(declaredTypeProblem(buildPdf(["Hello"]), "pdf")).toBeUndefined();
    expect(declaredTypeProblem(Buffer.from("<p>café</p>"), "html")).toBeUndefined();
  });

  it.each(["txt", "md", "html"] as const)("refuses a PDF declared as %s", async (kind) => {
    const err = await extractionFailure(extractDocument(buildPdf(["Hello"]), kind));
    expect(err.code).toBe("ingestion.type_mismatch");
  });

  it.each([
    ["empty", ""],
    ["blank", "  \n\n\t \n"],
  ])("refuses an %s document as having no text", async (_label, content) => {
    const err = await extractionFailure(extractDocument(Buffer.from(content), "txt"));
    expect(err.code).toBe("ingestion.no_text");
  });
});

const ARTICLE_PAGE = `<!doctype html>
<html><head><title>Tenant isolation explained</title>
<style>.nav { color: red }</style><script>window.tracking = "beacon";</script></head>
<body>
<nav><a href="/">Home</a> <a href="/pricing">Pricing</a> <a href="/about">About us</a></nav>
<header><div class="banner">Sign up for our newsletter</div></header>
<main><article>
<h1>How tenants are isolated</h1>
<p>Each tenant has its own table in the vector store, and every query is filtered by the
tenant identifier that the request carries. Nothing is shared between tenants, not even caches.</p>
<p>The isolation is   checked in tests that create two tenants, write documents for both, and
verify that a search by one never returns the other's chunks, which is what customers rely on.</p>
<script>alert("inline script inside the article")</script>
<p>Keys are scoped too:<br>an API key belongs to one tenant, and its requests act only for it.</p>
</article></main>
<footer>Copyright 2026 Example Corp. Privacy policy. Terms of service.</footer>
</body></html>`;

describe("extractDocument: HTML", () => {
  it("keeps the article and its title, and drops navigation, footer, scripts and styles", async () => {
    const doc = await extractDocument(Buffer.from(ARTICLE_PAGE), "html");
    expect(doc.title).toBe("Tenant isolation explained");
    expect(doc.contentType).toBe("text/html");
    expect(doc.text).toContain("Each tenant has its own table in the vector store");
    expect(doc.text).toContain("never returns the other's chunks");
    for (const noise of [
      "Pricing",
      "About us",
      "newsletter",
      "Copyright",
      "beacon",
      "alert",
      "color: red",
    ]) {
      expect(doc.text).not.toContain(noise);
    }
  });

  it("collapses whitespace within paragraphs and separates paragraphs with a blank line", async () => {
    const doc = await extractDocument(Buffer.from(ARTICLE_PAGE), "html");
    const paragraphs = doc.text.split("\n\n");
    expect(paragraphs).toContain(
      "The isolation is checked in tests that create two tenants, write documents for both, and verify that a search by one never returns the other's chunks, which is what customers rely on.",
    );
    expect(paragraphs).toContain(
      "Keys are scoped too:\nan API key belongs to one tenant, and its requests act only for it.",
    );
  });

  it("keeps preformatted text verbatim and list items apart", async () => {
    const html =
      "<html><body><pre>  indented\n    code</pre><ul><li>first item</li><li>second <b>bold</b> item</li></ul></body></html>";
    const doc = await extractDocument(Buffer.from(html), "html");
    expect(doc.text).toBe("  indented\n    code\n\nfirst item\n\nsecond bold item");
  });

  it("extracts a fragment without <html> or <body>, titled after its URL", async () => {
    const doc = await extractDocument(Buffer.from("<p>A short note.</p>"), "html", {
      sourceUrl: "https://docs.example.com/guide/intro?ref=x",
    });
    expect(doc.text).toBe("A short note.");
    expect(doc.title).toBe("docs.example.com/guide/intro");
  });

  it("decodes a page in the charset its meta tag declares, or windows-1252 when undeclared", async () => {
    const declared = Buffer.from(
      '<html><head><meta charset="iso-8859-1"></head><body><p>café</p></body></html>',
      "latin1",
    );
    expect((await extractDocument(declared, "html")).text).toBe("café");
    const undeclared = Buffer.from("<html><body><p>naïve déjà</p></body></html>", "latin1");
    expect((await extractDocument(undeclared, "html")).text).toBe("naïve déjà");
  });

  it("extracts very deeply nested markup quickly instead of stalling the worker", async () => {
    const depth = 5000;
    const html = `<html><body>${"<div>".repeat(depth)}buried text${"</div>".repeat(depth)}</body></html>`;
    const started = Date.now();
    expect((await extractDocument(Buffer.from(html), "html")).text).toBe("buried text");
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("refuses a page with no text at all", async () => {
    const html =
      "<html><head><title>Empty</title><script>var x = 1;</script></head><body>  </body></html>";
    const err = await extractionFailure(extractDocument(Buffer.from(html), "html"));
    expect(err.code).toBe("ingestion.no_text");
  });
});
