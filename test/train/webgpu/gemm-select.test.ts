/**
 * The GEMM tile choice: subgroup matrices only where the device grants them, a config fits and the self-check
 * passes, else the tiled core with the reason; the subgroup-matrix WGSL for a config; the routing of GEMMs and
 * convolutions (the tiled path unchanged when nothing is chosen). lavapipe offers no subgroup matrices, so the
 * kernel never runs here: its text goes through Dawn's parser (which reports syntax errors before refusing the
 * extension), and the self-check's GPU half runs with substitute kernels.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeDevice, type GpuDeviceInfo } from '../../../src/train/webgpu/device.js';
import {
  gpuSelfCheck,
  planMatrixGemm,
  probeSpec,
  PROBE,
  selectGemmTiles,
  SELF_CHECK_TOLERANCE,
  type SelfCheck,
} from '../../../src/train/webgpu/gemm-select.js';
import { conv2dFilterGradKernel, conv2dForwardKernel, convShape } from '../../../src/train/webgpu/kernels/conv2d.js';
import { gemmKernel, gemmLayout, tiledGemmKernel, useMatrixGemm } from '../../../src/train/webgpu/kernels/gemm.js';
import { matmulKernel, productSplit } from '../../../src/train/webgpu/kernels/head.js';
import {
  matrixGemmKernel,
  matrixGemmLayout,
  type MatrixGemmConfig,
} from '../../../src/train/webgpu/kernels/matrix-gemm.js';
import type { GpuRunner, Kernel } from '../../../src/train/webgpu/runner.js';
import { CASES, F16_TOL, runConv } from './conv-case.js';
import { openTestRunner, randomValues, scaledError, upload } from './gpu.js';

const F16_16: MatrixGemmConfig = { component: 'f16', M: 16, N: 16, K: 16, subgroupSize: 32 };

/** An H200-like device on Vulkan: every feature, subgroups of 32, NVIDIA's f16 configs. */
function fakeInfo(over: Partial<GpuDeviceInfo> = {}): GpuDeviceInfo {
  return {
    vendor: 'nvidia',
    architecture: 'hopper',
    device: 'H200',
    description: '',
    isFallback: false,
    features: { 'shader-f16': true, subgroups: true, 'chromium-experimental-subgroup-matrix': true },
    subgroupSizes: { min: 32, max: 32 },
    subgroupMatrixConfigs: [
      { componentType: 'f16', resultComponentType: 'f16', M: 16, N: 16, K: 16 },
      { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 },
      { componentType: 'i8', resultComponentType: 'i32', M: 16, N: 16, K: 32 },
    ],
    limits: {
      maxStorageBufferBindingSize: 2 ** 31,
      maxBufferSize: 2 ** 31,
      maxComputeWorkgroupStorageSize: 49152,
      maxComputeInvocationsPerWorkgroup: 1024,
      maxComputeWorkgroupSizeX: 1024,
      maxComputeWorkgroupSizeY: 1024,
      maxStorageBuffersPerShaderStage: 16,
    },
    ...over,
  };
}

const passes: SelfCheck = async () => 1e-7;
const neverCalled: SelfCheck = async () => {
  throw new Error('the self-check ran where no config was planned');
};

