/**
 * Training-mode BatchNorm + ReLU against tfjs cpu (the model's own batchNormTrain and running-statistics rule):
 * output, batch mean and variance, and the running statistics after one update, on RegNet-like and odd shapes,
 * and on a channel whose mean is 1,000 times its spread (where summing x and x^2 about zero loses the variance).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchNormTrain } from '../../../src/train/layers.js';
import { roundToHalf } from '../../../src/train/webgpu/half.js';
import { BN_STATS, batchNormForward, type BatchNormShape } from '../../../src/train/webgpu/kernels/batchnorm.js';
import type { Dtype, GpuRunner, GpuTensor } from '../../../src/train/webgpu/runner.js';
import { openTestRunner, randomValues, scaledError, upload } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

interface Case {
  shape: [number, number, number, number];
  /** Added to every value of the input: a large offset makes the variance hard to compute. */
  offset?: number;
  parallelism?: number;
}

/**
 * relu(BatchNorm(x)) in float64: the truth both f32 implementations approximate. The model's batchNormTrain
 * (tfjs) and the kernel each store the mean as one f32: where a channel's mean is 1,000x its spread, rounding that mean
 * alone moves y by up to half an ulp of 3000 (about 7e-5 of the spread), so the tolerance adds that bound. An
 * output computed as x * scale + (beta - mean * scale) is off by more (1.2e-4) and still fails.
 */
function exactBatchNorm(x: Float32Array, c: number, gamma: Float32Array, beta: Float32Array): Float32Array {
  const n = x.length / c;
  const mean = new Float64Array(c);
  const sq = new Float64Array(c);
  x.forEach((v, i) => (mean[i % c]! += v / n));
  x.forEach((v, i) => (sq[i % c]! += (v - mean[i % c]!) ** 2 / n));
  return Float32Array.from(x, (v, i) =>
    Math.max(0, ((v - mean[i % c]!) / Math.sqrt(sq[i % c]! + 1e-5)) * gamma[i % c]! + beta[i % c]!),
  );
}

/** Half the spacing of f32 values at |v|. */
const halfUlp = (v: number) => 2 ** (Math.floor(Math.log2(Math.max(v, 2 ** -126))) - 24);

/** Batch moments and one running update with momentum 0.1 (unbiased variance), as layers.ts; y in float64. */
function reference(x: Float32Array, shape: number[], gamma: Float32Array, beta: Float32Array, running: Float32Array) {
  return tf.tidy(() => {
    const c = shape[3]!;
    const xt = tf.tensor4d(x, shape as [number, number, number, number]);
    const model = tf.relu(batchNormTrain(xt, tf.tensor1d(gamma), tf.tensor1d(beta))).dataSync() as Float32Array;
    const y = exactBatchNorm(x, c, gamma, beta);
    const { mean, variance } = tf.moments(tf.reshape(xt, [-1, c]), 0);
    const n = x.length / c;
    const rm = tf.add(tf.mul(tf.tensor1d(running.subarray(0, c)), 0.9), tf.mul(mean, 0.1));
    const rv = tf.add(
      tf.mul(tf.tensor1d(running.subarray(c)), 0.9),
      tf.mul(tf.mul(variance, n / Math.max(1, n - 1)), 0.1),
    );
    return { y, model, mean: mean.dataSync(), variance: variance.dataSync(), running: tf.concat([rm, rv]).dataSync() };
  });
}

