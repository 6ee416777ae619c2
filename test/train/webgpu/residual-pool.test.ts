/**
 * The block's residual join, relu(a + b), and the head's global average pooling, forward and backward, against
 * tfjs cpu (RegNet's own ops: tf.add + tf.relu, tf.mean over H and W) and its gradients.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { roundToHalf } from '../../../src/train/webgpu/half.js';
import { addKernel, reluGradKernel } from '../../../src/train/webgpu/kernels/elementwise.js';
import { channelReduceKernel, poolGradKernel, type SpatialShape } from '../../../src/train/webgpu/kernels/pool.js';
import type { Dtype, GpuRunner } from '../../../src/train/webgpu/runner.js';
import { openTestRunner, randomValues, scaledError, upload } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

type Shape = [number, number, number, number];

function reference(shape: Shape, a: Float32Array, b: Float32Array, dy: Float32Array, dPool: Float32Array) {
  return tf.tidy(() => {
    const [at, bt, dyt] = [a, b, dy].map((v) => tf.tensor4d(v, shape));
    const join = (p: tf.Tensor, q: tf.Tensor) => tf.relu(tf.add(p, q));
    const [da, db] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(join(p, q), dyt!)))([at!, bt!]);
    const pool = (x: tf.Tensor) => tf.mean(x, [1, 2]);
    const dPoolT = tf.tensor2d(dPool, [shape[0], shape[3]]);
    const dx = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(pool(x), dPoolT)))(at!);
    return {
      y: join(at!, bt!).dataSync(),
      da: da!.dataSync(),
      db: db!.dataSync(),
      pooled: pool(at!).dataSync(),
      dPoolX: dx.dataSync(),
    };
  });
}

async function runCase(shape: Shape, act: Dtype, seed: number) {
  const [n, h, w, c] = shape;
  const s: SpatialShape = { batch: n, hw: h * w, channels: c };
  const total = n * h * w * c;
  const input = (k: number) =>
    act === 'f16' ? roundToHalf(randomValues(total, seed + k)) : randomValues(total, seed + k);
  const [a, b, dy] = [input(0), input(1), input(2)];
  const dPool = randomValues(n * c, seed + 3);
  const want = reference(shape, a, b, dy, dPool);
  const t = {
    a: upload(runner, shape, act, a),
    b: upload(runner, shape, act, b),
    dy: upload(runner, shape, act, dy),
    y: runner.tensor(shape, act),
    dSum: runner.tensor(shape, act),
    pooled: runner.tensor([n, c]),
    dPool: upload(runner, [n, c], 'f32', dPool),
    dPoolX: runner.tensor(shape, act),
  };
  const rec = await runner.record([
    { kernel: addKernel(total, act, true), buffers: [t.a, t.b, t.y] },
    { kernel: reluGradKernel(total, act), buffers: [t.y, t.dy, t.dSum] },
    { kernel: channelReduceKernel(s, act, 'mean'), buffers: [t.a, t.pooled] },
    { kernel: poolGradKernel(s, act), buffers: [t.dPool, t.dPoolX] },
  ]);
  rec.submit();
  const [y, dSum, pooled, dPoolX] = await Promise.all([t.y, t.dSum, t.pooled, t.dPoolX].map((x) => runner.read(x)));
  runner.release(...Object.values(t));
  return {
    y: scaledError(y!, want.y),
    // Both branches of the sum receive the same gradient: one tensor, compared with each of tfjs's.
    dSum: Math.max(scaledError(dSum!, want.da), scaledError(dSum!, want.db)),
    pooled: scaledError(pooled!, want.pooled),
    dPoolX: scaledError(dPoolX!, want.dPoolX),
  };
}

/** f32: one addition per element (exact up to the last bit) and means of <= 99 values: measured <= 1e-7. */
const F32_TOL = 1e-5;

describe('residual join and global average pooling match tfjs cpu', () => {
  it.each<[string, Shape]>([
    ['batch 1, odd size', [1, 7, 5, 13]],
    ['batch 3, RegNet-like channels', [3, 9, 11, 48]],
  ])('f32: %s', async (_, shape) => {
    const e = await runCase(shape, 'f32', 21);
    expect(e.y).toBeLessThan(F32_TOL);
    expect(e.dSum).toBeLessThan(F32_TOL);
    expect(e.pooled).toBeLessThan(F32_TOL);
    expect(e.dPoolX).toBeLessThan(F32_TOL);
  });

  // f16 storage: inputs as the reference sees them; outputs stored as f16 are within 2^-11 of themselves, the pool is f32.
  it('f16 storage: batch 2, odd size', async () => {
    if (!runner.ctx.info.features['shader-f16']) return; // lavapipe offers it: see conv2d.test.ts
    const e = await runCase([2, 5, 7, 19], 'f16', 23);
    expect(e.y).toBeLessThan(2 ** -11 + F32_TOL);
    expect(e.dSum).toBeLessThan(F32_TOL);
    expect(e.pooled).toBeLessThan(F32_TOL);
    expect(e.dPoolX).toBeLessThan(2 ** -11 + F32_TOL);
  });
});
