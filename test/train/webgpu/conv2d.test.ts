/**
 * The implicit-GEMM convolution kernels (f32) against tfjs's cpu backend: forward, input gradient and filter
 * gradient on shapes a RegNet has and on odd ones (batch 1, odd and non-square sizes, channels that fill no tile).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuRunner } from '../../../src/train/webgpu/runner.js';
import { CASES, F32_TOL, runConv } from './conv-case.js';
import { openTestRunner } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

describe('conv2d kernels (f32) match tfjs cpu', () => {
  it.each(CASES)('%s', async (_, o) => {
    const e = await runConv(runner, o, { act: 'f32', weight: 'f32' }, 11);
    expect(e.y).toBeLessThan(F32_TOL);
    expect(e.dx).toBeLessThan(F32_TOL);
    expect(e.dw).toBeLessThan(F32_TOL);
  });

  it('compiles each kernel once per shape: a second run of a case compiles nothing', async () => {
    const before = runner.compiled;
    await runConv(runner, CASES[0]![1], { act: 'f32', weight: 'f32' }, 12);
    expect(runner.compiled).toBe(before);
  });
});
