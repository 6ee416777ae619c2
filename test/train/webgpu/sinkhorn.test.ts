/**
 * Sinkhorn codes against tfjs cpu running swav.ts' own sinkhorn on each assignment crop's rows, on odd shapes,
 * and at epsilon 0.02 on scores that push swav.ts' path into f32 subnormals (a sample far from every
 * prototype), where a float64 run of the same algorithm is the reference.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sinkhorn } from '../../../src/train/swav.js';
import {
  createSinkhornScratch,
  sinkhornCodes,
  type SinkhornOptions,
  type SinkhornShape,
} from '../../../src/train/webgpu/kernels/sinkhorn.js';
import type { GpuRunner } from '../../../src/train/webgpu/runner.js';
import { openTestRunner, randomValues, scaledError, upload } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

async function gpuCodes(s: SinkhornShape, o: SinkhornOptions, scores: Float32Array): Promise<Float32Array> {
  const t = upload(runner, [s.crops * s.batch, s.prototypes], 'f32', scores);
  const codes = runner.tensor([o.cropsForAssign.length, s.batch, s.prototypes]);
  const scratch = createSinkhornScratch(runner, s, o.cropsForAssign.length);
  (await runner.record(sinkhornCodes(s, o, t, codes, scratch))).submit();
  const got = await runner.read(codes);
  runner.release(t, codes, ...Object.values(scratch));
  return got;
}

/** swav.ts' sinkhorn on each assignment crop's rows, concatenated in cropsForAssign order. */
function tfjsCodes(s: SinkhornShape, o: SinkhornOptions, scores: Float32Array): Float32Array {
  return tf.tidy(() => {
    const all = tf.tensor2d(scores, [s.crops * s.batch, s.prototypes]);
    const parts = o.cropsForAssign.map((crop) =>
      sinkhorn(tf.slice(all, [crop * s.batch, 0], [s.batch, -1]), o.epsilon, o.iterations),
    );
    return tf.concat(parts, 0).dataSync() as Float32Array;
  });
}

/** The same algorithm in float64 (no subnormal loses digits at the scale of e^-80 / (K * B)). */
function float64Codes(s: SinkhornShape, o: SinkhornOptions, scores: Float32Array): Float64Array {
  const { batch: B, prototypes: K } = s;
  const out = new Float64Array(o.cropsForAssign.length * B * K);
  o.cropsForAssign.forEach((crop, a) => {
    const q = new Float64Array(B * K);
    const at = (b: number, k: number) => scores[(crop * B + b) * K + k]!;
    for (let k = 0; k < K; k++) {
      let m = -Infinity;
      for (let b = 0; b < B; b++) m = Math.max(m, at(b, k));
      for (let b = 0; b < B; b++) q[b * K + k] = Math.exp(Math.max((at(b, k) - m) / o.epsilon, -80));
    }
    for (let it = 0; it < o.iterations; it++) {
      for (let k = 0; k < K; k++) {
        let sum = 0;
        for (let b = 0; b < B; b++) sum += q[b * K + k]!;
        for (let b = 0; b < B; b++) q[b * K + k] = q[b * K + k]! / (sum * K);
      }
      for (let b = 0; b < B; b++) {
        let sum = 0;
        for (let k = 0; k < K; k++) sum += q[b * K + k]!;
        for (let k = 0; k < K; k++) q[b * K + k] = q[b * K + k]! / (sum * B);
      }
    }
    for (let i = 0; i < B * K; i++) out[a * B * K + i] = q[i]! * B;
  });
  return out;
}

/**
 * f32: codes are products of exp and sums over <= 50 terms in another order than tfjs's, the vectors kept
 * apart (q0 c r) where tfjs rescales the matrix each time: a few f32 roundings per iteration, ~1e-7 of the
 * largest code. WGSL allows exp an error of 3 + 2|x| ulp; at the exponents near 0 that hold the largest codes
 * that is a few 1e-7. 1e-5 still fails for a missing iteration (>= 1e-2) or a wrong row or column.
 */
const F32_TOL = 1e-5;

describe('Sinkhorn codes match swav.ts on tfjs cpu', () => {
  it.each<[string, SinkhornShape, SinkhornOptions]>([
    [
      'batch 7, 37 prototypes, 3 crops, assign [0, 1], eps 0.05, 3 iterations',
      { batch: 7, prototypes: 37, crops: 3 },
      { epsilon: 0.05, iterations: 3, cropsForAssign: [0, 1] },
    ],
    [
      'batch 1, 13 prototypes, 2 crops, assign [1], eps 0.03, 1 iteration',
      { batch: 1, prototypes: 13, crops: 2 },
      { epsilon: 0.03, iterations: 1, cropsForAssign: [1] },
    ],
    [
      'batch 260 and 300 prototypes (past one 256-thread tile both ways), assign [1, 0], eps 0.02, 4 iterations',
      { batch: 260, prototypes: 300, crops: 2 },
      { epsilon: 0.02, iterations: 4, cropsForAssign: [1, 0] },
    ],
  ])('f32: %s', async (_, s, o) => {
    const scores = randomValues(s.crops * s.batch * s.prototypes, 41);
    const got = await gpuCodes(s, o, scores);
    expect(scaledError(got, tfjsCodes(s, o, scores))).toBeLessThan(F32_TOL);
    expect(scaledError(got, float64Codes(s, o, scores))).toBeLessThan(F32_TOL);
  });

  it('eps 0.02: a sample far from every prototype and a prototype far from every sample stay finite', async () => {
    const s: SinkhornShape = { batch: 9, prototypes: 2000, crops: 2 };
    const o: SinkhornOptions = { epsilon: 0.02, iterations: 3, cropsForAssign: [0, 1] };
    const scores = randomValues(s.crops * s.batch * s.prototypes, 43).map((v) => v * 0.1 + 0.85);
    // Crop 0: sample 4 at cosine -1 to every prototype, which the others are near: every exponent of its row
    // sits at the floor. Crop 1: prototype 17 at -1 to every sample (a column that only the column max keeps).
    for (let k = 0; k < s.prototypes; k++) scores[4 * s.prototypes + k] = -1;
    for (let b = s.batch; b < 2 * s.batch; b++) scores[b * s.prototypes + 17] = -1;
    const got = await gpuCodes(s, o, scores);
    expect(got.every(Number.isFinite)).toBe(true);
    // On swav.ts' f32 path row 4's entries are e^-80 / (K B) ~ 1e-41, subnormal: the float64 run is the
    // reference (on the cpu backend the subnormals keep enough digits here, so tfjs agrees as well).
    expect(scaledError(got, float64Codes(s, o, scores))).toBeLessThan(F32_TOL);
    expect(scaledError(got, tfjsCodes(s, o, scores))).toBeLessThan(F32_TOL);
  });

  it('refuses 0 iterations and an assignment crop out of range', () => {
    const s: SinkhornShape = { batch: 2, prototypes: 3, crops: 2 };
    const scores = runner.tensor([4, 3]);
    const codes = runner.tensor([1, 2, 3]);
    const scratch = createSinkhornScratch(runner, s, 1);
    expect(() =>
      sinkhornCodes(s, { epsilon: 0.05, iterations: 0, cropsForAssign: [0] }, scores, codes, scratch),
    ).toThrow(/iterations/);
    expect(() =>
      sinkhornCodes(s, { epsilon: 0.05, iterations: 3, cropsForAssign: [2] }, scores, codes, scratch),
    ).toThrow(/crop 2/);
    runner.release(scores, codes, ...Object.values(scratch));
  });
});
