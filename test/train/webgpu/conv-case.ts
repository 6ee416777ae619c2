/**
 * Runs one convolution case on the GPU (forward, input gradient, filter gradient in one recording) and on
 * tfjs's cpu backend, and returns each output's error relative to its scale. Shared by the f32 and f16 tests.
 */
import * as tf from '@tensorflow/tfjs';
import {
  conv2dFilterGrad,
  conv2dForwardKernel,
  conv2dInputGradKernel,
  convShape,
  type ConvPrecision,
  type ConvShape,
  type ConvShapeOptions,
} from '../../../src/train/webgpu/kernels/conv2d.js';
import { groupedConvWith } from '../../../src/train/layers.js';
import { roundToHalf } from '../../../src/train/webgpu/half.js';
import type { GpuRunner, GpuTensor } from '../../../src/train/webgpu/runner.js';
import { randomValues, scaledError, upload } from './gpu.js';

interface Reference {
  y: Float32Array;
  dx: Float32Array;
  dw: Float32Array;
}

/** tfjs: y = conv(x, w) and the gradients of sum(y * dy). */
function reference(s: ConvShape, x: Float32Array, w: Float32Array, dy: Float32Array): Reference {
  return tf.tidy(() => {
    const xt = tf.tensor4d(x, [s.batch, s.inH, s.inW, s.inC]);
    const wt = tf.tensor4d(w, [s.kH, s.kW, s.inC / s.groups, s.outC]);
    const dyt = tf.tensor4d(dy, [s.batch, s.outH, s.outW, s.outC]);
    const f = (a: tf.Tensor4D, b: tf.Tensor4D) => groupedConvWith(a, b, s.strideH, s.groups);
    const y = f(xt, wt);
    const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(f(a as tf.Tensor4D, b as tf.Tensor4D), dyt)),
    )([xt, wt]);
    return { y: y.dataSync() as Float32Array, dx: dx!.dataSync() as Float32Array, dw: dw!.dataSync() as Float32Array };
  });
}

export interface Errors {
  y: number;
  dx: number;
  dw: number;
}

export async function runConv(runner: GpuRunner, o: ConvShapeOptions, p: ConvPrecision, seed: number): Promise<Errors> {
  const s = convShape(o);
  let x = randomValues(s.batch * s.inH * s.inW * s.inC, seed);
  let w = randomValues(s.kH * s.kW * (s.inC / s.groups) * s.outC, seed + 1);
  let dy = randomValues(s.batch * s.outH * s.outW * s.outC, seed + 2);
  // The reference sees what the f16 buffers hold, so the error left is the kernel's own (f32 sums, f16 stores).
  if (p.act === 'f16') [x, dy] = [roundToHalf(x), roundToHalf(dy)];
  if (p.weight === 'f16') w = roundToHalf(w);
  const want = reference(s, x, w, dy);
  const tx = upload(runner, [s.batch, s.inH, s.inW, s.inC], p.act, x);
  const tw = upload(runner, [s.kH, s.kW, s.inC / s.groups, s.outC], p.weight, w);
  const tdy = upload(runner, [s.batch, s.outH, s.outW, s.outC], p.act, dy);
  const ty = runner.tensor(tdy.shape, p.act);
  const tdx = runner.tensor(tx.shape, p.act);
  const tdw = runner.tensor(tw.shape, 'f32');
  const scratch: GpuTensor[] = [];
  const rec = await runner.record([
    { kernel: conv2dForwardKernel(s, p), buffers: [tx, tw, ty] },
    { kernel: conv2dInputGradKernel(s, p), buffers: [tdy, tw, tdx] },
    ...conv2dFilterGrad(s, p, tx, tdy, tdw, (shape) => (scratch.push(runner.tensor(shape)), scratch.at(-1)!)),
  ]);
  rec.submit();
  const [y, dx, dw] = await Promise.all([runner.read(ty), runner.read(tdx), runner.read(tdw)]);
  runner.release(tx, tw, tdy, ty, tdx, tdw, ...scratch);
  return { y: scaledError(y, want.y), dx: scaledError(dx, want.dx), dw: scaledError(dw, want.dw) };
}

/**
 * RegNet's shapes (1x1 and 3x3, stride 1 and 2, group width 8, the 3-channel stem) and odd ones. Kept few: lavapipe
 * spends ~0.65 s of CPU compiling each tiled kernel on first use, and every case compiles three or four.
 */
export const CASES: [string, ConvShapeOptions][] = [
  ['1x1 stride 1', { batch: 2, inH: 5, inW: 5, inC: 24, outC: 40, kernel: 1, stride: 1 }],
  ['1x1 stride 2 (projection), odd size', { batch: 2, inH: 9, inW: 7, inC: 16, outC: 24, kernel: 1, stride: 2 }],
  [
    '3x3 stride 2, even size (tfjs pads bottom-right)',
    { batch: 2, inH: 8, inW: 8, inC: 12, outC: 16, kernel: 3, stride: 2 },
  ],
  ['stem: 3 channels, 3x3 stride 2, batch 1', { batch: 1, inH: 11, inW: 13, inC: 3, outC: 32, kernel: 3, stride: 2 }],
  [
    'grouped 3x3 stride 1, group width 8',
    { batch: 2, inH: 7, inW: 7, inC: 48, outC: 48, kernel: 3, stride: 1, groups: 6 },
  ],
  [
    'grouped 3x3 stride 2, group width 8, odd size',
    { batch: 3, inH: 9, inW: 9, inC: 24, outC: 24, kernel: 3, stride: 2, groups: 3 },
  ],
  [
    'grouped, group width 3, odd channels',
    { batch: 1, inH: 5, inW: 6, inC: 15, outC: 15, kernel: 3, stride: 1, groups: 5 },
  ],
];

/**
 * f32: sums of at most a few hundred products in another order than tfjs's; measured errors are 1e-7 to 8e-7 of
 * the output's largest value, so 1e-5 leaves a 10x margin and still catches any wrong tap or channel (>= 1e-2).
 */
export const F32_TOL = 1e-5;
/**
 * f16 storage: the reference gets the same f16-rounded inputs, so what is left is the rounding of each output to
 * f16 (at most 2^-11 of its value, round to nearest) on top of the f32 summation error. The filter gradient is
 * stored as f32 and keeps the f32 tolerance.
 */
export const F16_TOL = 2 ** -11 + F32_TOL;
