import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { startBackend } from '../../src/train/backend.js';
import { batchNorm } from '../../src/train/layers.js';
import { ParamSet } from '../../src/train/params.js';

beforeAll(async () => {
  await startBackend('cpu');
});

describe('BatchNorm running statistics', () => {
  it('two passes in one step (two crop resolutions) update them in turn, as PyTorch does', () => {
    const ps = new ParamSet(0);
    const a = tf.fill([2, 4, 4, 3], 2) as tf.Tensor4D; // channel mean 2
    const b = tf.fill([2, 2, 2, 3], 10) as tf.Tensor4D; // channel mean 10
    ps.pendingUpdates = [];
    tf.tidy(() => {
      batchNorm(ps, 'bn', a, true);
      batchNorm(ps, 'bn', b, true);
    });
    for (const [v, next] of ps.pendingUpdates) v.assign(next);
    const mean = Array.from(ps.vars.get('bn.mean')!.dataSync());
    // From 0: after a, 0.1 * 2 = 0.2; after b, 0.9 * 0.2 + 0.1 * 10 = 1.18 (b alone would give 1.0).
    for (const m of mean) expect(m).toBeCloseTo(1.18, 5);
  });
});
