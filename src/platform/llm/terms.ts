/**
 * The words of a text that carry its meaning, for the extractive model's sentence scoring and
 * the chat confidence: letters and digits (any script), lower-cased, accents folded, English
 * stop words and one-letter words left out, a plural `s` taken off. Deliberately small: it
 * compares a question with sentences of the same knowledge base, not documents across languages.
 */

const STOP_WORDS = new Set(
  (
    "a about above after again against all am an and any are as at be because been before being " +
    "below between both but by can could did do does doing down during each few for from further " +
    "had has have having he her here hers herself him himself his how i if in into is it its itself " +
    "just me more most my myself no nor not now of off on once only or other our ours ourselves out " +
    "over own same she should so some such than that the their theirs them themselves then there " +
    "these they this those through to too under until up very was we were what when where which " +
    "while who whom why will with would you your yours yourself yourselves tell please know want " +
    "like get also us let may might must shall"
  ).split(" "),
);

const WORD_RE = /[\p{L}\p{N}]+/gu;
const MARKS_RE = /\p{M}+/gu;

/** A word as compared: lower case, accents folded, a plural `s` removed (not from `ss`, `us`, `is`). */
export function normalizeTerm(word: string): string {
  const w = word.toLowerCase().normalize("NFKD").replace(MARKS_RE, "");
  if (w.length > 3 && w.endsWith("ies")) return `${w.slice(0, -3)}y`;
  if (w.length > 3 && w.endsWith("s") && !/(ss|us|is)$/.test(w)) return w.slice(0, -1);
  return w;
}

/** The meaningful terms of `text`, in order, repeats kept (term frequencies need them). */
export function contentTerms(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(WORD_RE)) {
    const raw = m[0].toLowerCase();
    if (raw.length < 2 || STOP_WORDS.has(raw)) continue;
    out.push(normalizeTerm(raw));
  }
  return out;
}

/** The share of `wanted`'s distinct terms that occur in `found` (0 when `wanted` has none). */
export function coverage(wanted: readonly string[], found: Iterable<string>): number {
  const need = new Set(wanted);
  if (need.size === 0) return 0;
  const have = new Set(found);
  let hit = 0;
  for (const t of need) if (have.has(t)) hit += 1;
  return hit / need.size;
}
