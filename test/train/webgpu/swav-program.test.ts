/**
 * One whole SwAV step of the WebGPU engine (swav-program.ts through the stepper) against SwavModel's on tfjs
 * cpu: the loss, every parameter's gradient and the BatchNorm running statistics, on a tiny RegNet with two
 * crop resolutions (two backbone instances sharing weights, accumulated gradients), in f32 and in mixed precision;
 * and the program with activation recomputation against without.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cropSizes } from '../../../src/crops.js';
import { defaultTrainConfig, type TrainConfig } from '../../../src/train/config.js';
import { SwavModel } from '../../../src/train/model.js';
import { DEFAULT_SWAV, normalisePrototypes, PROTOTYPES, swavLoss } from '../../../src/train/swav.js';
import type { Precision } from '../../../src/train/webgpu/precision.js';
import type { GpuRunner } from '../../../src/train/webgpu/runner.js';
import { WebGpuStepper } from '../../../src/train/webgpu/stepper.js';
import { recomputesOnGpu } from '../../../src/train/webgpu/program.js';
import { swavGradientProgram } from '../../../src/train/webgpu/swav-program.js';
import { initialLossScaleState, LOSS_SCALE } from '../../../src/train/webgpu/kernels/loss-scale.js';
import { allocateState, releaseState, uploadState } from '../../../src/train/webgpu/state.js';
import { openTestRunner, randomValues, scaledError, upload } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
}, 120_000);
afterAll(() => runner?.ctx.destroy());

/**
 * The model and shapes of resume.test.ts' CLI runs and of backbone.test.ts' SWAV_TINY cases: lavapipe compiles
 * their pipelines once for the three files (about 30 s per precision on a cold shader cache).
 */
function tinyConfig(crops = '2x16@0.3-1,2x8@0.1-0.3', batchSize = 4): TrainConfig {
  return defaultTrainConfig({
    model: 'custom:2,8,8,2,8',
    batchSize,
    crops,
    steps: 10,
    seed: 11,
    swav: { ...DEFAULT_SWAV, prototypes: 16, hidden: 16, dim: 8, freezePrototypesSteps: 0 },
  });
}

/** Errors of one engine step against SwavModel.step's loss and gradients (before its update) on tfjs cpu. */
interface StepErrors {
  /** |engine - tfjs| / |tfjs| of the loss. */
  loss: number;
  /** scaledError per parameter gradient (proj1.b aside, see below) and per running statistic. */
  tensors: Array<[string, number]>;
  /** Peak |gradient| of swav.proj1.b on each side, relative to proj1.w's: a bias before BatchNorm has none. */
  biasEngine: number;
  biasTfjs: number;
  /** Loss-scale state after the step (mixed). */
  skipped: number;
}

/** Unit rows [n, d] from a seed: what a queue of embeddings holds. */
function unitRows(n: number, d: number, seed: number): tf.Tensor2D {
  return tf.tidy(() => {
    const x = tf.tensor2d(randomValues(n * d, seed), [n, d]);
    return tf.div(x, tf.norm(x, 'euclidean', 1, true));
  });
}

/**
 * With `queue` (its length): both models start with the same full queue of random embeddings. `shape`: crops
 * of tinyConfig's sizes (16 and 8 px) and a batch size.
 */
