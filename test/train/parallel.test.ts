import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prng } from '../../src/rng.js';
import { startBackend } from '../../src/train/backend.js';
import { defaultTrainConfig, type TrainConfig } from '../../src/train/config.js';
import { SwavModel } from '../../src/train/model.js';
import { splitSizes } from '../../src/train/parallel/sharing.js';
import { exportState, type ModelState } from '../../src/train/parallel/state.js';
import { ParallelStepper } from '../../src/train/parallel/stepper.js';
import { DEFAULT_SWAV } from '../../src/train/swav.js';

/** Tiny RegNet + head; prototypes train from step 1, so every parameter moves within the steps below. */
function tinyConfig(over: Partial<TrainConfig> = {}): TrainConfig {
  return defaultTrainConfig({
    model: 'custom:2,8,8,2,8',
    batchSize: 8,
    crops: '2x16@0.3-1,2x8@0.1-0.3',
    steps: 10,
    seed: 3,
    swav: { ...DEFAULT_SWAV, prototypes: 16, hidden: 16, dim: 8, freezePrototypesSteps: 1 },
    ...over,
  });
}

/** Deterministic crops for step `s` (rows images, the config's four crops). */
function batch(s: number, rows: number): tf.Tensor4D[] {
  const rand = prng(100 + s);
  return [16, 16, 8, 8].map((size) =>
    tf.tensor4d(
      Float32Array.from({ length: rows * size * size * 3 }, () => 2 * rand() - 1),
      [rows, size, size, 3],
    ),
  );
}

/**
 * Largest |a - b| over the tensors of two states, relative to the largest |a| of their kind: weights and
 * running statistics, momentum (1/lr times larger), queue. (Per tensor would not do: a bias followed by
 * BatchNorm has a zero gradient up to rounding, so its momentum is noise.)
 */
function maxDiff(a: ModelState, b: ModelState): number {
  type Named = Array<[string, Float32Array]>;
  const queue = (s: ModelState): Named => s.queue.map((d, i) => [`queue ${i}`, d]);
  const kinds: Array<[Named, Named]> = [
    [a.vars, b.vars],
    [a.slots, b.slots],
    [queue(a), queue(b)],
  ];
  let worst = 0;
  for (const [xs, ys] of kinds) {
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

/**
 * Runs `rowsPerStep.length` steps with 2 threads and on one thread with the same ghost batches, and returns
 * the states and losses. Workers run the wasm backend, as the reference here does.
 */
async function compare(config: TrainConfig, rowsPerStep: number[]) {
  const reference = new SwavModel(config);
  const model = new SwavModel(config);
  const initial = exportState(reference);
  expect(maxDiff(initial, exportState(model))).toBe(0); // one seed: identical initial weights
  const stepper = await ParallelStepper.start(model, { threads: 2, backend: 'wasm' });
  const losses: Array<[number, number]> = [];
  try {
    for (const [s, rows] of rowsPerStep.entries()) {
      const crops = batch(s, rows);
      const one = reference.step(crops, s, { microBatches: splitSizes(rows, 2) }).loss;
      const two = (await stepper.step(crops, s)).loss;
      losses.push([one, two]);
      tf.dispose(crops);
    }
    const states = await stepper.states();
    await stepper.sync();
    return { initial, states, single: exportState(reference), parallel: exportState(model), losses };
  } finally {
    await stepper.close();
    reference.dispose();
    model.dispose();
  }
}

/** Largest relative difference allowed between the parallel and the single-thread state (see below). */
const TOLERANCE = 2e-5;

beforeAll(async () => {
  await startBackend('wasm');
});

describe('data-parallel training', () => {
  // Tolerance: float32 rounding differs only in how the two slices' gradients are summed (one backward pass
  // vs two plus a sum): after 4 LARS steps the states agree to ~3e-7 of their largest value, while the steps
  // moved the weights by far more (checked, so the comparison cannot pass by the weights standing still).
  // Sinkhorn over each thread's own rows instead of the whole batch gives differences of order 1; letting
  // the queue's scores pass a gradient to the prototypes through the codes, ~3e-4.
  it('2 threads give the weights, statistics, momentum, queue and loss of one thread with the same ghost batches', async () => {
    // The queue joins at step 2 (full after two batches); the last batch splits unevenly (4 + 3 rows).
    const r = await compare(tinyConfig({ queue: { length: 16, startStep: 2 } }), [8, 8, 8, 7]);
    expect(maxDiff(r.states[0]!, r.states[1]!)).toBe(0); // the threads stay bit-identical
    const weights = (s: ModelState): ModelState => ({ ...s, slots: [], queue: [] });
    expect(maxDiff(weights(r.initial), weights(r.single))).toBeGreaterThan(1e-2);
    expect(r.parallel.queueFilled).toBe(16);
    expect(maxDiff(r.single, r.parallel)).toBeLessThan(TOLERANCE);
    for (const [one, two] of r.losses) expect(Math.abs(one - two)).toBeLessThan(TOLERANCE * Math.abs(one));
  }, 240_000);
});

describe('data-parallel training: faults', () => {
  let model: SwavModel;
  beforeAll(() => {
    model = new SwavModel(tinyConfig({ batchSize: 2 }));
  });
  afterAll(() => model.dispose());

  it('refuses settings it cannot split, naming them', async () => {
    await expect(ParallelStepper.start(model, { threads: 3 })).rejects.toThrow(
      /train threads \(3\) cannot exceed the batch size \(2\)/,
    );
    await expect(ParallelStepper.start(model, { threads: 0 })).rejects.toThrow(
      /train threads must be an integer from 1 to 256, got 0/,
    );
    await expect(ParallelStepper.start(model, { threads: 2, backend: 'webgpu' as 'wasm' })).rejects.toThrow(
      /wasm or cpu backend, got "webgpu"/,
    );
  });

  it('a thread that dies fails the step with its reason instead of leaving the others waiting', async () => {
    const stepper = await ParallelStepper.start(model, { threads: 2, backend: 'wasm' });
    try {
      const crops = batch(0, 2);
      const stepping = stepper.step(crops, 0);
      // Thread 1 dies within the step: thread 0 then waits for it at a barrier until the stepper aborts it
      // (the step settles only once both threads have answered).
      await (
        stepper as unknown as { channels: Array<{ worker: { terminate(): Promise<number> } }> }
      ).channels[1]!.worker.terminate();
      await expect(stepping).rejects.toThrow(/training thread 1 exited/);
      await expect(stepper.step(crops, 1)).rejects.toThrow(/training thread 1 exited/);
      tf.dispose(crops);
    } finally {
      await stepper.close();
    }
  }, 120_000);
});
