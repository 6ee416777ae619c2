/**
 * Squeeze-and-excitation forward and backward against tfjs cpu running layers.ts' squeezeExcite (the model's
 * own definition: mean, dense + ReLU, dense + sigmoid, channel scale): the output and the gradients of
 * sum(se(x) * dy) with respect to x and the four weights.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { squeezeExcite, type Params } from '../../../src/train/layers.js';
import { roundToHalf } from '../../../src/train/webgpu/half.js';
import { paramLayout } from '../../../src/train/webgpu/kernels/lars.js';
import { seBackward, seForward, type SeShape } from '../../../src/train/webgpu/kernels/se.js';
import type { Dtype, GpuRunner, GpuTensor } from '../../../src/train/webgpu/runner.js';
import { openTestRunner, randomValues, scaledError, upload } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

const NAMES = ['se.reduce.w', 'se.reduce.b', 'se.expand.w', 'se.expand.b'] as const;

/** tfjs: y and the gradients, with squeezeExcite reading its weights from `weights` by name. */
function reference(
  shape: [number, number, number, number],
  squeeze: number,
  x: Float32Array,
  dy: Float32Array,
  weights: Float32Array[],
) {
  return tf.tidy(() => {
    const [, , , c] = shape;
    const shapes = [[c, squeeze], [squeeze], [squeeze, c], [c]];
    const se = (xt: tf.Tensor, ...ws: tf.Tensor[]) => {
      const ps: Params = { get: (name) => ws[NAMES.indexOf(name as (typeof NAMES)[number])]!, pendingUpdates: null };
      return squeezeExcite(ps, 'se', xt as tf.Tensor4D, squeeze);
    };
    const inputs = [tf.tensor4d(x, shape), ...weights.map((w, i) => tf.tensor(w, shapes[i]))];
    const dyt = tf.tensor4d(dy, shape);
    const grads = tf.grads((...args: tf.Tensor[]) => tf.sum(tf.mul(se(args[0]!, ...args.slice(1)), dyt)))(inputs);
    return { y: se(inputs[0]!, ...inputs.slice(1)).dataSync(), grads: grads.map((g) => g.dataSync()) };
  });
}

async function runCase(shape: [number, number, number, number], squeeze: number, act: Dtype, seed: number) {
  const [n, h, w, c] = shape;
  const s: SeShape = { batch: n, hw: h * w, channels: c, squeeze };
  const total = n * h * w * c;
  let x: Float32Array = randomValues(total, seed).map((v) => v * 2 + 0.3);
  let dy = randomValues(total, seed + 1);
  if (act === 'f16') [x, dy] = [roundToHalf(x), roundToHalf(dy)];
  // Weights large enough that the gate's sigmoid is away from 0.5 and some hidden units are cut by the ReLU.
  let weights: Float32Array[] = [c * squeeze, squeeze, squeeze * c, c].map((size, i) =>
    randomValues(size, seed + 2 + i).map((v) => v * 1.5),
  );
  // With f16 activations the matrices are read from the f16 weight copy (biases from the f32 masters).
  if (act === 'f16') weights = weights.map((w, i) => (i % 2 === 0 ? roundToHalf(w) : w));
  const want = reference(shape, squeeze, x, dy, weights);
  const tensors: GpuTensor[] = [];
  const keep = (t: GpuTensor) => (tensors.push(t), t);
  const make = (sh: number[], dtype: Dtype = 'f32') => keep(runner.tensor(sh, dtype));
  // The weights are views into flat parameter buffers, as the engine keeps them (kernels/lars.ts).
  const layout = paramLayout(NAMES.map((name, i) => ({ name, shape: [weights[i]!.length] })));
  const masters = keep(runner.tensor([layout.total]));
  const copies = keep(runner.tensor([layout.total], act));
  const [w1, b1, w2, b2] = layout.params.map((p, i) => {
    const view = runner.view(i % 2 === 0 ? copies : masters, p.offset, p.shape);
    runner.write(view, weights[i]!);
    return view;
  });
  const xt = keep(upload(runner, shape, act, x));
  const dyt = keep(upload(runner, shape, act, dy));
  const saved = { pooled: make([n, c]), hidden: make([n, squeeze]), gate: make([n, c]) };
  const y = make(shape, act);
  const g = {
    dx: make(shape, act),
    dw1: make([c, squeeze]),
    db1: make([squeeze]),
    dw2: make([squeeze, c]),
    db2: make([c]),
  };
  const ws = { w1: w1!, b1: b1!, w2: w2!, b2: b2! };
  const rec = await runner.record([...seForward(s, xt, ws, saved, y), ...seBackward(s, xt, dyt, ws, saved, g, make)]);
  rec.submit();
  const got = await Promise.all([y, g.dx, g.dw1, g.db1, g.dw2, g.db2].map((t) => runner.read(t)));
  runner.release(...tensors);
  const wantAll = [want.y, ...want.grads];
  return got.map((v, i) => scaledError(v, wantAll[i]!));
}

const OUTPUTS = ['y', 'dx', 'dW1', 'db1', 'dW2', 'db2'];

/**
 * f32: means over <= 99 positions and products over <= 48 channels in another order than tfjs's; measured
 * errors are ~1e-7 of each output's largest value, so 1e-5 has margin and fails for any wrong index or term.
 */
const F32_TOL = 1e-5;

describe('squeeze-excite forward and backward match tfjs cpu', () => {
  it.each<[string, [number, number, number, number], number]>([
    ['batch 1, odd size, 13 channels, squeeze 3', [1, 7, 5, 13], 3],
    ['batch 3, RegNet-like 48 channels, squeeze 6', [3, 9, 11, 48], 6],
  ])('f32: %s', async (_, shape, squeeze) => {
    const e = await runCase(shape, squeeze, 'f32', 31);
    OUTPUTS.forEach((name, i) => expect(e[i], name).toBeLessThan(F32_TOL));
  });

  // f16 activations and weight copies: the reference sees the same f16 x, dy and matrices; y and dx are rounded
  // to f16 (2^-11 of themselves), the gate and every weight gradient stay f32.
  it('f16 storage: batch 2, odd size', async () => {
    if (!runner.ctx.info.features['shader-f16']) return; // lavapipe offers it: see conv2d.test.ts
    const e = await runCase([2, 5, 7, 19], 5, 'f16', 37);
    OUTPUTS.forEach((name, i) =>
      expect(e[i], name).toBeLessThan((name === 'y' || name === 'dx' ? 2 ** -11 : 0) + F32_TOL),
    );
  });
});