async function oneStep(
  precision: Precision,
  lossScale?: { initial: number },
  queue = 0,
  shape?: { crops: string; batch: number },
): Promise<StepErrors> {
  const config = { ...tinyConfig(shape?.crops, shape?.batch), queue: { length: queue, startStep: 0 } };
  const B = config.batchSize;
  const crops = cropSizes(config.crops).map((size, i) => ({ size, data: randomValues(B * size * size * 3, 300 + i) }));
  const model = new SwavModel(config);
  const reference = new SwavModel(config);
  // Each block's last BatchNorm starts at gamma 0 (zero-init residual), which zeroes every gradient inside the
  // block: a non-zero gamma lets the comparison reach them.
  for (const m of [model, reference]) {
    for (const [name, v] of m.ps.vars) if (name.endsWith('.c.bn.gamma')) v.assign(tf.fill(v.shape, 0.5));
    if (queue === 0) continue;
    tf.dispose(m.queue);
    m.queue = config.swav.cropsForAssign.map((_, a) => unitRows(queue, config.swav.dim, 500 + a));
    m.queueFilled = queue;
  }
  const program = swavGradientProgram;
  const stepper = await WebGpuStepper.start(model, {
    device: runner.ctx,
    precision,
    program,
    ...(lossScale && { lossScale }),
  });
  try {
    // The gradient buffer holds the gradients of loss * scale (1 in f32); the update unscales them.
    const { scale } = await stepper.lossScale();
    const { loss } = await stepper.step(crops, 0);
    const [g, running] = await Promise.all([runner.read(stepper.buffers.g), runner.read(stepper.buffers.running)]);
    // The reference: SwavModel.step's loss and gradients, before its LARS update.
    const ps = reference.ps;
    normalisePrototypes(ps);
    ps.pendingUpdates = [];
    const tensors = crops.map((c) => tf.tensor4d(c.data, [B, c.size, c.size, 3]));
    const prototypes = ps.vars.get(PROTOTYPES)! as tf.Tensor2D;
    const queued = queue ? reference.queue.map((q) => tf.matMul(q, prototypes) as tf.Tensor2D) : undefined;
    let z: tf.Tensor2D[] = [];
    const { value, grads } = tf.variableGrads(() => {
      const out = reference.forward(tensors, true);
      z = config.swav.cropsForAssign.map((i) => tf.keep(out.z[i]!));
      return swavLoss(out.scores, config.swav, queued);
    }, [...ps.trainable().values()]);
    for (const [v, next] of ps.pendingUpdates) v.assign(next);
    const want = ps.byName(grads);
    const wantLoss = value.dataSync()[0]!;
    const gradOf = (name: string) => {
      const p = stepper.buffers.params.params.find((q) => q.name === name)!;
      return g.subarray(p.offset, p.offset + p.size).map((x) => x / scale);
    };
    const errors: Array<[string, number]> = [];
    for (const p of stepper.buffers.params.params) {
      if (p.name === 'swav.proj1.b') continue; // before BatchNorm: zero up to rounding on both sides
      errors.push([p.name, scaledError(gradOf(p.name), want[p.name]!.dataSync())]);
    }
    for (const p of stepper.buffers.stats.params)
      errors.push([
        p.name,
        scaledError(running.subarray(p.offset, p.offset + p.size), ps.vars.get(p.name)!.dataSync()),
      ]);
    if (queue) {
      // The queue after the step: each assignment crop's embeddings in front, the oldest B entries gone.
      await stepper.sync();
      model.queue.forEach((q, a) => {
        const want = tf.tidy(() => tf.concat([z[a]!, tf.slice(reference.queue[a]!, [0, 0], [queue - B, -1])]));
        errors.push([`queue ${a}`, scaledError(q.dataSync(), want.dataSync())]);
        want.dispose();
      });
      expect(model.queueFilled).toBe(queue);
      // The queue changed the codes: the loss without it is another.
      const plain = tf.tidy(() => swavLoss(reference.forward(tensors, true).scores, config.swav).dataSync()[0]!);
      expect(Math.abs(plain - wantLoss) / wantLoss).toBeGreaterThan(1e-3);
    }
    const peak = (x: ArrayLike<number>) => Math.max(...Array.from(x, Math.abs));
    const w1 = peak(gradOf('swav.proj1.w'));
    const result = {
      loss: Math.abs(loss - wantLoss) / Math.abs(wantLoss),
      tensors: errors,
      biasEngine: peak(gradOf('swav.proj1.b')) / w1,
      biasTfjs: peak(want['swav.proj1.b']!.dataSync()) / w1,
      skipped: (await stepper.lossScale()).skipped,
    };
    tf.dispose([...tensors, value, ...Object.values(grads), ...z, ...(queued ?? [])]);
    return result;
  } finally {
    await stepper.close();
    model.dispose();
    reference.dispose();
  }
}

/**
 * Mixed against the plain f32 model (no rounding in the reference: this is the error a mixed run carries).
 * The engine stores in f16 the input crops, the weight copies the products read (convs, SE, projection,
 * prototypes) and every backbone activation and activation gradient; each store rounds by at most
 * u = 2^-11 of the value. On this model (stem, two stride-2 blocks with SE and projection shortcuts) a
 * gradient of the first conv passes about 56 such stores: 23 activations forward, 22 activation gradients
 * back, 10 weight copies and the input. To first order their errors add, each carried with a gain near 1 by
 * the BatchNorms after it (they renormalise, so an error relative to a tensor's scale stays so): 56 u = 2.7e-2.
 * BatchNorm over few values amplifies it (the 8x8 crops reach the last stage at 1x1: 8 values per channel),
 * as do the scores' 1 / temperature and Sinkhorn's 1 / epsilon: the bound allows a gain of 4, 4 x 56 u = 0.11.
 * Measured (lavapipe, 2026-12-02, batch 4): loss 3.7e-4, gradients and running statistics <= 4.7e-3 of their
 * largest value (s2.b1.c.bn.gamma); at batch 3 (6 values per channel) it was 6.5e-2, 2.4 x the gain-1 sum. An
 * unnormalised f16 prototype copy (the normalisation writing only the f32 masters) measured 0.23 to 0.78: it fails.
 */
const MIXED_TOL = 4 * 56 * 2 ** -11;

/**
 * The program alone on the test's runner (its pipelines compiled once for both settings), without the
 * stepper: one step's loss, gradients and running statistics from `model`'s state, and the program's bytes.
 */
