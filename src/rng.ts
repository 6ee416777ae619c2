/**
 * Seedable randomness. Every random choice in wildstream derives from integers (seed, epoch, record, crop...)
 * through `seedOf`, so a stream or a training run can be replayed or resumed exactly without saving RNG
 * objects: the state is the tuple.
 */

/** mulberry32: a small, fast, seedable PRNG returning floats in [0, 1). */
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

/** A 32-bit seed from a tuple of integers (murmur3-style mixing, so nearby tuples give unrelated seeds). */
export function seedOf(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) {
    // Split each part into two 32-bit halves so epochs and record indices above 2^32 still mix in.
    for (const word of [part >>> 0, Math.floor(part / 4294967296) >>> 0]) {
      let k = Math.imul(word, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      h ^= Math.imul(k, 0x1b873593);
      h = (h << 13) | (h >>> 19);
      h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Uniform float in [lo, hi). */
export function uniform(rand: () => number, lo: number, hi: number): number {
  return lo + (hi - lo) * rand();
}

/** Uniform integer in [0, n). */
export function randInt(rand: () => number, n: number): number {
  return Math.min(n - 1, Math.floor(rand() * n));
}

/** Fisher-Yates shuffle in place. */
export function shuffle<T>(items: T[], rand: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randInt(rand, i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}
