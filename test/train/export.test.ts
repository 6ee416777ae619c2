import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { GraphModel } from '@tensorflow/tfjs-converter';
import { tableFromIPC } from 'apache-arrow';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embed, type Embeddings } from '../../src/eval/embed.js';
import { knnAccuracy } from '../../src/eval/knn.js';
import { patternJpeg } from '../../src/fixtures/images.js';
import { openStore } from '../../src/shards/store.js';
import { startBackend } from '../../src/train/backend.js';
import { latestCheckpoint, restoreModel } from '../../src/train/checkpoint.js';
import { defaultTrainConfig } from '../../src/train/config.js';
import { loadBackbone, type Backbone, type BackboneMetadata } from '../../src/train/model-folder.js';
import { SwavModel } from '../../src/train/model.js';
import { DEFAULT_SWAV } from '../../src/train/swav.js';
import { trainOnStore as train } from '../../src/jobs/train.js';
import { getBytes } from '../../src/shards/store.js';
import { weightsKey } from '../../src/shards/keys.js';
import { runCli } from '../helpers/cli.js';
import { writePhotoDataset } from '../helpers/dataset.js';
import { forgeCheckpoint } from '../helpers/forge-checkpoint.js';
import { startS3, type S3Fixture } from '../helpers/s3-server.js';

let dir: string;
const path = (...p: string[]) => join(dir, ...p);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-export-'));
  const data = await openStore(path('data'));
  await writePhotoDataset(data, { units: 2, perUnit: 8 });
  for (const [split, first, n] of [
    ['train', 0, 16],
    ['test', 100, 8],
  ] as const) {
    for (let i = first; i < first + n; i++) {
      await mkdir(path('eval', split, `c${i % 4}`), { recursive: true });
      await writeFile(path('eval', split, `c${i % 4}`, `${i}.jpg`), await patternJpeg(i, { width: 48, height: 48 }));
    }
  }
  await writeFile(path('eval', 'test', 'c0', 'broken.jpg'), Buffer.from('not a jpeg at all'));
  await startBackend('wasm');
  const config = defaultTrainConfig({
    model: 'custom:3,16,8,2,16',
    batchSize: 8,
    crops: '2x32@0.3-1,2x16@0.1-0.3',
    steps: 3,
    swav: { ...DEFAULT_SWAV, prototypes: 16, hidden: 32, dim: 16, freezePrototypesSteps: 1 },
  });
  await train({ data, out: await openStore(path('ck')), config, backend: 'wasm', threads: 1, logEvery: 1 });
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The latest checkpoint's backbone run in this process (not exported), with the export's input metadata. */
async function checkpointBackbone(metadata: BackboneMetadata): Promise<Backbone & { dispose(): void }> {
  const ckpt = (await latestCheckpoint(await openStore(path('ck')), () => {}))!;
  const model = new SwavModel(ckpt.header.config);
  restoreModel(model, ckpt);
  return {
    model: null as unknown as GraphModel,
    metadata,
    embed: (x) => model.features(x),
    dispose: () => model.dispose(),
  };
}

/** A copy of the export whose float32 weights `alter` changes in place, tensor by tensor (shapes kept). */
async function alteredExport(name: string, alter: (weights: Float32Array) => void): Promise<string> {
  await cp(path('model'), path(name), { recursive: true });
  const { weightsManifest } = JSON.parse(await readFile(path(name, 'model.json'), 'utf8'));
  const file: string = weightsManifest[0].paths[0]; // weights-<hash>.bin
  const bytes = new Uint8Array(await readFile(path(name, file)));
  let offset = 0;
  for (const { dtype, shape } of weightsManifest[0].weights as Array<{ dtype: string; shape: number[] }>) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (dtype === 'float32') alter(new Float32Array(bytes.buffer, offset, n));
    else expect(dtype).toBe('int32'); // also 4 bytes a value: the graph's axes, left as they are
    offset += n * 4;
  }
  expect(offset).toBe(bytes.length);
  // Under the name of the altered bytes' hash, as an export of them would be: a loader refuses a file whose
  // bytes are not its name's hash (damaged on disk), which is not the wrong export this stands for.
  const renamed = weightsKey(createHash('sha256').update(bytes).digest('hex'));
  await rm(path(name, file));
  await writeFile(path(name, renamed), bytes);
  weightsManifest[0].paths = [renamed];
  const json = JSON.parse(await readFile(path(name, 'model.json'), 'utf8'));
  await writeFile(path(name, 'model.json'), JSON.stringify({ ...json, weightsManifest }));
  return path(name);
}

/** Largest difference between the features two backbones give for the same images (same keys, same order); NaN counts as infinite. */
function featureGap(a: Embeddings, b: Embeddings): number {
  expect(a.keys).toEqual(b.keys);
  const gap = Math.max(...a.features.flatMap((f, i) => Array.from(f, (v, j) => Math.abs(v - b.features[i]![j]!))));
  return Number.isNaN(gap) ? Infinity : gap;
}

