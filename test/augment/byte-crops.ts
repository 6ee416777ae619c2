/**
 * The contract between a crop's 8-bit and float forms, shared by the kernel and loader tests: the bytes are
 * the float crop before normalisation, rounded.
 */
import { expect } from 'vitest';
import { cropFloats } from '../../src/crop-tensor.js';

/** Per channel (R, G, B), on the 0-1 scale. */
export interface Norm {
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

/**
 * Expects `bytes` to be `floats` (normalised, same draws) mapped back to 0-255, (x * std + mean) * 255,
 * clamped and rounded half up; within 1e-4 of a .5 boundary the two paths' f32 rounding may fall either side,
 * so one level off is allowed there (the largest seen is 2.3e-5 from it). And `cropFloats` of the bytes is
 * the float within half a level, 0.5 / 255 / std (+1e-6 for f32), wherever no clamping happened. Returns the
 * number of values near a boundary (a few in ten thousand).
 */
export function expectBytesMatchFloats(floats: Float32Array, bytes: Uint8Array, norm: Norm, label: string): number {
  expect(bytes.length, label).toBe(floats.length);
  const back = cropFloats({ size: 0, dtype: 'uint8', data: bytes, ...norm });
  let near = 0;
  for (let i = 0; i < floats.length; i++) {
    const c = i % 3;
    const v = (floats[i]! * norm.std[c]! + norm.mean[c]!) * 255;
    const clamped = Math.min(255, Math.max(0, v));
    const boundary = Math.abs(clamped - Math.floor(clamped) - 0.5) < 1e-4;
    if (boundary) near++;
    const diff = Math.abs(bytes[i]! - Math.trunc(clamped + 0.5));
    if (diff > (boundary ? 1 : 0)) expect.fail(`${label}: value ${i} is ${bytes[i]}, the float gives ${v}`);
    const slack = 0.5 / 255 / norm.std[c]! + 1e-6;
    if (v >= 0 && v <= 255 && !(Math.abs(back[i]! - floats[i]!) <= slack))
      expect.fail(`${label}: value ${i}: cropFloats gives ${back[i]}, the float crop ${floats[i]}`);
  }
  return near;
}
