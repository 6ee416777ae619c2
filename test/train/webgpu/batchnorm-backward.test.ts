/**
 * BatchNorm (+ ReLU) backward against tfjs cpu: the gradients of sum(relu(batchNormTrain(x)) * dy) with respect
 * to x, gamma and beta through layers.ts' own custom gradient, from statistics computed as the forward does.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchNormTrain } from '../../../src/train/layers.js';
import { roundToHalf } from '../../../src/train/webgpu/half.js';
import { BN_STATS, type BatchNormShape } from '../../../src/train/webgpu/kernels/batchnorm.js';
import { batchNormBackward } from '../../../src/train/webgpu/kernels/batchnorm-backward.js';
import type { Dtype, GpuRunner, GpuTensor } from '../../../src/train/webgpu/runner.js';
import { openTestRunner, randomValues, scaledError, upload } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

interface Case {
  shape: [number, number, number, number];
  relu: boolean;
  parallelism?: number;
}

/** tfjs: the three gradients, and the statistics the forward pass would have saved (BN_STATS layout). */
function reference(x: Float32Array, dy: Float32Array, c: Case, gamma: Float32Array, beta: Float32Array) {
  return tf.tidy(() => {
    const ch = c.shape[3];
    const xt = tf.tensor4d(x, c.shape);
    const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
      const y = batchNormTrain(a, g, b);
      return tf.sum(tf.mul(c.relu ? tf.relu(y) : y, tf.tensor4d(dy, c.shape)));
    };
    const [dx, dgamma, dbeta] = tf.grads(f)([xt, tf.tensor1d(gamma), tf.tensor1d(beta)]);
    const { mean, variance } = tf.moments(tf.reshape(xt, [-1, ch]), 0);
    const invStd = tf.rsqrt(tf.add(variance, 1e-5));
    const stats = tf.concat([mean, invStd, tf.mul(invStd, tf.tensor1d(gamma)), tf.tensor1d(beta)]);
    return { dx: dx!.dataSync(), dgamma: dgamma!.dataSync(), dbeta: dbeta!.dataSync(), stats: stats.dataSync() };
  });
}

async function runCase(c: Case, act: Dtype, seed: number) {
  const [b, h, w, ch] = c.shape;
  const s: BatchNormShape = { rows: b * h * w, channels: ch };
  let x: Float32Array = randomValues(s.rows * ch, seed).map((v) => v * 3 + 0.5);
  let dy = randomValues(s.rows * ch, seed + 1);
  if (act === 'f16') [x, dy] = [roundToHalf(x), roundToHalf(dy)];
  const gamma = randomValues(ch, seed + 2).map((v) => v + 1.5);
  const beta = randomValues(ch, seed + 3);
  const want = reference(x, dy, c, gamma, beta);
  const scratch: GpuTensor[] = [];
  const t = {
    x: upload(runner, c.shape, act, x),
    stats: upload(runner, [BN_STATS.ROWS, ch], 'f32', want.stats),
    dy: upload(runner, c.shape, act, dy),
    dx: runner.tensor(c.shape, act),
    dgamma: runner.tensor([ch]),
    dbeta: runner.tensor([ch]),
  };
  const scratchOf = (shape: number[]) => (scratch.push(runner.tensor(shape)), scratch.at(-1)!);
  (await runner.record(batchNormBackward(s, t, scratchOf, { relu: c.relu, parallelism: c.parallelism }))).submit();
  const [dx, dgamma, dbeta] = await Promise.all([runner.read(t.dx), runner.read(t.dgamma), runner.read(t.dbeta)]);
  runner.release(...Object.values(t), ...scratch);
  return {
    dx: scaledError(dx, want.dx),
    dgamma: scaledError(dgamma, want.dgamma),
    dbeta: scaledError(dbeta, want.dbeta),
  };
}

const CASES: [string, Case][] = [
  ['RegNet-like, 56 channels, rows in many chunks, ReLU', { shape: [4, 12, 12, 56], relu: true, parallelism: 4096 }],
  ["batch 1, odd size, 13 channels, no ReLU (the block's last BN)", { shape: [1, 7, 5, 13], relu: false }],
];

/**
 * f32: per-channel sums of <= 576 products in another order than tfjs's; dx = scale * (dz - mean - xhat * mean)
 * subtracts means that are small next to dz, so no cancellation grows the error. 1e-5 of the largest value
 * (see batchnorm.test.ts) still fails for a wrong mask, a missing mean term or a wrong channel (>= 1e-2).
 */
const F32_TOL = 1e-5;

describe('BatchNorm + ReLU backward matches tfjs cpu', () => {
  it.each(CASES)('f32: %s', async (_, c) => {
    const e = await runCase(c, 'f32', 11);
    expect(e.dbeta).toBeLessThan(F32_TOL);
    expect(e.dgamma).toBeLessThan(F32_TOL);
    expect(e.dx).toBeLessThan(F32_TOL);
  });

  // f16 storage: the reference sees the same f16 x and dy; sums stay f32, dx is rounded to f16 (2^-11 of itself).
  it('f16 storage: batch 1, odd size, ReLU', async () => {
    if (!runner.ctx.info.features['shader-f16']) return; // lavapipe offers it: see conv2d.test.ts
    const e = await runCase({ shape: [1, 9, 7, 24], relu: true }, 'f16', 13);
    expect(e.dbeta).toBeLessThan(F32_TOL);
    expect(e.dgamma).toBeLessThan(F32_TOL);
    expect(e.dx).toBeLessThan(2 ** -11 + F32_TOL);
  });
});
