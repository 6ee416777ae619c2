/**
 * Shared by the WebGPU kernel tests: one device per test file (lavapipe on CI, a GPU where there is one), a
 * tfjs cpu backend for the references, seeded random data, and the error measure the tolerances are stated in.
 */
import * as tf from '@tensorflow/tfjs';
import { openDevice, type GpuContext } from '../../../src/train/webgpu/device.js';
import { GpuRunner, type Dtype, type GpuTensor } from '../../../src/train/webgpu/runner.js';
import { prng } from '../../../src/rng.js';

/** Opens the device; no adapter is a failure that says how to get one, never a skip. */
export async function openTestRunner(): Promise<GpuRunner> {
  let ctx: GpuContext;
  try {
    ctx = await openDevice();
  } catch (err) {
    throw new Error(
      `no WebGPU device for the kernel tests (${(err as Error).message}); run scripts/install-lavapipe.sh to install Mesa lavapipe`,
      { cause: err },
    );
  }
  await tf.setBackend('cpu');
  return new GpuRunner(ctx);
}

/** Uniform values in [-1, 1) from a seed. */
export function randomValues(n: number, seed: number): Float32Array {
  const rand = prng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rand() * 2 - 1;
  return out;
}

export function upload(runner: GpuRunner, shape: number[], dtype: Dtype, values: ArrayLike<number>): GpuTensor {
  const t = runner.tensor(shape, dtype);
  runner.write(t, values);
  return t;
}

/** The error relative to the output's scale, so near-zero elements do not dominate (the GEMM self-check's). */
export { scaledError } from '../../../src/train/webgpu/gemm-select.js';
