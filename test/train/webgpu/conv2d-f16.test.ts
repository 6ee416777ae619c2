/**
 * The convolution kernels with f16 storage (activations, filter copy) and f32 sums, against tfjs's cpu backend
 * given the same f16-rounded inputs. Mixed precision is the default where `shader-f16` is offered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuRunner } from '../../../src/train/webgpu/runner.js';
import { CASES, F16_TOL, F32_TOL, runConv } from './conv-case.js';
import { openTestRunner } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

describe('conv2d kernels with f16 storage and f32 sums', () => {
  it('lavapipe offers shader-f16, so CI always runs the f16 kernels', () => {
    if (runner.ctx.info.isFallback) expect(runner.ctx.info.features['shader-f16']).toBe(true);
  });

  const F16_CASES = CASES.filter(([name]) => /^(stem|grouped 3x3 stride 2)/.test(name));
  it.each(F16_CASES)('%s', async (_, o) => {
    if (!runner.ctx.info.features['shader-f16']) return; // a GPU without f16 runs the f32 kernels only
    const e = await runConv(runner, o, { act: 'f16', weight: 'f16' }, 23);
    expect(e.y).toBeLessThan(F16_TOL);
    expect(e.dx).toBeLessThan(F16_TOL);
    expect(e.dw).toBeLessThan(F32_TOL); // the filter gradient is stored as f32
  });
});
