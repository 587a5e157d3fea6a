import { createRequire } from "node:module";
import { modelToEncodingMap } from "gpt-tokenizer/mapping";

/**
 * Token counting with OpenAI's real BPE vocabularies (gpt-tokenizer), for billing and limits.
 *
 * Which vocabulary:
 * - `cl100k_base` for every OpenAI embedding model (text-embedding-3-small/-large, ada-002),
 *   for GPT-4 / GPT-3.5, for no model at all (the local embedder), and for models that are not
 *   OpenAI's (nomic-embed-text, bge, llama via Ollama or vLLM). For the last group no OpenAI
 *   vocabulary is exact; cl100k is the closest common ground and keeps counts stable.
 * - `o200k_base` for OpenAI's newer families (gpt-4o, gpt-4.1, gpt-5, o-series, gpt-oss), which
 *   is also gpt-tokenizer's own default for OpenAI names it does not list yet.
 *
 * Special-token text such as "<|endoftext|>" inside a document is counted as ordinary text, as
 * the provider does for user input (gpt-tokenizer would throw on it by default).
 */
export type TokenEncoding = "cl100k_base" | "o200k_base";

interface Encoder {
  countTokens(text: string, options: { disallowedSpecial: Set<string> }): number;
}

// The vocabularies are large (o200k: ~300 ms and ~30 MB to load), so each is loaded on first
// use. `require` keeps countTokens synchronous; the package ships a CommonJS build for it.
const require = createRequire(import.meta.url);
const loaded = new Map<TokenEncoding, Encoder>();
const plainText = { disallowedSpecial: new Set<string>() };

function encoder(encoding: TokenEncoding): Encoder {
  let enc = loaded.get(encoding);
  if (!enc) {
    enc = require(`gpt-tokenizer/encoding/${encoding}`) as Encoder;
    loaded.set(encoding, enc);
  }
  return enc;
}

const O200K_FAMILIES = /^(gpt-4o|gpt-4\.[1-9]|gpt-[5-9]|o[1-9]|chatgpt-|gpt-oss|gpt-realtime)/;

/** The vocabulary used to count tokens for `model` (see the module comment for the rule). */
export function encodingForModel(model?: string): TokenEncoding {
  if (!model) return "cl100k_base";
  const name = model.toLowerCase().replace(/^openai\//, "");
  const known = (modelToEncodingMap as Record<string, string | undefined>)[name];
  if (known) return known.startsWith("o200k") ? "o200k_base" : "cl100k_base";
  return O200K_FAMILIES.test(name) ? "o200k_base" : "cl100k_base";
}

/** Number of tokens in `text` under the vocabulary of `model`. Never an estimate. */
export function countTokens(text: string, model?: string): number {
  if (text.length === 0) return 0;
  return encoder(encodingForModel(model)).countTokens(text, plainText);
}

/** Total tokens over `texts`, each counted on its own as the provider bills them. */
export function countTokensBatch(texts: readonly string[], model?: string): number {
  const enc = encoder(encodingForModel(model));
  let total = 0;
  for (const text of texts) if (text.length > 0) total += enc.countTokens(text, plainText);
  return total;
}
