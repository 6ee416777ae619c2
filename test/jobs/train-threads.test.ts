// trainOnStore with trainThreads 2: the checkpoints of a data-parallel run equal one thread stepping the same
// batches with the same ghost batches, a stopped 2-thread run resumes to the uninterrupted weights, and the
// checkpoints carry over between thread counts (the format does not depend on them).
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MultiCropLoader } from '../../src/augment/loader.js';
import { trainOnStore } from '../../src/jobs/train.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { startBackend } from '../../src/train/backend.js';
import { listCheckpoints, loadCheckpoint, restoreModel } from '../../src/train/checkpoint.js';
import { augmentOf, defaultTrainConfig } from '../../src/train/config.js';
import { SwavModel } from '../../src/train/model.js';
import { splitSizes } from '../../src/train/parallel/sharing.js';
import { exportState, type ModelState } from '../../src/train/parallel/state.js';
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
const options = { config, backend: 'wasm' as const, threads: 1, checkpointEvery: 100, logEvery: 2 };

/** The tolerance of test/train/parallel.test.ts: float32 sums of two slices' gradients vs one pass. */
const TOLERANCE = 2e-5;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-jobs-train-threads-'));
  data = await openStore(join(dir, 'data'));
  await writePhotoDataset(data, { units: 2, perUnit: 6 }); // 12 records: batches of 4 cross an epoch by step 6
  await startBackend('wasm');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** The newest checkpoint's state, read through a model of the run's config. */
async function saved(out: Store): Promise<ModelState & { step: number }> {
  const [latest] = await listCheckpoints(out);
  const model = new SwavModel(config);
  try {
    const ckpt = await loadCheckpoint(out, latest!.key);
    restoreModel(model, ckpt);
    return { ...exportState(model), step: ckpt.header.step };
  } finally {
    model.dispose();
  }
}

/** Largest |a - b| relative to the largest |a|, per kind (weights and statistics, momentum, queue). */
function maxDiff(a: ModelState, b: ModelState): number {
  type Named = Array<[string, Float32Array]>;
  const queue = (s: ModelState): Named => s.queue.map((d, i) => [`queue ${i}`, d]);
  let worst = 0;
  for (const [xs, ys] of [
    [a.vars, b.vars],
    [a.slots, b.slots],
    [queue(a), queue(b)],
  ] as Array<[Named, Named]>) {
    expect(ys.map(([n]) => n)).toEqual(xs.map(([n]) => n));
    let diff = 0,
      scale = 0;
    xs.forEach(([, x], t) =>
      x.forEach((v, i) => {
        diff = Math.max(diff, Math.abs(v - ys[t]![1][i]!));
        scale = Math.max(scale, Math.abs(v));
      }),
    );
    worst = Math.max(worst, diff === 0 ? 0 : diff / scale);
  }
  return worst;
}

/** One thread: the loader trainOnStore opens, each batch stepped with the 2-thread split as ghost batches. */
async function reference(): Promise<ModelState> {
  const model = new SwavModel(config);
  const loader = new MultiCropLoader(data, {
    batchSize: config.batchSize,
    seed: config.seed,
    augment: augmentOf(config),
    threads: 1,
  });
  try {
    let step = 0;
    for await (const batch of loader) {
      const n = batch.keys.length;
      const crops = batch.crops.map((c) => tf.tensor4d(c.data, [n, c.size, c.size, 3]));
      model.step(crops, step, { microBatches: splitSizes(n, 2) });
      tf.dispose(crops);
      batch.release();
      if (++step === config.steps) break;
    }
    return exportState(model);
  } finally {
    await loader.close();
    model.dispose();
  }
}

/**
 * A run on `threads` training threads stopped at step 3 (its checkpoint written), and its summary: trained once per
 * thread count and copied to `name` for each test that goes on from it, as the test's own run would have left it
 * (same data, options and stop), without training those 3 steps on the same threads again.
 */
