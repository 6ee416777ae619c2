// trainOnStore: a dataset's multi-crop loader feeding train(). A run stopped by its signal and resumed through
// trainOnStore reaches the weights of an uninterrupted run, because the loader reopens at the checkpoint's cursor.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NoDataError } from '../../src/errors.js';
import { threadsWarning, trainOnStore } from '../../src/jobs/train.js';
import { FLAG_NAMES } from '../../src/options/declare.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { startBackend } from '../../src/train/backend.js';
import { listCheckpoints, loadCheckpoint } from '../../src/train/checkpoint.js';
import { defaultTrainConfig } from '../../src/train/config.js';
import { DEFAULT_SWAV } from '../../src/train/swav.js';
import { writePhotoDataset } from '../helpers/dataset.js';

let dir: string;
let data: Store;

const config = defaultTrainConfig({
  model: 'custom:2,8,8,2,8',
  batchSize: 4,
  crops: '2x16@0.3-1',
  steps: 6,
  swav: { ...DEFAULT_SWAV, prototypes: 8, hidden: 16, dim: 8, freezePrototypesSteps: 1, cropsForAssign: [0, 1] },
});

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-jobs-train-'));
  data = await openStore(join(dir, 'data'));
  await writePhotoDataset(data, { units: 2, perUnit: 6 }); // 12 records: batches of 4 cross an epoch by step 6
  await startBackend('wasm');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function weights(out: Store): Promise<Map<string, Float32Array>> {
  const [latest] = await listCheckpoints(out);
  return (await loadCheckpoint(out, latest!.key)).values;
}

describe('trainOnStore', () => {
  it('stop at step 3, resume: the weights of an uninterrupted run', async () => {
    const options = { data, config, backend: 'wasm' as const, threads: 1, checkpointEvery: 100 };
    const straight = await openStore(join(dir, 'straight'));
    const full = await trainOnStore({ ...options, out: straight });
    expect(full).toMatchObject({ stopped: 'done', step: 6, skipped: {} });

    const out = await openStore(join(dir, 'pieces'));
    const stop = new AbortController();
    const first = await trainOnStore({ ...options, out, signal: stop.signal, onStep: (n) => n === 3 && stop.abort() });
    expect(first).toMatchObject({ stopped: 'signal', step: 3, checkpoint: 'checkpoints/step-000000003.ckpt' });
    const lines: string[] = [];
    const rest = await trainOnStore({ ...options, out, log: (l) => lines.push(l) });
    expect(rest).toMatchObject({
      stopped: 'done',
      startStep: 3,
      step: 6,
      resumedFrom: 'checkpoints/step-000000003.ckpt',
    });
    expect(lines.join('\n')).toMatch(/resuming at step 3 from checkpoints\/step-000000003\.ckpt/);

    const [a, b] = [await weights(straight), await weights(out)];
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    let max = 0;
    for (const [k, v] of a) v.forEach((x, i) => (max = Math.max(max, Math.abs(x - b.get(k)![i]!))));
    expect(max).toBeLessThan(1e-5);
  }, 90_000);

  it('a signal already given: returns stopped before reading anything, nothing written', async () => {
    const out = await openStore(join(dir, 'stopped'));
    const summary = await trainOnStore({ data, out, config, backend: 'wasm', threads: 1, signal: AbortSignal.abort() });
    expect(summary).toMatchObject({ stopped: 'signal', step: 0, checkpoint: null });
    expect(await listCheckpoints(out)).toEqual([]);
  }, 30_000);

  it('bad loop options are refused before the checkpoint store is touched', async () => {
    const out = await openStore(join(dir, 'straight'));
    const before = await listCheckpoints(out);
    await expect(trainOnStore({ data, out, config, backend: 'wasm', resume: false, keep: 0 })).rejects.toThrow(
      /keep must be a positive integer, got 0/,
    );
    expect(await listCheckpoints(out)).toEqual(before);
  });

  it('a dataset without committed units is refused by --data before the model is built or the output touched', async () => {
    const empty = await openStore(join(dir, 'no-such-dataset'));
    const out = join(dir, 'never-written');
    // A config no memory plan admits: the data is named first, not the batch.
    const huge = defaultTrainConfig({ ...config, model: 'regnety_400mf', batchSize: 4096, crops: '2x224,6x96' });
    const run = trainOnStore({ data: empty, out: await openStore(out), config: huge, backend: 'wasm', threads: 1 });
    await expect(run).rejects.toThrow(NoDataError);
    await expect(run).rejects.toThrow(/no committed units in file:\/\/\S+no-such-dataset: --data names no dataset/);
    await expect(stat(out)).rejects.toThrow(/ENOENT/);
  }, 30_000);

  it('more threads than cores is a warning naming the option and the cores', () => {
    const names = FLAG_NAMES;
    expect(threadsWarning({ threads: 2, trainThreads: 1, names }, 2)).toBeNull();
    expect(threadsWarning({ trainThreads: 1, names }, 2)).toBeNull(); // default: one augmentation thread per core
    expect(threadsWarning({ threads: 64, trainThreads: 1, names }, 2)).toBe(
      'warning: --threads 64 asks for more threads than the 2 core(s) here: they take turns on them; use --threads 2 or fewer',
    );
    expect(threadsWarning({ threads: 3, trainThreads: 4, names }, 2)).toMatch(
      /^warning: --threads 3 and --train-threads 4 ask for .*; use --threads 2 and --train-threads 2 or fewer$/,
    );
  });
});
