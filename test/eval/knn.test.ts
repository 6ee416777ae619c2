import { describe, expect, it } from 'vitest';
import { ConfigError, NoDataError } from '../../src/errors.js';
import { knnAccuracy } from '../../src/eval/knn.js';
import { prng } from '../../src/rng.js';

const f = (...v: number[]) => Float32Array.from(v);
const set = (rows: Array<[string, Float32Array]>) => ({
  labels: rows.map(([l]) => l),
  features: rows.map(([, x]) => x),
});

/** Plain weighted k-NN, written independently of knn.ts: cosine, top k, votes exp(sim / T), ties to the smaller label. */
function reference(train: ReturnType<typeof set>, test: ReturnType<typeof set>, k: number, t: number): number {
  const unit = (x: Float32Array) => {
    let n = 0;
    for (const v of x) n += v * v;
    return Array.from(x, (v) => v / (Math.sqrt(n) || 1));
  };
  const a = train.features.map(unit);
  let correct = 0;
  test.features.forEach((x, qi) => {
    const q = unit(x);
    const sims = a.map((r, i) => [r.reduce((s, v, j) => s + v * q[j]!, 0), i] as const);
    sims.sort((p, r) => r[0] - p[0]);
    const votes: Record<string, number> = {};
    for (const [s, i] of sims.slice(0, k)) votes[train.labels[i]!] = (votes[train.labels[i]!] ?? 0) + Math.exp(s / t);
    const best = Object.keys(votes)
      .sort()
      .reduce((b, l) => (votes[l]! > votes[b]! ? l : b));
    if (best === test.labels[qi]) correct++;
  });
  return correct / test.features.length;
}

