// The typed stage functions behind `export`, `embed` and `eval knn`: a checkpoint's backbone out as a graph
// model that computes the model's features, those features of folders, and k-NN on them; failures are typed.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { START } from '../../src/augment/stream.js';
import { ConfigError, NoDataError } from '../../src/errors.js';
import { patternJpeg } from '../../src/fixtures/images.js';
import { embedImages, evalKnn } from '../../src/jobs/eval.js';
import { exportCheckpoint } from '../../src/jobs/export.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { startBackend } from '../../src/train/backend.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import { defaultTrainConfig } from '../../src/train/config.js';
import { loadBackbone } from '../../src/train/model-folder.js';
import { SwavModel } from '../../src/train/model.js';
import { DEFAULT_SWAV } from '../../src/train/swav.js';

let dir: string;
let ck: Store;
const path = (...p: string[]) => join(dir, ...p);
const config = defaultTrainConfig({
  model: 'custom:2,8,8,2,8',
  batchSize: 4,
  crops: '2x24@0.3-1',
  steps: 4,
  swav: { ...DEFAULT_SWAV, prototypes: 8, hidden: 16, dim: 8, freezePrototypesSteps: 1, cropsForAssign: [0, 1] },
});

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-jobs-export-'));
  for (const [split, first, n] of [
    ['train', 0, 8],
    ['test', 100, 4],
  ] as const) {
    for (let i = first; i < first + n; i++) {
      await mkdir(path('eval', split, `c${i % 2}`), { recursive: true });
      await writeFile(path('eval', split, `c${i % 2}`, `${i}.jpg`), await patternJpeg(i, { width: 40, height: 40 }));
    }
  }
  await writeFile(path('eval', 'test', 'c0', 'broken.jpg'), Buffer.from('not a jpeg'));
  await mkdir(path('empty'));
  await startBackend('cpu');
  // A checkpoint whose weights differ from the seeded initialisation, without a training run.
  const model = new SwavModel(config);
  for (const v of model.ps.vars.values()) v.assign(tf.add(v, 0.01));
  ck = await openStore(path('ck'));
  await saveCheckpoint(ck, model, 2, START);
  model.dispose();
}, 60_000);
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('exportCheckpoint', () => {
  it('writes a backbone computing the checkpoint features; --init the seeded ones; bad steps and stores are ConfigErrors', async () => {
    const meta = await exportCheckpoint({ checkpoints: ck, out: await openStore(path('model')) });
    expect(meta).toMatchObject({ model: 'custom:2,8,8,2,8', step: 2, inputSize: 24, featureDim: 16 });
    expect(await exportCheckpoint({ checkpoints: ck, out: await openStore(path('model0')), init: true })).toMatchObject(
      { step: 0 },
    );

    const x = tf.randomNormal([2, 24, 24, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
    const [trained, seeded] = [
      await loadBackbone(await openStore(path('model'))),
      await loadBackbone(await openStore(path('model0'))),
    ];
    const fresh = new SwavModel(config);
    const [a, b, c] = [trained.embed(x), seeded.embed(x), fresh.features(x)];
    expect(a.shape).toEqual([2, 16]);
    expect(tf.max(tf.abs(tf.sub(b, c))).dataSync()[0]).toBeLessThan(1e-4); // --init: the config's seeded weights
    expect(tf.max(tf.abs(tf.sub(a, c))).dataSync()[0]).toBeGreaterThan(1e-3);
    for (const v of fresh.ps.vars.values()) v.assign(tf.add(v, 0.01)); // now the checkpoint's weights
    expect(tf.max(tf.abs(tf.sub(a, fresh.features(x)))).dataSync()[0]).toBeLessThan(1e-4);
    fresh.dispose();

    await expect(exportCheckpoint({ checkpoints: ck, out: await openStore(path('x')), step: 9 })).rejects.toThrow(
      /no checkpoint of step 9 in .*; it has step 2$/,
    );
    await expect(
      exportCheckpoint({ checkpoints: await openStore(path('empty')), out: await openStore(path('x')) }),
    ).rejects.toThrow(ConfigError);
  }, 60_000);
});

describe('embedImages and evalKnn', () => {
  it('embeds a folder into an Arrow file, counting images that do not decode', async () => {
    const r = await embedImages({
      model: await openStore(path('model')),
      input: path('eval', 'test'),
      out: path('test.arrow'),
      backend: 'cpu',
    });
    expect(r.embeddings.keys).toEqual(['c0/100.jpg', 'c0/102.jpg', 'c1/101.jpg', 'c1/103.jpg']);
    expect([r.embeddings.failed, r.metadata.featureDim]).toEqual([1, 16]);
    expect(r.written).toMatch(/test\.arrow$/);
    const table = tableFromIPC(await readFile(path('test.arrow')));
    expect(table.numRows).toBe(4);
    expect(table.getChild('embedding')!.get(0).length).toBe(16);
  }, 60_000);

  it('scores k-NN on labelled folders; a folder with no image is a NoDataError naming it', async () => {
    const model = await openStore(path('model'));
    const r = await evalKnn({ model, train: path('eval', 'train'), test: path('eval', 'test'), k: 3, backend: 'cpu' });
    expect(r).toMatchObject({ k: 3, train: 8, test: 4, failed: 1, model: 'custom:2,8,8,2,8', step: 2 });
    expect(r.top1 * 4).toBe(Math.round(r.top1 * 4));
    const err = await evalKnn({ model, train: path('eval', 'train'), test: path('empty'), backend: 'cpu' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NoDataError);
    expect((err as Error).message).toBe(
      `k-NN needs images in the test folder ${path('empty')}: it has none that decode (0 failed)`,
    );
  }, 60_000);
});
