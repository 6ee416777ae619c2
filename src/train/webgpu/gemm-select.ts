/**
 * Which GEMM tiles the engine runs: subgroup matrices (tensor cores) where the device grants Dawn's
 * `chromium-experimental-subgroup-matrix`, reports a config the kernel fits (f16 x f16 -> f32 for mixed
 * precision's f16 operands, f32 x f32 -> f32 for f32 ones) and the kernel passes a self-check; the tiled core
 * otherwise, with the reason. The self-check compiles the subgroup-matrix GEMM, runs it once beside the tiled
 * one on a probe shape (odd sizes, two groups) and keeps it only if every element agrees within
 * SELF_CHECK_TOLERANCE of the output's largest magnitude. A refused shader, a validation or internal error, a
 * probe that does not finish within SELF_CHECK_TIMEOUT_MS, or a mismatch each keep the tiled core.
 */
import type { GemmTilesChoice, GemmTilesPick, GpuDeviceInfo } from './device-info.js';
import type { Dtype, Kernel } from './kernel.js';
import { tiledGemmKernel, type GemmSpec, type MatrixGemmChoice } from './kernels/gemm.js';
import {
  describeMatrixConfig,
  MATRIX_SIDES,
  matrixGemmKernel,
  matrixGemmLayout,
  type MatrixGemmConfig,
} from './kernels/matrix-gemm.js';
import type { GpuRunner } from './runner.js';

export type { GemmTilesChoice, GemmTilesPick } from './device-info.js';

/** Largest |matrix - tiled| accepted, relative to the probe output's largest |value|. */
export const SELF_CHECK_TOLERANCE = 1e-3;
export const SELF_CHECK_TIMEOUT_MS = 60_000;

/** The probe GEMM: sizes that are no multiple of any tile, so the bounds checks are exercised too. */
export const PROBE = { M: 100, N: 72, K: 88, groups: 2 } as const;

/** Runs the subgroup-matrix GEMM for `config` beside the tiled one; returns the scaled error, throws if it cannot. */
export type SelfCheck = (config: MatrixGemmConfig) => Promise<number>;

/**
 * The config a GEMM with `operands` could use on this device, or why none: the feature, subgroups (subgroup_id),
 * shader-f16 for f16 configs, a known subgroup size, a config of that component type with an f32 result and sides
 * the tile layout divides, and a workgroup within the device's limits. Configs are tried in the adapter's order
 * (Vulkan lists the preferred first).
 */
