import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { startBackend } from '../../src/train/backend.js';
import { groupedConvDepthwise } from '../../src/train/grouped-conv.js';
import { prng } from '../../src/rng.js';

const rand = prng(7);
const randn = (shape: number[]) =>
  tf.tensor(
    Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rand() * 2 - 1),
    shape,
  );

/** The reference: per-group conv2d on channel slices, tfjs' own gradients (cpu backend). */
function splitConv(x: tf.Tensor4D, w: tf.Tensor4D, stride: number, groups: number): tf.Tensor4D {
  const xs = tf.split(x, groups, 3),
    ws = tf.split(w, groups, 3);
  return tf.concat(
    xs.map((xg, g) => tf.conv2d(xg as tf.Tensor4D, ws[g] as tf.Tensor4D, stride, 'same')),
    3,
  );
}

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!;

/** Output, dL/dx and dL/dw of sum(conv * r) for one formulation. */
function run(f: typeof splitConv, x: tf.Tensor4D, w: tf.Tensor4D, r: tf.Tensor, stride: number, groups: number) {
  const y = f(x, w, stride, groups);
  const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
    tf.sum(tf.mul(f(a as tf.Tensor4D, b as tf.Tensor4D, stride, groups), r)),
  )([x, w]);
  return { y: y.arraySync(), dx: dx!.arraySync(), dw: dw!.arraySync() };
}

// [h, w, groups, in per group, out per group, k, stride]: odd and even sizes (stride 2 'same' pads them
// differently), more outputs than inputs per group, a 1x1 kernel.
const CASES: Array<[number, number, number, number, number, number, number]> = [
  [6, 5, 3, 2, 2, 3, 1],
  [6, 6, 2, 3, 2, 3, 2],
  [7, 5, 2, 2, 3, 3, 2],
  [5, 5, 4, 2, 2, 1, 2],
  [8, 7, 2, 2, 2, 3, 3],
];

describe('grouped conv as depthwise + matMul', () => {
  beforeAll(async () => {
    await startBackend('cpu');
  });
  for (const backend of ['cpu', 'wasm'] as const) {
    it(`equals per-group conv2d in value and both gradients (${backend})`, async () => {
      for (const [h, wd, groups, gi, go, k, stride] of CASES) {
        await startBackend('cpu');
        const x = randn([2, h, wd, groups * gi]) as tf.Tensor4D,
          w = randn([k, k, gi, groups * go]) as tf.Tensor4D;
        const yShape = [2, Math.ceil(h / stride), Math.ceil(wd / stride), groups * go];
        const r = randn(yShape);
        const ref = run(splitConv, x, w, r, stride, groups);
        const [xa, wa, ra] = [x.arraySync(), w.arraySync(), r.arraySync()];
        await startBackend(backend);
        const ours = run(
          (a, b, s, g) => groupedConvDepthwise(a, b, s, g),
          tf.tensor4d(xa),
          tf.tensor4d(wa),
          tf.tensor(ra),
          stride,
          groups,
        );
        const at = `${backend} case ${[h, wd, groups, gi, go, k, stride]}`;
        expect(maxDiff(tf.tensor(ours.y), tf.tensor(ref.y)), at).toBeLessThan(1e-4);
        expect(maxDiff(tf.tensor(ours.dx), tf.tensor(ref.dx)), at).toBeLessThan(1e-4);
        expect(maxDiff(tf.tensor(ours.dw), tf.tensor(ref.dw)), at).toBeLessThan(1e-4);
        expect(tf.tensor(ours.y).shape).toEqual(yShape);
      }
    });
  }
});
