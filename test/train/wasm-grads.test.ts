import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { startBackend } from '../../src/train/backend.js';

describe('wasm matMul gradient (explicit transposes)', () => {
  it('equals the closed form for every combination of transpose flags', async () => {
    await startBackend('wasm');
    const [m, k, n] = [3, 4, 5];
    for (const [ta, tb] of [
      [false, false],
      [false, true],
      [true, false],
      [true, true],
    ] as const) {
      const a = tf.randomNormal(ta ? [k, m] : [m, k], 0, 1, 'float32', 1) as tf.Tensor2D;
      const b = tf.randomNormal(tb ? [n, k] : [k, n], 0, 1, 'float32', 2) as tf.Tensor2D;
      const r = tf.randomNormal([m, n], 0, 1, 'float32', 3) as tf.Tensor2D;
      const [da, db] = tf.grads((x: tf.Tensor, y: tf.Tensor) =>
        tf.sum(tf.mul(tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D, ta, tb), r)),
      )([a, b]);
      // y = A'B' with A' = op(a), B' = op(b): dA' = r B'^T, dB' = A'^T r, transposed back where op transposed.
      const [ap, bp] = [ta ? tf.transpose(a) : a, tb ? tf.transpose(b) : b];
      const [dap, dbp] = [tf.matMul(r, tf.transpose(bp)), tf.matMul(tf.transpose(ap), r)];
      const at = `transposeA ${ta}, transposeB ${tb}`;
      expect(tf.max(tf.abs(tf.sub(da!, ta ? tf.transpose(dap) : dap))).dataSync()[0], at).toBeLessThan(1e-5);
      expect(tf.max(tf.abs(tf.sub(db!, tb ? tf.transpose(dbp) : dbp))).dataSync()[0], at).toBeLessThan(1e-5);
    }
  });
});
