/**
 * Deterministic, varied text for benchmarks: a seeded generator of Markdown articles in the
 * style of a product knowledge base. Words are drawn from a Zipf distribution over a vocabulary
 * of real English words followed by a long tail of generated ones, the way real corpora have a
 * few very common words and many rare ones (which matters for the full-text index and for the
 * hashing embedder). The same seed gives the same text on every machine.
 */

/** mulberry32: small, fast, good enough for benchmark data. Returns floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FUNCTION_WORDS = `the of and to a in is that for it as with on be by this are or from at
an not can your you will which have has when if all more one their use may should each other
into than only also its these so after before most any some how what where there we our they
them then about between over under per while without within both such many every new same`.split(
  /\s+/,
);

const CONTENT_WORDS = `account access order payment refund invoice customer support team product
service plan subscription billing price discount delivery shipping return warranty policy
request ticket agent response message chat email phone store location hours schedule booking
reservation table menu dish ingredient allergen vegetarian vegan gluten dairy recipe kitchen
chef staff manager owner employee training document guide article section page report
dashboard setting option feature integration webhook api key token password login user role
permission admin member tenant workspace project folder file upload download export import
backup restore archive search index query filter result score ranking relevance embedding
vector model language text paragraph sentence word phrase summary answer question feedback
rating review survey analytics metric usage quota limit threshold alert notification reminder
calendar event meeting appointment cancellation change update version release note issue bug
error failure retry timeout latency performance speed memory storage database server network
region cloud device browser mobile desktop application widget button link form field value
format currency country address postcode city street building floor room parking entrance
security privacy consent cookie compliance audit record history log trace session device
monday tuesday wednesday thursday friday saturday sunday morning evening night week month
year holiday season weather temperature coffee tea breakfast lunch dinner dessert wine beer
juice bread cheese salad soup pasta pizza burger sandwich rice noodle chicken beef pork fish
shrimp tofu mushroom tomato onion garlic pepper lemon chocolate vanilla strawberry apple
create open close start stop pause resume enable disable configure connect disconnect verify
confirm approve reject assign escalate resolve submit send receive process handle manage
track monitor measure compare review check validate include exclude require allow prevent
contact reach visit call book order pay charge renew upgrade downgrade migrate install remove
replace repair clean prepare serve deliver pick return exchange keep store share publish edit
available required optional default custom standard premium basic advanced annual monthly
daily weekly free paid local remote public private secure fast slow large small first last
next previous current recent early late main important common special local regional global
clear simple quick easy short long full partial automatic manual active inactive pending
completed failed successful valid invalid unique duplicate primary secondary internal external`.split(
  /\s+/,
);

const ONSETS = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w"];
const CLUSTERS = ["br", "cl", "dr", "fl", "gr", "pl", "pr", "sk", "sl", "st", "str", "tr", "sh"];
const VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "y"];
const CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "rt", "st", "ck", "x"];

/** A pronounceable made-up word: the long tail of product names, places and jargon. */
function madeUpWord(rand: () => number): string {
  const syllables = 2 + Math.floor(rand() * 3);
  let w = "";
  for (let i = 0; i < syllables; i++) {
    const onset = rand() < 0.25 ? pick(rand, CLUSTERS) : pick(rand, ONSETS);
    w += onset + pick(rand, VOWELS) + (i === syllables - 1 ? pick(rand, CODAS) : "");
  }
  return w;
}

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)] as T;
}

export interface TextGenerator {
  /** One word, Zipf-distributed over the vocabulary. */
  word(): string;
  sentence(): string;
  paragraph(): string;
  /** A Markdown article of about `targetBytes` bytes, with `marker` in one of its sentences. */
  markdown(title: string, targetBytes: number, marker?: string): string;
  /** A plain-text chunk of about `targetChars` characters (what the chunker emits). */
  chunk(targetChars: number): string;
  /** A search query: 1–4 words of middling frequency, as users type them. */
  query(): string;
  rand: () => number;
}

/**
 * A generator over a vocabulary of `tailWords` made-up words after the real ones, ranked by a
 * Zipf law with exponent ~1.07 (English text is close to 1).
 */
