// What a plain JavaScript caller of the eval stage may pass: each bad value a ConfigError naming it, before
// any model loads (not a TypeError from inside the loader), and no k-NN score silently computed from
// values it cannot rank (non-finite features, weights that overflow at a small temperature).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeEmbeddings, type Embeddings } from '../../src/eval/embed.js';
import { knnAccuracy, type LabelledFeatures } from '../../src/eval/knn.js';
import { ConfigError } from '../../src/errors.js';
import { embedImages, evalKnn, type EmbedImagesOptions, type KnnEvalOptions } from '../../src/jobs/eval.js';
import { exportCheckpoint, type ExportOptions } from '../../src/jobs/export.js';
import { openStore, type Store } from '../../src/shards/store.js';

let dir: string;
let nowhere: Store;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-eval-hostile-'));
  nowhere = await openStore(join(dir, 'nothing'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const f = (...v: number[]) => Float32Array.from(v);

describe('knnAccuracy', () => {
  it('votes by similarity at a temperature small enough to overflow exp(similarity / T)', () => {
    // One 'b' row equal to the query, three 'a' rows less similar (cosine 0.6-0.8). As T goes to 0 the vote
    // becomes 1-NN: 'b'. exp(s / 0.001) was Infinity for every row, so 'a' (three Infinities, first by
    // label on the tie) won.
    const train = { features: [f(1, 0), f(0.6, 0.8), f(0.6, 0.8), f(0.8, 0.6)], labels: ['b', 'a', 'a', 'a'] };
    const test = { features: [f(1, 0)], labels: ['b'] };
    for (const t of [0.07, 0.01, 1e-3, 1e-6]) expect(knnAccuracy(train, test, 4, t).top1).toBe(1);
  });

  it('refuses non-finite features, naming the row', () => {
    const train = { features: [f(1, 0), f(0, 1)], labels: ['a', 'b'] };
    // A NaN row never won a comparison: as a query it took the first k rows as its neighbours.
    expect(() => knnAccuracy(train, { features: [f(NaN, 0)], labels: ['a'] }, 1)).toThrow(
      /^test row 0 has the non-finite feature NaN at 0: k-NN needs finite features/,
    );
    expect(() => knnAccuracy({ ...train, features: [f(1, 0), f(0, Infinity)] }, train, 1)).toThrow(
      /^train row 1 has the non-finite feature Infinity at 1/,
    );
  });

  it.each([
    [
      'no set',
      undefined,
      /^the train set must be \{ features: Float32Array\[\], labels: string\[\] \}, got undefined$/,
    ],
    ['no labels', { features: [f(1)] }, /got features an array and labels undefined$/],
    [
      'a null row',
      { features: [null, f(1)], labels: ['a', 'b'] },
      /^train row 0 must be a Float32Array of features, got null$/,
    ],
  ])('refuses a train set with %s as a ConfigError', (_what, train, message) => {
    const test = { features: [f(1)], labels: ['a'] };
    const score = () => knnAccuracy(train as unknown as LabelledFeatures, test);
    expect(score).toThrow(ConfigError);
    expect(score).toThrow(message);
  });
});

describe('writeEmbeddings', () => {
  it('refuses keys that are not strings, and embeddings that are not { keys, features }', async () => {
    const out = join(dir, 'e.arrow');
    const rows = [f(1), f(2)];
    // 1 was written as "1", {} as "[object Object]", null as a null key.
    for (const [keys, got] of [
      [[1, 'b'], '1'],
      [['a', {}], 'an object'],
      [[null, 'b'], 'null'],
    ] as const) {
      const e = { keys, features: rows, labels: [], failed: 0 } as unknown as Embeddings;
      await expect(writeEmbeddings(out, e)).rejects.toThrow(
        new RegExp(`^embeddings key \\d must be a string, got ${got}$`),
      );
    }
    await expect(writeEmbeddings(out, undefined as unknown as Embeddings)).rejects.toThrow(ConfigError);
    await expect(writeEmbeddings(out, { keys: ['a'] } as unknown as Embeddings)).rejects.toThrow(
      /got keys an array and features undefined$/,
    );
  });
});

describe('embedImages, evalKnn and exportCheckpoint', () => {
  it('refuse a model, input or folder of the wrong type, before the model loads', async () => {
    const path = join(dir, 'model');
    const cases: Array<[() => Promise<unknown>, RegExp]> = [
      [
        () => embedImages({ model: path, input: dir } as unknown as EmbedImagesOptions),
        /^model \(the exported backbone\) must be a Store from openStore\(url\), got ".*": open it with `await openStore\(/,
      ],
      [() => embedImages({ model: nowhere } as unknown as EmbedImagesOptions), /^input must be .* got undefined$/],
      [
        () => embedImages({ model: nowhere, input: dir, onSkip: 'x' } as unknown as EmbedImagesOptions),
        /^onSkip must be a function, got "x"$/,
      ],
      [
        () => embedImages(undefined as unknown as EmbedImagesOptions),
        /^embedImages options must be an object, got undefined$/,
      ],
      [
        () => evalKnn({ model: nowhere, train: dir } as unknown as KnnEvalOptions),
        /^test must be a folder of class folders .* got undefined$/,
      ],
      [() => evalKnn({ model: null, train: dir, test: dir } as unknown as KnnEvalOptions), /^model .* got null$/],
    ];
    for (const [call, message] of cases) {
      const run = call();
      await expect(run).rejects.toThrow(ConfigError);
      await expect(run).rejects.toThrow(message);
    }
  });

  it('exportCheckpoint refuses a step that is not an integer >= 0, and stores that are not Stores', async () => {
    // NaN was looked up as a checkpoint name: "no checkpoint of step NaN".
    for (const step of [NaN, -1, 1.5]) {
      await expect(exportCheckpoint({ checkpoints: nowhere, out: nowhere, step })).rejects.toThrow(
        `step must be an integer >= 0, got ${step}`,
      );
    }
    await expect(exportCheckpoint({ checkpoints: dir, out: nowhere } as unknown as ExportOptions)).rejects.toThrow(
      /^checkpoints \(the run's store\) must be a Store from openStore\(url\)/,
    );
    await expect(exportCheckpoint(undefined as unknown as ExportOptions)).rejects.toThrow(ConfigError);
  });
});
