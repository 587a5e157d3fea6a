import { prng } from "./text.js";

/**
 * A seeded Gaussian mixture on the unit sphere, as real embeddings cluster by topic: `clusters`
 * random unit centres in `dimensions`; each vector is a centre plus isotropic noise of norm
 * ≈ spread / 100, then normalised. Queries are drawn from the same mixture.
 */
export function createMixture(opts: {
  seed: number;
  clusters: number;
  spread: number;
  dimensions: number;
}): () => number[] {
  const rand = prng(opts.seed);
  const gauss = () => {
    const u = Math.max(rand(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  };
  const unit = (v: number[]) => {
    const n = Math.hypot(...v);
    return v.map((x) => x / n);
  };
  const centres = Array.from({ length: opts.clusters }, () =>
    unit(Array.from({ length: opts.dimensions }, gauss)),
  );
  const sigma = opts.spread / 100 / Math.sqrt(opts.dimensions);
  return () => {
    const c = centres[Math.floor(rand() * centres.length)] as number[];
    return unit(c.map((x) => x + sigma * gauss()));
  };
}
