/**
 * SwAV's queue kernels against tfjs cpu on odd shapes: the codes of each assignment crop from Sinkhorn over its
 * queue's scores and the batch's (swav.ts' localCodes, f32 and f16 prototypes), and the push of a step's
 * embeddings onto the front of each queue (model.ts' pushQueue), exact.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localCodes } from '../../../src/train/swav.js';
import { roundToHalf } from '../../../src/train/webgpu/half.js';
import {
  createSwavQueue,
  pushQueue,
  queuedCodes,
  swavQueueTensors,
  type SwavQueueShape,
} from '../../../src/train/webgpu/kernels/swav-queue.js';
import type { Dtype, GpuRunner } from '../../../src/train/webgpu/runner.js';
import { openTestRunner, randomValues, scaledError, upload } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

// Batch 3, queue 6, dim 5, 13 prototypes; three crops, codes for crops 2 then 0.
const S: SwavQueueShape = { batch: 3, length: 6, dim: 5, prototypes: 13 };
const CROPS = 3;
const ASSIGN = [2, 0];
const SINKHORN = { epsilon: 0.05, iterations: 3, cropsForAssign: ASSIGN };

describe('SwAV queue kernels', () => {
  it.each(['f32', 'f16'] as const)(
    'queuedCodes (%s prototypes) match localCodes over queue + batch',
    async (dtype: Dtype) => {
      if (dtype === 'f16' && !runner.ctx.info.features['shader-f16']) return;
      const { batch: B, length: L, dim: D, prototypes: K } = S;
      const scores = randomValues(CROPS * B * K, 1);
      const protos = randomValues(D * K, 2);
      const entries = ASSIGN.map((_, a) => randomValues(L * D, 10 + a));
      const q = createSwavQueue(runner, S, ASSIGN.length);
      entries.forEach((e, a) => runner.write(q.entries[a]!, e));
      const t = upload(runner, [CROPS * B, K], 'f32', scores);
      const p = upload(runner, [D, K], dtype, protos);
      const codes = runner.tensor([ASSIGN.length, B, K]);
      (await runner.record(queuedCodes(S, SINKHORN, t, p, q, codes))).submit();
      const got = await runner.read(codes);
      runner.release(t, p, codes, ...swavQueueTensors(q));
      // The reference reads the prototypes the GPU holds (rounded to f16 for an f16 copy).
      const want = tf.tidy(() => {
        const P = tf.tensor2d(dtype === 'f16' ? roundToHalf(protos) : protos, [D, K]);
        const all = tf.tensor2d(scores, [CROPS * B, K]);
        const codesOf = localCodes({ epsilon: SINKHORN.epsilon, sinkhornIters: SINKHORN.iterations });
        const parts = ASSIGN.map((crop, a) =>
          codesOf(
            a,
            tf.slice(all, [crop * B, 0], [B, -1]),
            tf.matMul(tf.tensor2d(entries[a]!, [L, D]), P) as tf.Tensor2D,
          ),
        );
        return tf.concat(parts).dataSync();
      });
      expect(scaledError(got, want)).toBeLessThan(1e-5);
    },
  );

  it("pushQueue puts each assignment crop's embeddings in front and drops the oldest, exactly", async () => {
    const { batch: B, length: L, dim: D } = S;
    const z = randomValues(CROPS * B * D, 3);
    const entries = ASSIGN.map((_, a) => randomValues(L * D, 20 + a));
    const q = createSwavQueue(runner, S, ASSIGN.length);
    entries.forEach((e, a) => runner.write(q.entries[a]!, e));
    const zt = upload(runner, [CROPS * B, D], 'f32', z);
    (await runner.record(pushQueue(S, ASSIGN, zt, q))).submit();
    const got = await Promise.all(q.entries.map((e) => runner.read(e)));
    runner.release(zt, ...swavQueueTensors(q));
    ASSIGN.forEach((crop, a) => {
      const want = [...z.subarray(crop * B * D, (crop + 1) * B * D), ...entries[a]!.subarray(0, (L - B) * D)];
      expect(Array.from(got[a]!)).toEqual(want);
    });
  });

  it('refuses a queue that is not a positive multiple of the batch', () => {
    expect(() => createSwavQueue(runner, { ...S, length: 7 }, 1)).toThrow(/multiple of the batch/);
    expect(() => createSwavQueue(runner, { ...S, length: 0 }, 1)).toThrow(/multiple of the batch/);
  });
});