describe('GEMM tile selection (fake devices)', () => {
  it('feature not offered: tiled, without running a self-check', async () => {
    const info = fakeInfo({
      features: { 'shader-f16': true, subgroups: true, 'chromium-experimental-subgroup-matrix': false },
    });
    const choice = await selectGemmTiles(info, neverCalled);
    expect(choice.f16).toEqual({ kind: 'tiled', reason: 'feature not offered' });
    expect(choice.matrix).toEqual({});
    expect(choice.summary).toBe('gemm tiles: tiled: feature not offered');
    expect(describeDevice({ ...info, gemm: choice })).toContain('gemm tiles: tiled: feature not offered');
  });

  it('a good f16 -> f32 config is chosen for f16 GEMMs; f32 GEMMs stay tiled without an f32 config', async () => {
    const checked: MatrixGemmConfig[] = [];
    const choice = await selectGemmTiles(fakeInfo(), async (c) => (checked.push(c), 1e-7));
    expect(checked).toEqual([F16_16]); // the f16 -> f16 config listed first is skipped: sums must be f32
    expect(choice.f16).toEqual({ kind: 'matrix', config: F16_16, error: 1e-7 });
    expect(choice.matrix).toEqual({ f16: F16_16 });
    expect(choice.f32.kind).toBe('tiled');
    expect(choice.summary).toMatch(/^gemm tiles: f16 subgroup-matrix f16 16x16x16; f32 tiled: no f32 x f32 -> f32/);
  });

  it('an f32 config serves f32 GEMMs', async () => {
    const info = fakeInfo({
      subgroupMatrixConfigs: [{ componentType: 'f32', resultComponentType: 'f32', M: 8, N: 8, K: 8 }],
    });
    const choice = await selectGemmTiles(info, passes);
    expect(choice.f32).toMatchObject({ kind: 'matrix', config: { component: 'f32', M: 8, N: 8, K: 8 } });
    expect(choice.f16.kind).toBe('tiled');
  });

  it('a kernel that fails to compile is tiled with the error as the reason', async () => {
    const choice = await selectGemmTiles(fakeInfo(), async () => {
      throw new Error('kernel gemm-probe does not compile: 3:1 bad\nmore');
    });
    expect(choice.f16).toEqual({
      kind: 'tiled',
      reason: 'self-check failed: kernel gemm-probe does not compile: 3:1 bad',
    });
    expect(choice.matrix).toEqual({});
  });

  it.each([
    ['a mismatch', 0.25],
    ['NaN', NaN],
    ['just above the tolerance', SELF_CHECK_TOLERANCE * 1.01],
  ])('%s is tiled with the error as the reason', async (_, error) => {
    const choice = await selectGemmTiles(fakeInfo(), async () => error);
    expect(choice.f16.kind).toBe('tiled');
    expect(choice.f16.kind === 'tiled' && choice.f16.reason).toMatch(
      /^self-check failed: subgroup-matrix f16 16x16x16 differs from the tiled GEMM by .* \(tolerance 0\.001\)$/,
    );
    expect(choice.summary).toContain('f16 tiled: self-check failed');
  });

  it.each<[string, Partial<GpuDeviceInfo>, RegExp]>([
    [
      'no subgroups',
      { features: { 'shader-f16': true, subgroups: false, 'chromium-experimental-subgroup-matrix': true } },
      /subgroups not granted/,
    ],
    [
      'no shader-f16',
      { features: { 'shader-f16': false, subgroups: true, 'chromium-experimental-subgroup-matrix': true } },
      /shader-f16 not granted/,
    ],
    ['an unknown subgroup size', { subgroupSizes: { min: 0, max: 0 } }, /subgroup size unknown/],
    [
      'only f16 -> f16',
      { subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f16', M: 16, N: 16, K: 16 }] },
      /no f16 x f16 -> f32 config \(offered: f16->f16 16x16x16\)/,
    ],
    [
      'sides the tiles do not divide',
      { subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', M: 12, N: 16, K: 16 }] },
      /no f16 config with sides in 8\/16\/32/,
    ],
    ['subgroups too wide for the workgroup limit', { subgroupSizes: { min: 512, max: 512 } }, /invocations/],
  ])('%s: tiled with the reason', async (_, over, reason) => {
    const plan = planMatrixGemm(fakeInfo(over), 'f16');
    expect('reason' in plan && plan.reason).toMatch(reason);
    expect((await selectGemmTiles(fakeInfo(over), neverCalled)).f16.kind).toBe('tiled');
  });

  it('too little workgroup memory: tiled with the reason', () => {
    const info = fakeInfo();
    const plan = planMatrixGemm({ ...info, limits: { ...info.limits, maxComputeWorkgroupStorageSize: 16384 } }, 'f16');
    expect('reason' in plan && plan.reason).toMatch(/bytes of workgroup memory are above the device's 16384/);
  });
});

describe('subgroup-matrix GEMM WGSL', () => {
  const spec = probeSpec('f16', 'probe');

  it.each<[MatrixGemmConfig]>([
    [F16_16],
    [{ component: 'f16', M: 8, N: 8, K: 8, subgroupSize: 32 }],
    [{ component: 'f32', M: 8, N: 8, K: 8, subgroupSize: 64 }],
    [{ component: 'f16', M: 16, N: 8, K: 16, subgroupSize: 32 }],
  ])('%o: the enables, column-first matrix types, a workgroup of whole subgroups', (c) => {
    const k = matrixGemmKernel(c.component === 'f16' ? spec : probeSpec('f32', 'probe'), c);
    const T = c.component;
    const L = matrixGemmLayout(PROBE, c);
    expect(k.code.startsWith('enable chromium_experimental_subgroup_matrix;\nenable subgroups;\n')).toBe(true);
    expect(k.code.match(/enable f16;/g)?.length ?? 0).toBe(T === 'f16' ? 1 : 0);
    expect(k.code).toContain(`subgroup_matrix_left<${T}, ${c.K}, ${c.M}>`);
    expect(k.code).toContain(`subgroup_matrix_right<${T}, ${c.N}, ${c.K}>`);
    expect(k.code).toContain(`subgroup_matrix_result<f32, ${c.N}, ${c.M}>`);
    expect(k.code).toContain(`@workgroup_size(${L.threads}, 1, 1)`);
    expect(L.threads % c.subgroupSize).toBe(0);
    // Four subgroups cover the 64 x 64 tile with whole fragments.
    expect(L.FM * c.M * 2).toBe(L.TM);
    expect(L.FN * c.N * 2).toBe(L.TN);
    expect(k.code).toMatch(/subgroupMatrixLoad<Left, row_major>\(&As, [^;]+, TK\)/);
    expect(k.code).toMatch(/subgroupMatrixLoad<Right, row_major>\(&Bs, [^;]+, TN\)/);
    expect(k.code).toMatch(/subgroupMatrixStore<row_major>\(&Cs, [^;]+, acc\[r\]\[f\], TN\)/);
    expect(k.code).toContain(`var<workgroup> As: array<${T}, ${L.TM * L.TK}>;`);
    // Every brace closed, and the barriers outside the subgroup-dependent branches (uniform control flow).
    expect(k.code.split('{').length).toBe(k.code.split('}').length);
    expect(k.key).toBe(`probe:sgm-${T}-${c.M}x${c.N}x${c.K}-sg${c.subgroupSize}`);
  });

  it('writes the same K slices as the tiled core (split products size their partial sums by them)', () => {
    // K 200 in 6: the tiled core's 48-deep slices make 5 of them, 64-deep ones (two of its 32-deep steps) only 4.
    for (const s of [
      { M: 100, N: 72, K: 200, splitK: 6 },
      { M: 256, N: 512, K: 3000, splitK: productSplit(256, 512, 3000) },
    ]) {
      expect(s.splitK).toBeGreaterThan(1);
      expect(matrixGemmLayout(s, F16_16).workgroups[2]).toBe(gemmLayout(s).workgroups[2]);
    }
  });
});

describe('routing', () => {
  afterEach(() => useMatrixGemm({}));
  const f16 = { act: 'f16', weight: 'f16' } as const;
  const f32 = { act: 'f32', weight: 'f32' } as const;
  const oneByOne = convShape({ batch: 2, inH: 8, inW: 8, inC: 64, outC: 96, kernel: 1, stride: 1 });
  const grouped = convShape(CASES[4]![1]);

  it('nothing chosen: every GEMM is the tiled kernel, text and key', () => {
    const spec = probeSpec('f16', 'probe');
    expect(gemmKernel(spec)).toEqual(tiledGemmKernel(spec));
    const k = conv2dForwardKernel(oneByOne, f16);
    expect(k.key).not.toContain('sgm');
    expect(k.code).not.toContain('subgroup');
  });

  it('f16 chosen: mixed-precision 1x1 convolutions and f16 products run on it; f32 ones and grouped ones stay tiled', () => {
    useMatrixGemm({ f16: F16_16 });
    expect(conv2dForwardKernel(oneByOne, f16).key).toContain(':sgm-f16-16x16x16');
    expect(conv2dFilterGradKernel(oneByOne, f16, 2).key).toContain(':sgm-f16');
    expect(conv2dForwardKernel(oneByOne, f32).key).not.toContain('sgm');
    expect(conv2dForwardKernel(grouped, f16).key).not.toContain('sgm'); // 8 channels per group
    const product = { M: 256, N: 512, K: 128, aT: false, bT: false, out: 'f32' } as const;
    expect(matmulKernel({ ...product, a: 'f16', b: 'f16' }).key).toContain('sgm');
    expect(matmulKernel({ ...product, a: 'f32', b: 'f16' }).key).not.toContain('sgm');
  });

  it('an explicit null keeps one GEMM tiled whatever is chosen', () => {
    useMatrixGemm({ f16: F16_16 });
    const spec = probeSpec('f16', 'probe');
    expect(gemmKernel(spec).key).toBe('probe');
    expect(gemmKernel({ ...spec, matrix: undefined }).key).toContain('sgm');
  });
});

describe('self-check on the device (lavapipe: substitute kernels)', () => {
  let runner: GpuRunner;
  beforeAll(async () => {
    runner = await openTestRunner();
  });
  afterAll(() => runner?.ctx.destroy());

  const offered = () => runner.ctx.info.features['chromium-experimental-subgroup-matrix'];

  it('openDevice chose the tiles and says why on the device line (lavapipe: feature not offered)', () => {
    const { info } = runner.ctx;
    const want = offered()
      ? /^gemm tiles: (f16 subgroup-matrix|.*self-check failed)/
      : /^gemm tiles: tiled: feature not offered$/;
    expect(info.gemm?.summary).toMatch(want);
    expect(describeDevice(info)).toContain(info.gemm!.summary);
  });

  it("the generated WGSL passes Dawn's parser (lavapipe: the only error is the extension it lacks)", async () => {
    const compiled = runner.pipeline(
      matrixGemmKernel(probeSpec('f16', 'parse'), { ...F16_16, subgroupSize: runner.ctx.info.subgroupSizes.max }),
    );
    if (offered()) return void (await expect(compiled).resolves.toBeDefined());
    const err = await compiled.catch((e: Error) => e);
    expect(String(err)).toMatch(
      /does not compile: 1:8 extension 'chromium_experimental_subgroup_matrix' is not allowed/,
    );
    expect(String(err)).not.toContain(';'); // one message: no syntax error anywhere else
  });

  const info = fakeInfo({ subgroupSizes: { min: 8, max: 8 } });
  /** The tiled probe under another key, with its stores scaled by `factor`. */
  const substitute =
    (factor: number) =>
    (spec: Parameters<typeof tiledGemmKernel>[0]): Kernel =>
      tiledGemmKernel({
        ...spec,
        key: `${spec.key}:substitute-${factor}`,
        prelude: spec.prelude.replace('= v;', `= v * ${factor};`),
      });

  it('a kernel that agrees with the tiled one is chosen', async () => {
    const choice = await selectGemmTiles(info, gpuSelfCheck(runner, substitute(1)));
    expect(choice.f16).toMatchObject({ kind: 'matrix', error: 0 });
  });

  it('a kernel 1% off is refused with the measured error', async () => {
    const choice = await selectGemmTiles(info, gpuSelfCheck(runner, substitute(1.01)));
    expect(choice.f16.kind === 'tiled' && choice.f16.reason).toMatch(/differs from the tiled GEMM by 0\.0(099\d|100) /);
  });

  it('the real kernel (lavapipe: refused) is a compile failure caught as a reason; the device still works', async () => {
    const choice = await selectGemmTiles(offered() ? runner.ctx.info : info, gpuSelfCheck(runner));
    if (offered()) expect(choice.f16).toEqual(runner.ctx.info.gemm!.f16);
    else
      expect(choice.f16.kind === 'tiled' && choice.f16.reason).toMatch(
        /^self-check failed: kernel gemm-probe:f16:sgm-f16-16x16x16-sg8 does not compile: .*not allowed/,
      );
    const again = await selectGemmTiles(info, gpuSelfCheck(runner, substitute(1)));
    expect(again.f16.kind).toBe('matrix');
  });
});

/**
 * The subgroup-matrix kernel's tiling (staging, fragment offsets and strides, bounds, groups, K slices, the
 * result's way back through workgroup memory) with plain WGSL in place of the matrix builtins: what lavapipe can
 * run of it. Only the builtins themselves are left to a GPU that has them.
 */
describe('subgroup-matrix GEMM, emulated builtins (lavapipe)', () => {
  let runner: GpuRunner;
  beforeAll(async () => {
    runner = await openTestRunner();
  });
  afterAll(() => {
    useMatrixGemm({});
    runner?.ctx.destroy();
  });
  const emulated = (c: MatrixGemmConfig): MatrixGemmConfig => ({
    ...c,
    subgroupSize: runner.ctx.info.subgroupSizes.max,
    emulate: true,
  });

  it.each<[string, number, number, number]>([
    ['16x16x16', 16, 16, 16],
    ['16x8x16 (not square)', 16, 8, 16],
  ])('%s agrees with the tiled core on the probe (odd sizes, two groups)', async (_, M, N, K) => {
    const info = fakeInfo({
      subgroupSizes: runner.ctx.info.subgroupSizes,
      subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', M, N, K }],
    });
    const choice = await selectGemmTiles(
      info,
      gpuSelfCheck(runner, (spec, c) => matrixGemmKernel(spec, { ...c, emulate: true })),
    );
    expect(choice.f16).toMatchObject({ kind: 'matrix', config: { M, N, K } });
    expect(choice.f16.kind === 'matrix' && choice.f16.error).toBeLessThan(1e-6);
  });

  it('writes every K slice of a split GEMM as the tiled core does', async () => {
    const [M, N, K, splitK] = [100, 72, 200, 6];
    const prelude = `enable f16;
@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read> b: array<f16>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
fn loadA(m: u32, k: u32, g: u32) -> f32 { return f32(a[m * ${K}u + k]); }
fn loadB(k: u32, n: u32, g: u32) -> f32 { return f32(b[k * ${N}u + n]); }
fn store(m: u32, n: u32, g: u32, s: u32, v: f32) { c[(s * ${M}u + m) * ${N}u + n] = v; }
`;
    const spec = {
      key: 'split-probe',
      M,
      N,
      K,
      splitK,
      operands: 'f16',
      aContiguous: 'k',
      bContiguous: 'mn',
      prelude,
    } as const;
    const slices = gemmLayout(spec).splitK;
    expect(slices).toBe(5);
    const a = upload(runner, [M, K], 'f16', randomValues(M * K, 3));
    const b = upload(runner, [K, N], 'f16', randomValues(K * N, 4));
    const [want, got] = [runner.tensor([slices, M, N]), runner.tensor([slices, M, N])];
    const matrix = matrixGemmKernel(spec, emulated(F16_16));
    expect(matrix.workgroups[2]).toBe(slices);
    const rec = await runner.record([
      { kernel: tiledGemmKernel(spec), buffers: [a, b, want] },
      { kernel: matrix, buffers: [a, b, got] },
    ]);
    rec.submit();
    expect(scaledError(await runner.read(got), await runner.read(want))).toBeLessThan(1e-6);
    runner.release(a, b, want, got);
  });

  it.each([CASES[0]!, CASES[2]!])('routed convolution %s (f16) matches tfjs cpu', async (_, o) => {
    useMatrixGemm({ f16: emulated(F16_16) });
    const f16 = { act: 'f16', weight: 'f16' } as const;
    expect(conv2dForwardKernel(convShape(o), f16).key).toContain('-emulated');
    const e = await runConv(runner, o, f16, 21);
    expect(e.y).toBeLessThan(F16_TOL);
    expect(e.dx).toBeLessThan(F16_TOL);
    expect(e.dw).toBeLessThan(F16_TOL);
  });
});