async function runBatchNorm(c: Case, act: Dtype, seed: number) {
  const [b, h, w, ch] = c.shape;
  const s: BatchNormShape = { rows: b * h * w, channels: ch };
  let x: Float32Array = randomValues(s.rows * ch, seed).map((v) => v * 3 + (c.offset ?? 0));
  if (act === 'f16') x = roundToHalf(x);
  const gamma = randomValues(ch, seed + 1).map((v) => v + 1.5);
  const beta = randomValues(ch, seed + 2);
  const running = Float32Array.from(randomValues(2 * ch, seed + 3), (v, i) => (i < ch ? v : v + 2));
  const want = reference(x, c.shape, gamma, beta, running);
  const scratch: GpuTensor[] = [];
  const t = {
    x: upload(runner, c.shape, act, x),
    gamma: upload(runner, [ch], 'f32', gamma),
    beta: upload(runner, [ch], 'f32', beta),
    stats: runner.tensor([BN_STATS.ROWS, ch]),
    running: upload(runner, [2, ch], 'f32', running),
    y: runner.tensor(c.shape, act),
  };
  const dispatches = batchNormForward(s, t, (shape) => (scratch.push(runner.tensor(shape)), scratch.at(-1)!), {
    parallelism: c.parallelism,
  });
  (await runner.record(dispatches)).submit();
  const [y, stats, run] = await Promise.all([runner.read(t.y), runner.read(t.stats), runner.read(t.running)]);
  runner.release(...Object.values(t), ...scratch);
  const invStd = stats.subarray(BN_STATS.INV_STD * ch, (BN_STATS.INV_STD + 1) * ch);
  return {
    y: scaledError(y, want.y),
    model: scaledError(want.model, want.y),
    // An f32 mean is off by up to half an ulp of itself; in units of the smallest spread, that much of y is unavoidable.
    meanRounding: halfUlp(Math.max(...want.mean.map(Math.abs))) / Math.sqrt(Math.min(...want.variance)),
    // Relative to the spread, the scale a mean error shifts the normalised output by (means may be near 0).
    mean:
      (scaledError(stats.subarray(BN_STATS.MEAN * ch, (BN_STATS.MEAN + 1) * ch), want.mean) *
        Math.max(...want.mean.map(Math.abs))) /
      Math.sqrt(Math.max(...want.variance)),
    variance: scaledError(
      invStd.map((v) => 1 / (v * v) - 1e-5),
      want.variance,
    ),
    running: scaledError(run, want.running),
  };
}

const CASES: [string, Case][] = [
  ['RegNet-like, 56 channels, rows in many chunks', { shape: [4, 12, 12, 56], parallelism: 4096 }],
  ['batch 1, odd size, 13 channels', { shape: [1, 7, 5, 13] }],
  ['mean 1,000x the spread', { shape: [2, 9, 9, 16], offset: 3000 }],
];

/**
 * f32: means and variances of <= 576 rows summed in another order; measured errors are ~1e-7 of the largest
 * value (the offset case included), so 1e-5 has margin yet fails for a variance summed about zero, or an output
 * computed as x * scale + (beta - mean * scale) (1.2e-4 in the offset case).
 */
const F32_TOL = 1e-5;

describe('BatchNorm + ReLU (training statistics) matches tfjs cpu', () => {
  it.each(CASES)('f32: %s', async (_, c) => {
    const e = await runBatchNorm(c, 'f32', 5);
    expect(e.mean).toBeLessThan(F32_TOL);
    expect(e.variance).toBeLessThan(F32_TOL);
    expect(e.running).toBeLessThan(F32_TOL);
    expect(e.y).toBeLessThan(F32_TOL + e.meanRounding);
    // The model folds the mean into a shift (x * rstd - mean * rstd, one fused pass for speed on wasm): two more
    // roundings of values near mean / spread, so it gets three times the mean-rounding bound.
    expect(e.model).toBeLessThan(F32_TOL + 3 * e.meanRounding);
  });

  // f16 storage: statistics are f32 sums of the same f16 inputs the reference sees; y is rounded to f16 (2^-11).
  it.each(CASES.slice(0, 1))('f16 storage: %s', async (_, c) => {
    if (!runner.ctx.info.features['shader-f16']) return; // lavapipe offers it: see conv2d.test.ts
    const e = await runBatchNorm(c, 'f16', 7);
    expect(e.mean).toBeLessThan(F32_TOL);
    expect(e.variance).toBeLessThan(F32_TOL);
    expect(e.y).toBeLessThan(2 ** -11 + F32_TOL);
  });
});
