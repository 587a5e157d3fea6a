import { countTokens } from "../embeddings/tokens.js";
import type { ChatModel, ChatModelRequest, ChatModelResult, Passage } from "./chat-model.js";
import { renderPrompt } from "./prompt.js";
import { contentTerms, coverage } from "./terms.js";

/** What the extractive model says when the passages hold nothing about the question. */
export const NOTHING_RELEVANT =
  "I could not find anything about that in the knowledge base. Please rephrase the question, or ask to talk to a person.";

export interface ExtractiveOptions {
  /** Sentences in an answer, at most (3). */
  maxSentences?: number;
  /** Characters of the answer's sentences, at most, citations aside (600); the first is always kept. */
  maxChars?: number;
  /**
   * The share of the question's terms the chosen sentences must cover for an answer (0.34):
   * below it the passages share a word or two with the question by chance, and the model says
   * plainly that it found nothing.
   */
  minCoverage?: number;
}

interface Sentence {
  passage: Passage;
  /** The passage's rank, 0 for the best. */
  rank: number;
  /** Position in the passage, for a stable order among equal scores. */
  position: number;
  text: string;
  terms: string[];
}

const K1 = 1.2;
const B = 0.75;
/** Each rank down costs this share of a sentence's score: retrieval's order breaks near-ties. */
const RANK_DECAY = 0.05;
/** A further sentence must score at least this share of the best one to join the answer. */
const FOLLOWER_SHARE = 0.35;

const segmenter = new Intl.Segmenter("en", { granularity: "sentence" });

/** The sentences of a passage: lines first (headings, list items), then Intl's sentence breaks. */
function sentencesOf(passage: Passage, rank: number): Sentence[] {
  const out: Sentence[] = [];
  let position = 0;
  for (const line of passage.text.split(/\n+/)) {
    for (const { segment } of segmenter.segment(line)) {
      const text = segment.replace(/\s+/g, " ").trim();
      const terms = contentTerms(text);
      if (terms.length === 0) continue;
      out.push({ passage, rank, position, text, terms });
      position += 1;
    }
  }
  return out;
}

/** BM25 of each sentence for the question's terms, the sentences being the collection. */
function bm25(sentences: readonly Sentence[], query: readonly string[]): number[] {
  const n = sentences.length;
  const df = new Map<string, number>();
  for (const s of sentences) for (const t of new Set(s.terms)) df.set(t, (df.get(t) ?? 0) + 1);
  const avgdl = sentences.reduce((sum, s) => sum + s.terms.length, 0) / Math.max(n, 1);
  const q = [...new Set(query)];
  return sentences.map((s) => {
    const tf = new Map<string, number>();
    for (const t of s.terms) tf.set(t, (tf.get(t) ?? 0) + 1);
    let score = 0;
    for (const t of q) {
      const f = tf.get(t);
      if (!f) continue;
      const d = df.get(t) ?? 0;
      const idf = Math.log(1 + (n - d + 0.5) / (d + 0.5));
      score += (idf * f * (K1 + 1)) / (f + K1 * (1 - B + (B * s.terms.length) / avgdl));
    }
    return score * (1 - RANK_DECAY * Math.min(s.rank, 10));
  });
}

/** The sentences that answer best: the top one, then those close enough, within the bounds. */
function choose(
  sentences: readonly Sentence[],
  scores: readonly number[],
  opts: Required<ExtractiveOptions>,
): Sentence[] {
  const ranked = sentences
    .map((s, i) => ({ s, score: scores[i] as number }))
    .filter((x) => x.score > 0)
    .sort((x, y) => y.score - x.score || x.s.rank - y.s.rank || x.s.position - y.s.position);
  const best = ranked[0];
  if (!best) return [];
  const chosen: Sentence[] = [best.s];
  const seen = new Set([best.s.text.toLowerCase()]);
  let chars = best.s.text.length;
  for (const { s, score } of ranked.slice(1)) {
    if (chosen.length >= opts.maxSentences) break;
    if (score < best.score * FOLLOWER_SHARE) break;
    const key = s.text.toLowerCase();
    if (seen.has(key) || chars + s.text.length > opts.maxChars) continue;
    seen.add(key);
    chosen.push(s);
    chars += s.text.length;
  }
  return chosen;
}

/**
 * The offline answerer: the sentences of the retrieved passages that best answer the question
 * (BM25 over the passages' sentences, retrieval's rank breaking near-ties), each followed by
 * its passage's citation `[n]`, best first; or NOTHING_RELEVANT when they cover too little of
 * the question. Deterministic: the same request gives the same answer. Streams one sentence per
 * delta. Tokens are counted with the real tokenizer: the prompt as renderPrompt writes it, and
 * the answer.
 */
export function createExtractiveModel(options: ExtractiveOptions = {}): ChatModel {
  const opts: Required<ExtractiveOptions> = {
    maxSentences: options.maxSentences ?? 3,
    maxChars: options.maxChars ?? 600,
    minCoverage: options.minCoverage ?? 0.34,
  };
  const provider = "tenantrag";
  const model = "extractive";

  function answer(req: ChatModelRequest): {
    pieces: string[];
    result: Omit<ChatModelResult, "usage" | "text">;
  } {
    const query = contentTerms(req.question);
    const sentences = req.passages.flatMap((p, rank) => sentencesOf(p, rank));
    const chosen = query.length > 0 ? choose(sentences, bm25(sentences, query), opts) : [];
    const support = coverage(
      query,
      chosen.flatMap((s) => s.terms),
    );
    if (chosen.length === 0 || support < opts.minCoverage) {
      return {
        pieces: [NOTHING_RELEVANT],
        result: { citations: [], provider, model, noAnswer: true, support },
      };
    }
    const citations: number[] = [];
    const pieces = chosen.map((s, i) => {
      if (!citations.includes(s.passage.id)) citations.push(s.passage.id);
      return `${i === 0 ? "" : " "}${s.text} [${s.passage.id}]`;
    });
    return { pieces, result: { citations, provider, model, noAnswer: false, support } };
  }

  return {
    provider,
    model,
    async *generate(req) {
      const { pieces, result } = answer(req);
      for (const text of pieces) {
        req.signal?.throwIfAborted();
        yield { type: "delta", text };
      }
      const text = pieces.join("");
      yield {
        type: "done",
        result: {
          ...result,
          text,
          usage: {
            promptTokens: countTokens(renderPrompt(req)),
            completionTokens: countTokens(text),
          },
        },
      };
    },
  };
}