export function planMatrixGemm(
  info: GpuDeviceInfo,
  operands: Dtype,
): { config: MatrixGemmConfig } | { reason: string } {
  if (!info.features['chromium-experimental-subgroup-matrix']) return { reason: 'feature not offered' };
  if (!info.features.subgroups) return { reason: 'subgroups not granted' };
  if (operands === 'f16' && !info.features['shader-f16']) return { reason: 'shader-f16 not granted' };
  const subgroupSize = info.subgroupSizes.max;
  if (!subgroupSize) return { reason: 'subgroup size unknown' };
  const sides = MATRIX_SIDES as readonly number[];
  const typed = info.subgroupMatrixConfigs.filter(
    (c) => c.componentType === operands && c.resultComponentType === 'f32',
  );
  const usable = typed.filter((c) => sides.includes(c.M) && sides.includes(c.N) && sides.includes(c.K));
  if (!usable.length) {
    const offered = info.subgroupMatrixConfigs.map(
      (c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`,
    );
    return {
      reason: typed.length
        ? `no ${operands} config with sides in ${sides.join('/')} (offered: ${offered.join(', ')})`
        : `no ${operands} x ${operands} -> f32 config (offered: ${offered.join(', ') || 'none'})`,
    };
  }
  let why = '';
  for (const c of usable) {
    const config: MatrixGemmConfig = { component: operands, M: c.M, N: c.N, K: c.K, subgroupSize };
    const L = matrixGemmLayout(PROBE, config);
    if (L.threads > info.limits.maxComputeInvocationsPerWorkgroup || L.threads > info.limits.maxComputeWorkgroupSizeX)
      why = `a workgroup of ${L.threads} invocations is above the device's limit`;
    else if (L.workgroupBytes > info.limits.maxComputeWorkgroupStorageSize)
      why = `${L.workgroupBytes} bytes of workgroup memory are above the device's ${info.limits.maxComputeWorkgroupStorageSize}`;
    else return { config };
  }
  return { reason: why };
}

/** Plans and self-checks a config per operand type; never throws (a failure is a reason). */
export async function selectGemmTiles(info: GpuDeviceInfo, check: SelfCheck): Promise<GemmTilesChoice> {
  const pick = async (operands: Dtype): Promise<GemmTilesPick> => {
    const plan = planMatrixGemm(info, operands);
    if ('reason' in plan) return { kind: 'tiled', reason: plan.reason };
    let error: number;
    try {
      error = await check(plan.config);
    } catch (err) {
      return { kind: 'tiled', reason: `self-check failed: ${firstLine(err)}` };
    }
    if (!(error <= SELF_CHECK_TOLERANCE))
      return {
        kind: 'tiled',
        reason: `self-check failed: ${describeMatrixConfig(plan.config)} differs from the tiled GEMM by ${error.toPrecision(3)} of the output's scale (tolerance ${SELF_CHECK_TOLERANCE})`,
      };
    return { kind: 'matrix', config: plan.config, error };
  };
  const f16 = await pick('f16');
  const f32 = await pick('f32');
  return { f16, f32, matrix: choiceOf(f16, f32), summary: summarize(f16, f32) };
}

function choiceOf(f16: GemmTilesPick, f32: GemmTilesPick): MatrixGemmChoice {
  const choice: MatrixGemmChoice = {};
  if (f16.kind === 'matrix') choice.f16 = f16.config;
  if (f32.kind === 'matrix') choice.f32 = f32.config;
  return choice;
}

const label = (p: GemmTilesPick) => (p.kind === 'matrix' ? describeMatrixConfig(p.config) : `tiled: ${p.reason}`);

function summarize(f16: GemmTilesPick, f32: GemmTilesPick): string {
  if (f16.kind === 'tiled' && f32.kind === 'tiled' && f16.reason === f32.reason) return `gemm tiles: ${label(f16)}`;
  return `gemm tiles: f16 ${label(f16)}; f32 ${label(f32)}`;
}

/** The choice when no self-check runs: everything tiled, for the stated reason. */
export function tiledChoice(reason: string): GemmTilesChoice {
  const t: GemmTilesPick = { kind: 'tiled', reason };
  return { f16: t, f32: t, matrix: {}, summary: summarize(t, t) };
}

/**
 * The probe GEMM's spec: C[g][m, n] = sum_k A[g][m, k] B[g][k, n], A and B stored as `operands`, C f32; bindings
 * a, b, c.
 */
export function probeSpec(operands: Dtype, key: string): GemmSpec {
  const { M, N, K } = PROBE;
  const prelude = `${operands === 'f16' ? 'enable f16;' : ''}
@group(0) @binding(0) var<storage, read> a: array<${operands}>;
@group(0) @binding(1) var<storage, read> b: array<${operands}>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
fn loadA(m: u32, k: u32, g: u32) -> f32 { return f32(a[(g * ${M}u + m) * ${K}u + k]); }
fn loadB(k: u32, n: u32, g: u32) -> f32 { return f32(b[(g * ${K}u + k) * ${N}u + n]); }
fn store(m: u32, n: u32, g: u32, s: u32, v: f32) { c[(g * ${M}u + m) * ${N}u + n] = v; }
`;
  return { key, ...PROBE, operands, aContiguous: 'k', bContiguous: 'mn', prelude, matrix: null };
}

/**
 * The self-check on a real device: the tiled and the subgroup-matrix probe GEMMs on the same inputs (values
 * k/8 - 1 for small k, exact in f16), inside validation and internal error scopes. `matrixKernel` is the kernel
 * under test (tests substitute one).
 */
export function gpuSelfCheck(
  runner: GpuRunner,
  matrixKernel: (spec: GemmSpec, config: MatrixGemmConfig) => Kernel = matrixGemmKernel,
): SelfCheck {
  return async (config) => {
    const ops = config.component;
    const { M, N, K, groups } = PROBE;
    const spec = probeSpec(ops, `gemm-probe:${ops}`);
    const a = runner.tensor([groups, M, K], ops);
    const b = runner.tensor([groups, K, N], ops);
    const [want, got] = [runner.tensor([groups, M, N]), runner.tensor([groups, M, N])];
    const device = runner.device;
    device.pushErrorScope('internal');
    device.pushErrorScope('validation');
    let scoped = true;
    const popScopes = async () => {
      if (!scoped) return null;
      scoped = false;
      const [validation, internal] = [device.popErrorScope(), device.popErrorScope()];
      return (await validation) ?? (await internal);
    };
    try {
      runner.write(
        a,
        Array.from({ length: a.size }, (_, i) => ((i * 7) % 17) / 8 - 1),
      );
      runner.write(
        b,
        Array.from({ length: b.size }, (_, i) => ((i * 5) % 13) / 8 - 0.75),
      );
      const run = async () => {
        const rec = await runner.record([
          { kernel: tiledGemmKernel(spec), buffers: [a, b, want] },
          { kernel: matrixKernel(spec, config), buffers: [a, b, got] },
        ]);
        rec.submit();
        await runner.sync();
        const error = await popScopes();
        if (error) throw new Error(error.message);
        return scaledError(await runner.read(got), await runner.read(want));
      };
      return await withTimeout(run(), SELF_CHECK_TIMEOUT_MS, 'the probe did not finish');
    } finally {
      await popScopes();
      runner.release(a, b, want, got);
      runner.trim();
    }
  };
}

/** max |got - want| / max |want|; NaN anywhere is Infinity. */
export function scaledError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) throw new RangeError(`scaledError: length ${got.length} != ${want.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  return diff / (scale || 1);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.trim();
}