describe('knnAccuracy', () => {
  it('classifies by the nearest direction, not by length or raw dot product', () => {
    // q is near a's direction but far from it in Euclidean distance, and b's raw dot product with q is larger.
    const train = set([
      ['a', f(100, 1)],
      ['b', f(0.1, 1)],
    ]);
    expect(knnAccuracy(train, set([['a', f(1, 0.05)]]), 1).top1).toBe(1);
    const byDirection = set([
      ['diag', f(100, 100)],
      ['x', f(1, 0)],
    ]);
    expect(knnAccuracy(byDirection, set([['x', f(1, 0.01)]]), 1).top1).toBe(1);
  });

  it('counts the share of test samples whose vote is their label', () => {
    const train = set([
      ['a', f(1, 0, 0)],
      ['b', f(0, 1, 0)],
      ['c', f(0, 0, 1)],
    ]);
    const test = set([
      ['a', f(0.9, 0.1, 0)],
      ['b', f(0.2, 0.8, 0.1)],
      ['c', f(0, 0.1, 3)],
      ['a', f(0, 1, 0.2)],
    ]);
    expect(knnAccuracy(train, test, 1)).toEqual({ top1: 0.75, k: 1, train: 3, test: 4 });
  });

  it('weighs votes by exp(similarity / temperature): one close neighbour outvotes two farther ones at T 0.07', () => {
    const s = Math.sqrt(1 - 0.81);
    const train = set([
      ['near', f(1, 0)],
      ['far', f(0.9, s)],
      ['far', f(0.9, -s)],
      ['away', f(-1, 0)],
    ]);
    // exp(1 / 0.07) = 1.6e6 against 2 exp(0.9 / 0.07) = 7.7e5; at T 1: e = 2.7 against 2 e^0.9 = 4.9.
    expect(knnAccuracy(train, set([['near', f(1, 0)]]), 3).top1).toBe(1);
    expect(knnAccuracy(train, set([['far', f(1, 0)]]), 3, 1).top1).toBe(1);
    // With k 1 only the nearest votes, whatever the temperature.
    expect(knnAccuracy(train, set([['near', f(1, 0)]]), 1, 1).top1).toBe(1);
  });

  it('uses at most the train set as neighbours, and breaks a tied vote towards the smaller label', () => {
    const train = set([
      ['b', f(0, 1)],
      ['a', f(0, -1)],
    ]);
    const r = knnAccuracy(
      train,
      set([
        ['a', f(1, 0)],
        ['a', f(0, 0)],
      ]),
      20,
    );
    expect(r).toEqual({ top1: 1, k: 2, train: 2, test: 2 });
  });

  it('matches an independent reference on random clustered features', () => {
    const rand = prng(7);
    const centres = Array.from({ length: 5 }, () => Array.from({ length: 16 }, () => rand() * 2 - 1));
    const sample = (n: number) =>
      set(
        Array.from({ length: n }, (_, i) => {
          const c = i % 5;
          return [`c${c}`, Float32Array.from(centres[c]!, (v) => v + (rand() * 2 - 1) * 2.5)] as [string, Float32Array];
        }),
      );
    const [train, test] = [sample(200), sample(100)];
    for (const [k, t] of [
      [1, 0.07],
      [5, 0.07],
      [20, 0.07],
      [20, 1],
    ] as const) {
      const got = knnAccuracy(train, test, k, t).top1;
      expect(got, `k ${k} T ${t}`).toBe(reference(train, test, k, t));
      expect(got).toBeGreaterThan(0.2); // better than chance, so the comparison is not between two zeros
      expect(got).toBeLessThan(1); // and not trivially perfect
    }
  });

  it('refuses an empty train or test set with a NoDataError', () => {
    const one = set([['a', f(1)]]);
    for (const [train, test, which] of [
      [set([]), one, 'train'],
      [one, set([]), 'test'],
    ] as const) {
      const err = (() => {
        try {
          return knnAccuracy(train, test);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(NoDataError);
      expect((err as NoDataError).code).toBe('WS_ERR_NO_DATA');
      expect((err as Error).message).toMatch(new RegExp(`at least one train and one test sample; the ${which} set`));
    }
  });

  const train = set([
    ['a', f(1, 0)],
    ['a', f(0.9, 0.1)],
    ['b', f(0, 1)],
  ]);
  const test = set([['b', f(0.1, 0.9)]]);

  it('refuses a k or a temperature out of range with a ConfigError naming it, as --k is refused', () => {
    // k 0 and NaN threw a bare TypeError; -1 and 1.5 gave a score.
    for (const k of [0, NaN, -1, 1.5, 10_001, Infinity])
      expect(() => knnAccuracy(train, test, k), `k ${k}`).toThrow(
        new ConfigError(`k must be an integer from 1 to 10000, got ${k}`),
      );
    for (const t of [0, -0.07, NaN, Infinity])
      expect(() => knnAccuracy(train, test, 1, t), `T ${t}`).toThrow(
        new ConfigError(`temperature must be a finite number > 0, got ${t}`),
      );
    expect(knnAccuracy(train, test, 10_000, 5).k).toBe(3);
  });

  it('refuses rows of different widths, labels that do not match the rows, and unlabelled rows', () => {
    const wrong = (a: ReturnType<typeof set>, b: ReturnType<typeof set>, message: RegExp) => {
      expect(() => knnAccuracy(a, b, 1)).toThrow(ConfigError);
      expect(() => knnAccuracy(a, b, 1)).toThrow(message);
    };
    // A test row of 2 features against train rows of 3 scored 1.
    wrong(
      set([
        ['a', f(1, 0, 0)],
        ['b', f(0, 1, 0)],
      ]),
      set([['a', f(1, 0)]]),
      /^test row 0 has 2 features, train row 0 has 3/,
    );
    wrong(
      set([...train.labels.map((l, i) => [l, train.features[i]!] as [string, Float32Array]), ['b', f(1)]]),
      test,
      /^train row 3 has 1 features/,
    );
    // Fewer labels than rows scored too.
    wrong({ features: train.features, labels: ['a', 'b'] }, test, /^the train set has 3 feature rows but 2 labels/);
    wrong(train, { features: test.features, labels: [] }, /^the test set has 1 feature rows but 0 labels/);
    // '' is the label of an image outside class folders, or of a dataset record.
    wrong(
      set([
        ['a', f(1, 0)],
        ['', f(0, 1)],
      ]),
      test,
      /^train row 1 has no label/,
    );
    wrong(train, set([['', f(1, 0)]]), /^test row 0 has no label/);
  });

  it('refuses a train set of one class, whose vote is always that class', () => {
    const one = set([
      ['a', f(1, 0)],
      ['a', f(0, 1)],
    ]);
    expect(() => knnAccuracy(one, test, 1)).toThrow(ConfigError);
    expect(() => knnAccuracy(one, test, 1)).toThrow(/at least 2 classes .* the train set has 1 \(a\)/);
  });
});
