/**
 * The device, the runner and the f16 conversions: what the device reports, typed errors when no adapter exists,
 * buffers reused from the pool, several kernels recorded once and submitted as one command buffer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeAdapter, describeDevice, openDevice } from '../../../src/train/webgpu/device.js';
import { WebGpuKernelError, WebGpuUnavailableError } from '../../../src/train/webgpu/errors.js';
import { fromHalfBits, roundToHalf, toHalfBits } from '../../../src/train/webgpu/half.js';
import { COMPILE_LANES, type GpuRunner, type Kernel } from '../../../src/train/webgpu/runner.js';
import { openTestRunner, upload } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

/** y[i] = x[i] * 2 + 1 over n elements. */
function affineKernel(n: number): Kernel {
  const code = `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) { if (gid.x < ${n}u) { y[gid.x] = x[gid.x] * 2.0 + 1.0; } }`;
  return { key: `test-affine:${n}`, code, workgroups: [Math.ceil(n / 64), 1, 1] };
}

describe('device', () => {
  it('describes the adapter, the granted features and the raised limits in one line', () => {
    const { info } = runner.ctx;
    expect(info.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 2 ** 20);
    const line = describeDevice(info);
    expect(line).not.toContain('\n');
    expect(line).toContain(info.features['shader-f16'] ? 'features shader-f16' : 'not offered: shader-f16');
    if (info.isFallback) expect(line).toContain('(software)');
    // Which GEMM tiles run and why: lavapipe offers no subgroup matrices.
    expect(line).toContain(info.gemm!.summary);
    if (!info.features['chromium-experimental-subgroup-matrix'])
      expect(line).toMatch(/; gemm tiles: tiled: feature not offered$/);
  });

  it("copies Dawn's subgroup-matrix configs field by field (their fields are prototype getters)", () => {
    class Config {
      get componentType() {
        return 'f16';
      }
      get resultComponentType() {
        return 'f32';
      }
      get M() {
        return 16;
      }
      get N() {
        return 8;
      }
      get K() {
        return 16;
      }
    }
    const { info } = runner.ctx;
    const adapter = { info: { vendor: 'nvidia', subgroupMatrixConfigs: [new Config()] } } as unknown as GPUAdapter;
    const device = { features: new Set<string>(), limits: info.limits } as unknown as GPUDevice;
    expect(describeAdapter(adapter, device).subgroupMatrixConfigs).toEqual([
      { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 8, K: 16 },
    ]);
  });

  it('no adapter is a typed error that says how to get one', async () => {
    const err = await openDevice({ toggles: ['adapter=no-such-adapter'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WebGpuUnavailableError);
    expect((err as WebGpuUnavailableError).reason).toBe('no-adapter');
    expect((err as Error).message).toMatch(/install-lavapipe\.sh/);
  });
});

describe('runner', () => {
  it('runs a chain of kernels recorded once as one submission, and again on new inputs', async () => {
    const n = 1000;
    const x = upload(
      runner,
      [n],
      'f32',
      Float32Array.from({ length: n }, (_, i) => i),
    );
    const [a, b] = [runner.tensor([n]), runner.tensor([n])];
    const rec = await runner.record([
      { kernel: affineKernel(n), buffers: [x, a] },
      { kernel: affineKernel(n), buffers: [a, b] },
    ]);
    expect(rec.length).toBe(2);
    rec.submit();
    expect((await runner.read(b))[10]).toBe((10 * 2 + 1) * 2 + 1);
    runner.write(x, new Float32Array(n).fill(-1));
    rec.submit();
    expect((await runner.read(b))[999]).toBe(-1);
    runner.release(x, a, b);
  });

  it('compiles COMPILE_LANES kernels at a time; a stop ends the recording once those settle', async () => {
    const n = 1000;
    const kernels = Array.from({ length: COMPILE_LANES + 6 }, (_, i) => affineKernel(n - 1 - i)); // none compiled before
    const [x, y] = [upload(runner, [n], 'f32', new Float32Array(n).fill(3)), runner.tensor([n])];
    const dispatches = kernels.map((kernel) => ({ kernel, buffers: [x, y] }));
    const before = runner.compiled;
    const controller = new AbortController();
    const recording = runner.record(dispatches, controller.signal);
    controller.abort(new Error('stopped'));
    await expect(recording).rejects.toThrow('stopped');
    expect(runner.compiled - before).toBe(COMPILE_LANES);
    // The device is fine, and the next recording compiles only what is left.
    const rec = await runner.record(dispatches);
    expect(runner.compiled - before).toBe(kernels.length);
    rec.submit();
    expect((await runner.read(y))[0]).toBe(3 * 2 + 1);
    runner.release(x, y);
  });

  it('reuses a released buffer of the same size', () => {
    const t = runner.tensor([7, 3], 'f16'); // 42 bytes, padded to 44
    runner.release(t);
    expect(runner.tensor([11], 'f32').buffer).toBe(t.buffer);
  });

  it('a kernel that does not compile is a typed error naming it', async () => {
    const bad: Kernel = { key: 'test-broken', code: 'fn main() { let x: f32 = 1u; }', workgroups: [1, 1, 1] };
    await expect(runner.pipeline(bad)).rejects.toThrow(WebGpuKernelError);
    await expect(runner.pipeline(bad)).rejects.toThrow(/test-broken/);
  });

  it('f16 tensors round-trip through the GPU with round-to-nearest-even', async () => {
    const values = [0, -0.5, 1 / 3, 65504, 70000, 2 ** -24, 2 ** -26, -1e-8, 1 + 2 ** -11, 1 + 3 * 2 ** -11];
    const t = upload(runner, [values.length], 'f16', values);
    expect(Array.from(await runner.read(t))).toEqual([
      0,
      -0.5,
      0.333251953125,
      65504,
      Infinity,
      2 ** -24,
      0,
      -0,
      1,
      1 + 2 ** -9,
    ]);
    runner.release(t);
  });
});

describe('half', () => {
  it('round-trips every finite binary16 value exactly', () => {
    const wrong: number[] = [];
    for (let h = 0; h < 0x10000; h++) if ((h & 0x7c00) !== 0x7c00 && toHalfBits(fromHalfBits(h)) !== h) wrong.push(h);
    expect(wrong).toEqual([]);
  });

  it('rounds halfway cases to even, carries into the exponent, overflows to infinity', () => {
    expect(toHalfBits(1 + 2 ** -11)).toBe(0x3c00); // tie, even stays
    expect(toHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, rounds up to even
    expect(toHalfBits(2 - 2 ** -12)).toBe(0x4000); // mantissa carry
    expect(toHalfBits(65520)).toBe(0x7c00);
    expect(Number.isNaN(roundToHalf([NaN])[0])).toBe(true);
  });
});