export function createTextGenerator(seed: number, tailWords = 20_000): TextGenerator {
  const rand = prng(seed);
  const vocabRand = prng(0x5eed); // the vocabulary is the same for every seed
  const seen = new Set<string>([...FUNCTION_WORDS, ...CONTENT_WORDS]);
  const tail: string[] = [];
  while (tail.length < tailWords) {
    const w = madeUpWord(vocabRand);
    if (!seen.has(w)) {
      seen.add(w);
      tail.push(w);
    }
  }
  // Function words first (most frequent), then content words shuffled, then the tail.
  const content = [...CONTENT_WORDS];
  for (let i = content.length - 1; i > 0; i--) {
    const j = Math.floor(vocabRand() * (i + 1));
    [content[i], content[j]] = [content[j] as string, content[i] as string];
  }
  const vocab = [...FUNCTION_WORDS, ...content, ...tail];
  const cumulative = new Float64Array(vocab.length);
  let total = 0;
  for (let r = 0; r < vocab.length; r++) {
    total += 1 / (r + 1) ** 1.07;
    cumulative[r] = total;
  }

  function rankOf(u: number): number {
    const target = u * total;
    let lo = 0;
    let hi = cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cumulative[mid] as number) < target) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  const word = () => vocab[rankOf(rand())] as string;

  function sentence(): string {
    const n = 6 + Math.floor(rand() * 16);
    const words: string[] = [];
    for (let i = 0; i < n; i++) words.push(word());
    if (rand() < 0.15)
      words.splice(1 + Math.floor(rand() * (n - 1)), 0, String(Math.floor(rand() * 500)));
    const first = words[0] as string;
    words[0] = first.charAt(0).toUpperCase() + first.slice(1);
    if (n > 10 && rand() < 0.4) words[Math.floor(n / 2)] += ",";
    return `${words.join(" ")}${rand() < 0.08 ? "?" : "."}`;
  }

  function paragraph(): string {
    const n = 2 + Math.floor(rand() * 5);
    return Array.from({ length: n }, sentence).join(" ");
  }

  function heading(): string {
    const n = 2 + Math.floor(rand() * 4);
    const words = Array.from({ length: n }, word);
    const first = words[0] as string;
    words[0] = first.charAt(0).toUpperCase() + first.slice(1);
    return words.join(" ");
  }

  function block(): string {
    const r = rand();
    if (r < 0.55) return paragraph();
    if (r < 0.75) {
      const n = 3 + Math.floor(rand() * 4);
      return Array.from({ length: n }, () => `- ${sentence()}`).join("\n");
    }
    if (r < 0.85) {
      const n = 3 + Math.floor(rand() * 3);
      return Array.from({ length: n }, (_, i) => `${i + 1}. ${sentence()}`).join("\n");
    }
    if (r < 0.93) {
      const rows = 2 + Math.floor(rand() * 4);
      const lines = ["| Item | Value | Note |", "| --- | --- | --- |"];
      for (let i = 0; i < rows; i++) {
        lines.push(`| ${word()} ${word()} | ${Math.floor(rand() * 1000)} | ${word()} ${word()} |`);
      }
      return lines.join("\n");
    }
    return `\`\`\`\n${word()}.${word()} = "${word()}"\nretry_limit = ${Math.floor(rand() * 10)}\n\`\`\``;
  }

  return {
    rand,
    word,
    sentence,
    paragraph,
    markdown(title, targetBytes, marker) {
      const jitter = 0.8 + rand() * 0.4;
      const target = Math.round(targetBytes * jitter);
      const parts = [`# ${title}`, paragraph()];
      let size = parts.join("\n\n").length;
      while (size < target) {
        const next = rand() < 0.2 ? `## ${heading()}` : block();
        parts.push(next);
        size += next.length + 2;
      }
      if (marker) {
        // Somewhere in the body, so it lands in one chunk, not always the first.
        const at = 1 + Math.floor(rand() * (parts.length - 1));
        parts.splice(at, 0, `Reference code ${marker} applies to this article.`);
      }
      return parts.join("\n\n");
    },
    chunk(targetChars) {
      const parts: string[] = [];
      let size = 0;
      const target = Math.round(targetChars * (0.7 + rand() * 0.3));
      while (size < target) {
        const s = sentence();
        parts.push(s);
        size += s.length + 1;
      }
      return parts.join(" ");
    },
    query() {
      const n = 1 + Math.floor(rand() * 4);
      const words: string[] = [];
      while (words.length < n) {
        // Skip the function words: users search for content words.
        const w = vocab[FUNCTION_WORDS.length + rankOf(rand() * 0.9 + 0.1)] as string | undefined;
        if (w) words.push(w);
      }
      return words.join(" ");
    },
  };
}

/** A token found in no generated text: letters and digits, so the full-text index keeps it. */
export function uniqueMarker(i: number, runSeed: number): string {
  return `zq${runSeed.toString(36)}x${i.toString(36)}`;
}