const stopped = new Map<number, Promise<{ root: string; summary: Awaited<ReturnType<typeof trainOnStore>> }>>();
async function stoppedAtStep3(threads: number, name: string) {
  if (!stopped.has(threads))
    stopped.set(
      threads,
      (async () => {
        const root = join(dir, `stopped-${threads}`);
        const stop = new AbortController();
        const summary = await trainOnStore({
          ...options,
          data,
          out: await openStore(root),
          trainThreads: threads,
          signal: stop.signal,
          onStep: (n) => n === 3 && stop.abort(),
        });
        return { root, summary };
      })(),
    );
  const { root, summary } = await stopped.get(threads)!;
  await cp(root, join(dir, name), { recursive: true });
  return { out: await openStore(join(dir, name)), first: summary };
}

describe('trainOnStore with 2 training threads', () => {
  let straight: Store;

  it('gives the checkpoint of one thread with the same ghost batches, and says what it uses', async () => {
    straight = await openStore(join(dir, 'straight'));
    const lines: string[] = [];
    const summary = await trainOnStore({ ...options, data, out: straight, trainThreads: 2, log: (l) => lines.push(l) });
    expect(summary).toMatchObject({ stopped: 'done', step: 6, trainThreads: 2, skipped: {} });
    const log = lines.join('\n');
    expect(log).toMatch(/backend wasm .*, 2 training threads, model custom/);
    expect(log).toMatch(/memory: .* per training thread \(2 threads\)/);
    expect(lines.filter((l) => /step\s+[246]\b/.test(l)).length).toBeGreaterThanOrEqual(3); // progress lines
    expect(summary.loss).toBeGreaterThan(0);

    const [two, one] = [await saved(straight), await reference()];
    expect(two.step).toBe(6);
    expect(maxDiff(one, two)).toBeLessThan(TOLERANCE);
    const initial = new SwavModel(config);
    const moved = maxDiff(exportState(initial), { ...two, slots: [], queue: [] } as ModelState);
    initial.dispose();
    expect(moved).toBeGreaterThan(1e-3); // the steps moved the weights: equality above is not standing still
  }, 180_000);

  it('stopped at step 3 and resumed on 2 threads: the uninterrupted weights', async () => {
    const { out, first } = await stoppedAtStep3(2, 'pieces');
    expect(first).toMatchObject({ stopped: 'signal', step: 3, checkpoint: 'checkpoints/step-000000003.ckpt' });
    const rest = await trainOnStore({ ...options, data, out, trainThreads: 2 });
    expect(rest).toMatchObject({
      stopped: 'done',
      startStep: 3,
      step: 6,
      resumedFrom: 'checkpoints/step-000000003.ckpt',
    });
    expect(maxDiff(await saved(straight), await saved(out))).toBeLessThan(TOLERANCE);
  }, 180_000);

  it('a 2-thread checkpoint resumes on 1 thread and a 1-thread one on 2 threads', async () => {
    for (const [before, after] of [
      [2, 1],
      [1, 2],
    ]) {
      const { out, first } = await stoppedAtStep3(before!, `switch-${before}-${after}`);
      expect(first).toMatchObject({ stopped: 'signal', step: 3 });
      const lines: string[] = [];
      const rest = await trainOnStore({ ...options, data, out, trainThreads: after, log: (l) => lines.push(l) });
      expect(rest).toMatchObject({ stopped: 'done', startStep: 3, step: 6, trainThreads: after });
      expect(lines.join('\n')).toMatch(after === 1 ? /1 training thread, / : /2 training threads, /);
    }
  }, 180_000);

  it('more training threads than images per batch is refused before the checkpoint store is touched', async () => {
    const out = await openStore(join(dir, 'refused'));
    await expect(trainOnStore({ ...options, data, out, trainThreads: 5 })).rejects.toThrow(
      /--train-threads must be at most --batch \(4\) and 256, got 5/,
    );
    expect(await listCheckpoints(out)).toEqual([]);
  });
});