describe('export, embed, eval knn, plot', () => {
  it('exports a graph model that tfjs loads and that computes the checkpoint backbone exactly', async () => {
    const r = await runCli(['export', path('ck'), '--out', path('model')]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ event: 'export', step: 3, featureDim: 32, inputSize: 32 });
    const init = await runCli(['export', path('ck'), '--out', path('model0'), '--init']);
    expect(JSON.parse(init.stdout)).toMatchObject({ step: 0 });

    await startBackend('cpu');
    const ckpt = (await latestCheckpoint(await openStore(path('ck')), () => {}))!;
    const model = new SwavModel(ckpt.header.config);
    restoreModel(model, ckpt);
    const [trained, random] = [
      await loadBackbone(await openStore(path('model'))),
      await loadBackbone(await openStore(path('model0'))),
    ];
    const x = tf.randomNormal([3, 32, 32, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
    const [ours, graph, untrained] = [model.features(x), trained.embed(x), random.embed(x)];
    expect(graph.shape).toEqual([3, 32]);
    expect(tf.max(tf.abs(tf.sub(ours, graph))).dataSync()[0]).toBeLessThan(1e-4);
    expect(tf.max(tf.abs(tf.sub(ours, untrained))).dataSync()[0]).toBeGreaterThan(1e-3);
    model.dispose();
  }, 60_000);

  it('embeds a dataset and a folder into an Arrow file any Arrow reader opens; bad images are counted', async () => {
    const r = await runCli([
      'embed',
      '--model',
      path('model'),
      path('data'),
      '--out',
      path('data.arrow'),
      '--backend',
      'wasm',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ images: 16, failed: 0, dim: 32 });
    const table = tableFromIPC(await readFile(path('data.arrow')));
    expect(table.numRows).toBe(16);
    expect(table.getChild('key')!.get(0)).toMatch(/^\d{6}-\d{5}$/);
    expect(table.getChild('embedding')!.get(0).length).toBe(32);

    const folder = await runCli([
      'embed',
      '--model',
      path('model'),
      path('eval', 'test'),
      '--out',
      path('test.arrow'),
      '--backend',
      'wasm',
    ]);
    expect(JSON.parse(folder.stdout)).toMatchObject({ images: 8, failed: 1 });
    expect(
      tableFromIPC(await readFile(path('test.arrow')))
        .getChild('key')!
        .toArray(),
    ).toContain('c0/100.jpg');

    // A forward pass too large for the wasm heap is refused before any image is read, not killed for memory.
    const huge = ['--size', '4096', '--batch', '4096', '--backend', 'wasm'];
    const refused = await runCli([
      'embed',
      '--model',
      path('model'),
      path('data'),
      '--out',
      path('huge.arrow'),
      ...huge,
    ]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--batch 4096 at --size 4096 of model .* GiB wasm heap; --batch \d+ fits/);
    expect(await stat(path('huge.arrow')).catch(() => null)).toBeNull();
  }, 60_000);

  it('reports k-NN top-1 on labelled folders, and plots the run', async () => {
    const r = await runCli([
      'eval',
      'knn',
      '--model',
      path('model'),
      '--train',
      path('eval', 'train'),
      '--test',
      path('eval', 'test'),
      '--k',
      '5',
      '--backend',
      'wasm',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const knn = JSON.parse(r.stdout);
    expect(knn).toMatchObject({ event: 'knn', k: 5, train: 16, test: 8, failed: 1 });
    // The exported model must give the k-NN the checkpoint's own backbone gives on the same images.
    const exported = await loadBackbone(await openStore(path('model')));
    const reference = await checkpointBackbone(exported.metadata);
    const ours = {
      train: await embed(reference, path('eval', 'train')),
      test: await embed(reference, path('eval', 'test')),
    };
    expect(knn.top1).toBe(knnAccuracy(ours.train, ours.test, 5).top1);
    for (const split of ['train', 'test'] as const) {
      expect(featureGap(await embed(exported, path('eval', split)), ours[split]), split).toBeLessThan(1e-3);
    }
    // And the comparison tells a wrong export: the same weights permuted, or zeroed, are far off.
    for (const [name, wrong] of [
      ['permuted', (w: Float32Array) => w.reverse()],
      ['zeroed', (w: Float32Array) => w.fill(0)],
    ] as const) {
      const broken = await loadBackbone(await openStore(await alteredExport(name, wrong)));
      expect(featureGap(await embed(broken, path('eval', 'train')), ours.train), name).toBeGreaterThan(1e-2);
    }
    reference.dispose();

    const plot = await runCli(['plot', path('ck'), '--out', path('curves.png')]);
    expect(plot.code, plot.stderr).toBe(0);
    expect(JSON.parse(plot.stdout)).toMatchObject({ points: 3 });
    expect(await sharp(await readFile(path('curves.png'))).metadata()).toMatchObject({
      format: 'png',
      width: 1000,
      height: 680,
    });
  }, 60_000);

  it('writes every output to S3 too: export, embed, plot and an augment preview', async () => {
    const s3: S3Fixture = await startS3(['outputs']);
    try {
      const cli = (args: string[]) => runCli([...args, '--s3-endpoint', s3.endpoint], s3.env);
      const exported = await cli(['export', path('ck'), '--out', 's3://outputs/run/model']);
      expect(exported.code, exported.stderr).toBe(0);
      const embedded = await cli([
        'embed',
        '--model',
        's3://outputs/run/model',
        path('data'),
        '--out',
        's3://outputs/run/emb.arrow',
        '--backend',
        'wasm',
      ]);
      expect(embedded.code, embedded.stderr).toBe(0);
      expect(JSON.parse(embedded.stdout)).toMatchObject({ images: 16, dim: 32 });
      const plotted = await cli(['plot', path('ck'), '--out', 's3://outputs/run/curves.png']);
      expect(plotted.code, plotted.stderr).toBe(0);
      const preview = await cli(['augment', 'preview', path('data'), '--out', 's3://outputs/preview.png']);
      expect(preview.code, preview.stderr).toBe(0);

      Object.assign(process.env, s3.env);
      const bucket = await openStore('s3://outputs', { s3Endpoint: s3.endpoint });
      const table = tableFromIPC(await getBytes(bucket, 'run/emb.arrow'));
      expect(table.numRows).toBe(16);
      expect(table.getChild('embedding')!.get(0).length).toBe(32);
      expect(JSON.parse(Buffer.from(await getBytes(bucket, 'run/model/model.json')).toString()).format).toBe(
        'graph-model',
      );
      for (const png of ['run/curves.png', 'preview.png']) {
        expect((await sharp(Buffer.from(await getBytes(bucket, png))).metadata()).format, png).toBe('png');
      }
      const noKey = await cli([
        'embed',
        '--model',
        's3://outputs/run/model',
        path('data'),
        '--out',
        's3://outputs',
        '--backend',
        'wasm',
      ]);
      expect(noKey.code).toBe(2);
      expect(noKey.stderr).toMatch(/s3:\/\/outputs names no file inside the bucket/);
    } finally {
      await s3.stop();
    }
  }, 180_000);

  it('export --step lists the steps there are when the step is missing', async () => {
    const r = await runCli(['export', path('ck'), '--out', path('x'), '--step', '7']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/no checkpoint of step 7 in file:\/\/\S+; it has step 3\n$/);
  }, 60_000);

  it('export skips a forged checkpoint, naming its damage; every one damaged exits 1 naming each', async () => {
    const ck = (step: number) => path('forged', 'checkpoints', `step-00000000${step}.ckpt`);
    await cp(path('ck'), path('forged'), { recursive: true });
    await cp(ck(3), ck(5));
    await forgeCheckpoint(ck(5), ({ header }) => ({
      header: {
        ...header,
        step: 5,
        tensors: header.tensors.map((t: any, i: number) => (i === 0 ? { ...t, shape: [1, ...t.shape] } : t)),
      },
    }));
    const skipped = await runCli(['export', path('forged'), '--out', path('forged-model')]);
    expect(skipped.code, skipped.stderr).toBe(0);
    expect(skipped.stderr).toMatch(
      /warning: checkpoint checkpoints\/step-000000005\.ckpt is unusable: tensor param:\S+ has shape \[1,[\d,]+\] where the model has/,
    );
    expect(JSON.parse(skipped.stdout)).toMatchObject({ event: 'export', step: 3 });

    const shard = (await readdir(path('data'), { recursive: true })).find((f) => f.endsWith('.arrow'))!;
    await cp(path('data', shard), ck(5));
    await forgeCheckpoint(ck(3), ({ header }) => ({ header: { ...header, config: null } }));
    const none = await runCli(['export', path('forged'), '--out', path('forged-model')]);
    expect(none.code, none.stderr).toBe(1);
    expect(none.stderr).toMatch(
      /every checkpoint in file:\/\/\S+ is damaged: checkpoints\/step-000000005\.ckpt \(not a wildstream checkpoint\); checkpoints\/step-000000003\.ckpt \(header of another shape \(config: [^)]*\)\)\. Nothing to export/,
    );
  }, 60_000);

  it('fails clearly on a store without checkpoints or a folder without a model', async () => {
    const none = await runCli(['export', path('nothing'), '--out', path('x')]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no checkpoint in/);
    const noModel = await runCli([
      'eval',
      'knn',
      '--model',
      path('eval'),
      '--train',
      path('eval', 'train'),
      '--test',
      path('eval', 'test'),
    ]);
    // Named the folder and what to run; it said only "no such object: model.json" (exit 1).
    expect(noModel.code).toBe(2);
    expect(noModel.stderr).toMatch(
      /file:\/\/\S*\/eval\/? holds no exported model \(no model\.json\); export a trained run into it with `wildstream export <run> --out <dir>`/,
    );
    const noEmbed = await runCli([
      'embed',
      path('eval', 'train'),
      '--model',
      path('nowhere'),
      '--out',
      path('e.arrow'),
    ]);
    expect([noEmbed.code, noEmbed.stderr]).toEqual([2, expect.stringMatching(/nowhere holds no exported model/)]);
    await writeFile(path('eval', 'model.json'), '{"format":"layers-model"}');
    await expect(loadBackbone(await openStore(path('eval')))).rejects.toThrow(/holds no wildstream backbone/);
  }, 60_000);
});
