import { Readability } from "@mozilla/readability";
import { parseHTML } from "linkedom";

/**
 * The readable text of an HTML page: Readability picks the main content (navigation, footers
 * and sidebars go), linkedom provides the DOM, and the text keeps the page's paragraphs.
 */

/**
 * The main text of a page and its title (Readability's, else `<title>`, else the first `<h1>`,
 * else `sourceUrl`). When Readability finds no article, the whole body minus scripts, styles
 * and the like. The text may be empty; the caller decides what that means.
 */
export function htmlToDocument(html: string, sourceUrl?: string): { text: string; title?: string } {
  const article = readArticle(html);
  let text = article?.content ? htmlToText(parseDocument(article.content).body) : "";
  const page = parseDocument(html);
  if (text === "") text = htmlToText(page.body);
  const title =
    clean(article?.title) ||
    clean(page.querySelector("title")?.textContent) ||
    clean(page.querySelector("h1")?.textContent) ||
    urlTitle(sourceUrl);
  return { text, ...(title ? { title } : {}) };
}

/** The charset a page declares in a `<meta>` tag in its first KiB, if TextDecoder knows it. */
export function declaredCharset(bytes: Buffer): string | undefined {
  const head = bytes.subarray(0, 1024).toString("latin1");
  const label = /<meta[^>]+charset\s*=\s*["']?\s*([\w-]+)/i.exec(head)?.[1];
  if (!label) return undefined;
  try {
    return new TextDecoder(label).encoding;
  } catch {
    return undefined;
  }
}

/** Elements that never hold readable text. */
const NON_CONTENT =
  "script, style, noscript, template, svg, canvas, iframe, object, embed, head, title";
/** Elements that start a new paragraph in the extracted text. */
const BLOCKS = new Set(
  "address article aside blockquote dd details dialog div dl dt fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tbody thead tfoot tr ul".split(
    " ",
  ),
);

/** The slice of the DOM this module uses (the project compiles without the DOM lib). */
interface DomNode {
  nodeType: number;
  localName?: string;
  textContent: string | null;
  childNodes: ArrayLike<DomNode>;
}
interface DomElement extends DomNode {
  remove(): void;
  querySelector(selector: string): DomElement | null;
  querySelectorAll(selector: string): ArrayLike<DomElement>;
}
interface DomDocument {
  body: DomElement | null;
  querySelector(selector: string): DomElement | null;
}
const ELEMENT_NODE = 1;
const TEXT_NODE = 3;

/**
 * Readability's cost grows steeply with nesting depth (a 300-deep page takes seconds, a few
 * thousand never finishes), so deep or huge pages skip it and take the body-text fallback:
 * a hostile page must not stall a worker.
 */
const READABILITY_MAX_DEPTH = 100;
const READABILITY_MAX_ELEMENTS = 50_000;

function readArticle(html: string): { title?: string; content?: string } | undefined {
  const doc = parseDocument(html);
  if (deeperThan(doc.body, READABILITY_MAX_DEPTH)) return undefined;
  try {
    // biome-ignore lint/suspicious/noExplicitAny: Readability is typed against the DOM lib.
    const reader = new Readability(doc as any, { maxElemsToParse: READABILITY_MAX_ELEMENTS });
    const article = reader.parse();
    return article
      ? { title: article.title ?? undefined, content: article.content ?? undefined }
      : undefined;
  } catch {
    return undefined; // too many elements, or markup Readability gives up on
  }
}

function deeperThan(root: DomElement | null, limit: number): boolean {
  const stack: Array<[DomNode, number]> = root ? [[root, 0]] : [];
  for (let entry = stack.pop(); entry; entry = stack.pop()) {
    const [node, depth] = entry;
    if (depth > limit) return true;
    for (const child of Array.from(node.childNodes)) {
      if (child.nodeType === ELEMENT_NODE) stack.push([child, depth + 1]);
    }
  }
  return false;
}

/**
 * linkedom is not a full HTML5 parser: without `<html>`/`<body>` tags it builds no body, so a
 * fragment is wrapped in a document first.
 */
function parseDocument(html: string): DomDocument {
  const source = /<body[\s>]/i.test(html)
    ? html
    : `<!DOCTYPE html><html><head></head><body>${html.replace(/^\s*<!doctype[^>]*>/i, "")}</body></html>`;
  const { document } = parseHTML(source);
  return document as unknown as DomDocument;
}

/**
 * The readable text under `root`: whitespace collapsed as a browser renders it, a blank line
 * between blocks, `<br>` kept as a line break and `<pre>` kept verbatim. Iterative, so that
 * absurdly deep markup cannot overflow the stack.
 */
function htmlToText(root: DomElement | null | undefined): string {
  if (!root) return "";
  for (const el of Array.from(root.querySelectorAll(NON_CONTENT))) el.remove();
  const blocks: string[] = [];
  let line = "";
  const flush = () => {
    const text = line
      .split("\n")
      .map((l) => l.replace(/ +/g, " ").trim())
      .filter((l) => l !== "")
      .join("\n");
    if (text !== "") blocks.push(text);
    line = "";
  };
  // `null` marks the end of a block element: flush what its children wrote.
  const stack: Array<DomNode | null> = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (node === null) {
      flush();
      continue;
    }
    if (node === undefined) break;
    if (node.nodeType === TEXT_NODE) {
      // Source line breaks are just whitespace; only <br> breaks a line.
      line += (node.textContent ?? "").replace(/\s+/g, " ");
      continue;
    }
    if (node.nodeType !== ELEMENT_NODE) continue;
    const tag = (node.localName ?? "").toLowerCase();
    if (tag === "br") {
      line += "\n";
      continue;
    }
    if (tag === "pre") {
      flush();
      const text = (node.textContent ?? "").replace(/\r\n?/g, "\n").replace(/^\n+|\s+$/g, "");
      if (text !== "") blocks.push(text);
      continue;
    }
    if (BLOCKS.has(tag)) {
      flush();
      stack.push(null);
    } else if (tag === "td" || tag === "th") {
      line += " ";
    }
    const children = Array.from(node.childNodes);
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i] as DomNode);
  }
  flush();
  return blocks.join("\n\n");
}

function clean(text: string | null | undefined): string {
  return (text ?? "").replace(/\s+/g, " ").trim();
}

function urlTitle(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    const { hostname, pathname } = new URL(url);
    return `${hostname}${pathname === "/" ? "" : pathname}`;
  } catch {
    return undefined;
  }
}
