import { describe, expect, it } from "vitest";
import { countTokens } from "../../src/platform/embeddings/tokens.js";
import {
  type ChatModelEvent,
  type ChatModelRequest,
  createExtractiveModel,
  generateAll,
  NOTHING_RELEVANT,
  renderPrompt,
} from "../../src/platform/llm/index.js";

const passages = [
  {
    id: 1,
    title: "Opening hours",
    text: "Our shop is open Monday to Friday from 9 am to 6 pm. On Saturdays we open at 10 am and close at 4 pm. We are closed on Sundays and public holidays.",
  },
  {
    id: 2,
    title: "Parking",
    text: "Free parking is available behind the shop.\nThe car park closes at 7 pm.",
  },
];

const request = (question: string, extra: Partial<ChatModelRequest> = {}): ChatModelRequest => ({
  question,
  passages,
  history: [],
  systemPrompt: "Answer from the context.",
  ...extra,
});

async function events(req: ChatModelRequest): Promise<ChatModelEvent[]> {
  const out: ChatModelEvent[] = [];
  for await (const e of createExtractiveModel().generate(req)) out.push(e);
  return out;
}

describe("extractive chat model", () => {
  it("answers with the best-matching sentences, each cited with its passage's [n]", async () => {
    const r = await generateAll(createExtractiveModel(), request("When do you open on Saturdays?"));
    expect(r.noAnswer).toBe(false);
    expect(r.text.startsWith("On Saturdays we open at 10 am and close at 4 pm. [1]")).toBe(true);
    expect(r.citations).toEqual([1]);
    expect(r.support).toBeGreaterThan(0.5);
    for (const m of r.text.matchAll(/\[(\d+)\]/g)) expect(r.citations).toContain(Number(m[1]));
  });

  it("cites a second passage when the question is about it", async () => {
    const r = await generateAll(
      createExtractiveModel(),
      request("Is parking free, and when does the car park close?"),
    );
    expect(r.citations[0]).toBe(2);
    expect(r.text).toContain("Free parking is available behind the shop. [2]");
    expect(r.text).toContain("The car park closes at 7 pm. [2]");
  });

  it("is deterministic: the same request gives the same events", async () => {
    const req = request("Are you open on Sundays?");
    expect(await events(req)).toEqual(await events(req));
  });

  it("streams one sentence per delta, then one done whose text is their concatenation", async () => {
    const evs = await events(request("Is parking free, and when does the car park close?"));
    const deltas = evs.filter((e) => e.type === "delta").map((e) => (e as { text: string }).text);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.every((d) => /\[\d+\]$/.test(d))).toBe(true);
    const last = evs.at(-1);
    expect(last?.type).toBe("done");
    expect(evs.filter((e) => e.type === "done")).toHaveLength(1);
    expect(last?.type === "done" && last.result.text).toBe(deltas.join(""));
  });

  it("says plainly that nothing relevant was found, citing nothing", async () => {
    for (const req of [
      request("How much does a kayak rental cost?"),
      request("When do you open?", { passages: [] }),
      request("???"),
    ]) {
      const r = await generateAll(createExtractiveModel(), req);
      expect(r.text).toBe(NOTHING_RELEVANT);
      expect(r.citations).toEqual([]);
      expect(r.noAnswer).toBe(true);
    }
  });

  it("counts tokens with the real tokenizer: the rendered prompt and the answer", async () => {
    const req = request("When do you open on Saturdays?", {
      history: [{ role: "user", content: "Hello" }],
    });
    const r = await generateAll(createExtractiveModel(), req);
    expect(r.usage.promptTokens).toBe(countTokens(renderPrompt(req)));
    expect(r.usage.completionTokens).toBe(countTokens(r.text));
    // Not length / 4: the tokenizer's count of this prompt differs from that estimate.
    expect(r.usage.promptTokens).not.toBe(Math.ceil(renderPrompt(req).length / 4));
  });

  it("stops when its signal is aborted", async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(
      generateAll(
        createExtractiveModel(),
        request("When do you open on Saturdays?", { signal: ac.signal }),
      ),
    ).rejects.toThrow();
  });
});
