import {
  type ChatModelResult,
  contentTerms,
  coverage,
  type Passage,
} from "../../platform/llm/index.js";

/**
 * How far a turn's answer can be trusted, 0…1, from one retrieval and one generation signal:
 *
 * - retrieval: the share of the question's content terms (platform/llm/terms.ts) that occur
 *   in the passages retrieval kept (after the tenant's minimum score): does the knowledge base
 *   speak of what was asked at all;
 * - generation: the model's `support` (the extractive model: the share of the question's
 *   terms its cited sentences cover): does the answer address it.
 *
 * confidence = (retrieval + generation) / 2, rounded to 3 decimals; 0 when the model found
 * nothing to answer with or the answer cites no passage. Below the tenant's
 * `confidenceThreshold` a turn is low-confidence (escalation will act on it).
 */
export function confidenceOf(
  question: string,
  passages: readonly Passage[],
  result: Pick<ChatModelResult, "noAnswer" | "support">,
  cited: number,
): number {
  if (result.noAnswer || cited === 0) return 0;
  const terms = contentTerms(question);
  const retrieval = coverage(
    terms,
    passages.flatMap((p) => contentTerms(`${p.title} ${p.text}`)),
  );
  const generation = Math.min(1, Math.max(0, result.support));
  return Math.round(((retrieval + generation) / 2) * 1000) / 1000;
}
