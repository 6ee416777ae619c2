import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { startBackend } from '../../src/train/backend.js';
import { channelMean } from '../../src/train/layers.js';

describe('channelMean (global average pool + matMul)', () => {
  for (const backend of ['cpu', 'wasm'] as const) {
    it(`equals tf.mean over every axis but the last, for rank 2, 3 and 4 (${backend})`, async () => {
      await startBackend(backend);
      for (const shape of [
        [7, 5],
        [3, 4, 6],
        [3, 9, 7, 5],
        [1, 112, 112, 4],
      ]) {
        const x = tf.add(tf.randomNormal(shape, 0, 1, 'float32', 3), tf.range(0, shape.at(-1)!)); // distinct channel means
        const want = tf.mean(
          x,
          shape.slice(0, -1).map((_, i) => i),
        );
        const got = channelMean(x);
        expect(got.shape).toEqual([shape.at(-1)]);
        expect(tf.max(tf.abs(tf.sub(got, want))).dataSync()[0], `${shape}`).toBeLessThan(1e-5);
      }
    });
  }
});