async function programStep(
  model: SwavModel,
  crops: Array<{ size: number; data: Float32Array }>,
  precision: Precision,
  recompute: 'on' | 'off',
) {
  const config = { ...model.config, recompute };
  const state = allocateState(runner, model, precision === 'mixed');
  uploadState(runner, model, state);
  const lossScale = upload(runner, [LOSS_SCALE.SIZE], 'f32', initialLossScaleState(2 ** 10));
  const loss = runner.tensor([1]);
  const layout = { params: state.params, stats: state.stats };
  const cropSizes = crops.map((c) => c.size);
  const program = swavGradientProgram(runner, { config, rows: config.batchSize, cropSizes, precision, layout });
  try {
    const io = { weights: state.w, grads: state.g, running: state.running, crops: [], lossScale, loss };
    const rec = await runner.record(program.dispatches(state.w16 ? { ...io, weights16: state.w16 } : io));
    program.inputs!().forEach((t, i) => runner.write(t, crops[i]!.data));
    rec.submit();
    const [g, running, l] = await Promise.all([runner.read(state.g), runner.read(state.running), runner.read(loss)]);
    return { loss: l, g, running, bytes: program.bytes };
  } finally {
    program.release();
    releaseState(runner, state);
    runner.release(lossScale, loss);
  }
}

describe('the SwAV gradient program', () => {
  it('f32: loss, every gradient and the running statistics of one step match tfjs cpu', async () => {
    const e = await oneStep('f32');
    expect(e.loss).toBeLessThan(1e-5);
    // A bias followed by BatchNorm has no gradient: both sides hold rounding noise, far below the weight's.
    expect(e.biasEngine).toBeLessThan(1e-5);
    expect(e.biasTfjs).toBeLessThan(1e-5);
    // f32 sums in another order than tfjs's: measured <= 4.0e-6 of each tensor's largest value on lavapipe.
    for (const [name, err] of e.tensors) expect(err, name).toBeLessThan(1e-4);
  }, 900_000);

  it('mixed: loss, every gradient and the running statistics of one step within f16 storage of the f32 model', async () => {
    if (!runner.ctx.info.features['shader-f16']) return; // lavapipe offers it: see conv2d.test.ts
    // GradScaler's first scale, 2^16, overflows f16 activation gradients of this model's first step (a skipped
    // step, as designed, with no gradients to compare); 2^10 does not.
    const e = await oneStep('mixed', { initial: 2 ** 10 });
    expect(e.skipped).toBe(0);
    expect(e.loss).toBeLessThan(MIXED_TOL);
    expect(e.biasEngine).toBeLessThan(MIXED_TOL);
    for (const [name, err] of e.tensors) expect(err, name).toBeLessThan(MIXED_TOL);
  }, 900_000);

  it('f32, SwAV queue: Sinkhorn over queue + batch, the loss, gradients and the queue pushed match tfjs cpu', async () => {
    const e = await oneStep('f32', undefined, 8);
    expect(e.loss).toBeLessThan(1e-5);
    expect(e.tensors.filter(([name]) => name.startsWith('queue ')).length).toBe(2);
    for (const [name, err] of e.tensors) expect(err, name).toBeLessThan(1e-4);
  }, 900_000);

  it('f32, one crop per resolution (1x16, 1x8): each used whole, no split, matches tfjs cpu', async () => {
    // Batch 8: the backbone and head see the rows of the cases above (8 per resolution, 16 in all), so
    // lavapipe compiles only the few kernels sized by the batch itself.
    const e = await oneStep('f32', undefined, 0, { crops: '1x16@0.3-1,1x8@0.1-0.3', batch: 8 });
    expect(e.loss).toBeLessThan(1e-5);
    for (const [name, err] of e.tensors) expect(err, name).toBeLessThan(1e-4);
  }, 900_000);

  it("recompute: 'on' recomputes; 'off', 'auto' and a config without it (old checkpoints) do not", () => {
    expect(recomputesOnGpu({ recompute: 'on' })).toBe(true);
    for (const recompute of ['off', 'auto', undefined] as const) expect(recomputesOnGpu({ recompute })).toBe(false);
  });

  it('recompute on: the same loss, gradients and running statistics bit for bit as off, in fewer bytes', async () => {
    // Mixed where the device has f16 (lavapipe does): the program then picks f16 activation slots, shared by
    // both resolutions' backbones. The backbone tests cover f32 (backbone.test.ts).
    const precision: Precision = runner.ctx.info.features['shader-f16'] ? 'mixed' : 'f32';
    const config = tinyConfig();
    const B = config.batchSize;
    const crops = [16, 16, 8, 8].map((size, i) => ({ size, data: randomValues(B * size * size * 3, 300 + i) }));
    const model = new SwavModel(config);
    for (const [name, v] of model.ps.vars) if (name.endsWith('.c.bn.gamma')) v.assign(tf.fill(v.shape, 0.5));
    try {
      const bits = (x: Float32Array) => new Uint32Array(x.buffer, x.byteOffset, x.length);
      const off = await programStep(model, crops, precision, 'off');
      const on = await programStep(model, crops, precision, 'on');
      expect(Number.isFinite(off.loss[0]), 'loss').toBe(true);
      expect(bits(on.loss), 'loss').toEqual(bits(off.loss));
      expect(bits(on.g), 'gradients').toEqual(bits(off.g));
      expect(bits(on.running), 'running statistics').toEqual(bits(off.running));
      expect(on.bytes).toBeLessThan(off.bytes);
    } finally {
      model.dispose();
    }
  }, 300_000);
});
