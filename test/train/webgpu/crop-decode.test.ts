/**
 * The decode of 8-bit crops on the device against cropFloats on the CPU: whole tensors, views at unaligned
 * offsets into a larger buffer (where the SwAV program's crops sit), element counts that are not whole words,
 * and chunks split by a small binding limit (a 224 px crop of batch 256 is above lavapipe's 128 MiB), with
 * the elements around the view left as they were.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cropFloats, type ByteCrop } from '../../../src/crop-tensor.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../../../src/crops.js';
import { prng } from '../../../src/rng.js';
import { cropDecode } from '../../../src/train/webgpu/kernels/crop-decode.js';
import type { GpuRunner } from '../../../src/train/webgpu/runner.js';
import { openTestRunner } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

/** A driver may fuse the multiply-add the CPU rounds twice: 1 ULP apart (values < 3: 2.4e-7). */
const TOL = 5e-7;

function byteCrop(size: number, rows: number, seed: number): ByteCrop {
  const rand = prng(seed);
  const data = Uint8Array.from({ length: rows * size * size * 3 }, () => Math.floor(rand() * 256));
  data[0] = 0;
  data[data.length - 1] = 255;
  return { size, dtype: 'uint8', data, mean: IMAGENET_MEAN, std: IMAGENET_STD };
}

/** Decodes `crop` into a view `lead` elements into a buffer of sentinels (-7): the whole buffer's values, the chunks. */
async function decodeInto(
  crop: ByteCrop,
  lead: number,
  maxBinding: number,
): Promise<{ got: Float32Array; chunks: number }> {
  const n = crop.data.length;
  const parent = runner.tensor([lead + n + 5]);
  runner.write(parent, new Float32Array(parent.size).fill(-7));
  const dst = { buffer: parent.buffer, shape: [n], dtype: 'f32' as const, size: n, offset: lead * 4 };
  const staged = runner.tensor([Math.ceil(n / 4)]);
  const padded = new Uint8Array(staged.size * 4);
  padded.set(crop.data);
  runner.writeBytes(staged, padded);
  const dispatches = cropDecode(staged, dst, crop, maxBinding);
  (await runner.record(dispatches)).submit();
  const got = await runner.read(parent);
  runner.release(parent, staged);
  return { got, chunks: dispatches.length };
}

describe('cropDecode', () => {
  it.each([
    ['one chunk, a tensor of its own', 9, 2, 0, 1 << 27],
    ['one chunk, a view at an unaligned offset, 243 bytes (not whole words)', 9, 1, 37, 1 << 27],
    ['chunks of a 16 KiB binding, at an unaligned offset', 37, 3, 101, 16 * 1024],
    ['chunks of a 16 KiB binding, a tensor of its own', 32, 4, 0, 16 * 1024],
  ])('%s: the values cropFloats computes', async (_name, size, rows, lead, maxBinding) => {
    const crop = byteCrop(size, rows, size * 100 + rows);
    const { got, chunks } = await decodeInto(crop, lead, maxBinding);
    expect(chunks > 1).toBe(maxBinding < 1 << 20);
    const want = cropFloats(crop);
    let worst = 0;
    want.forEach((v, i) => (worst = Math.max(worst, Math.abs(got[lead + i]! - v))));
    expect(worst).toBeLessThan(TOL);
    // Nothing outside the view was written.
    expect([...got.subarray(0, lead), ...got.subarray(lead + want.length)].every((v) => v === -7)).toBe(true);
  });

  it('refuses an f16 destination, too few staged bytes, and a binding too small for one chunk', () => {
    const crop = byteCrop(9, 1, 1);
    const words = runner.tensor([61]);
    const dst = runner.tensor([243]);
    expect(() => cropDecode(words, { ...dst, dtype: 'f16' }, crop, 1 << 20)).toThrow(/must be f32/);
    expect(() => cropDecode(runner.tensor([60]), dst, crop, 1 << 20)).toThrow(/240 bytes staged for 243/);
    expect(() => cropDecode(words, dst, crop, 4096)).toThrow(/too small/);
    runner.release(words, dst);
  });
});
