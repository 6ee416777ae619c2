/**
 * Training-mode BatchNorm over the rows of an NHWC activation ([rows = batch*H*W, C]), fused with the ReLU that
 * follows it in every RegNet block, in three dispatches recorded together:
 *   stats     per (channel tile, row chunk): sums of (x - x[0, c]) and its square, in f32
 *   finalize  per channel: batch mean and biased variance (what normalises), 1/sqrt(var + eps), the folded
 *             scale, and the running statistics' update (momentum, unbiased variance, as PyTorch)
 *   apply     y = relu((x - mean) * scale + beta), stored as the activation type
 * Sums are taken about each channel's first value, not zero: E[x^2] - E[x]^2 in f32 loses every digit of the
 * variance when |mean| >> std, while about a sample of the channel the two terms stay of the variance's size.
 * For the same reason `apply` centres before scaling: x * scale + (beta - mean * scale) cancels in f32.
 */
import type { Dispatch, Dtype, GpuTensor, Kernel } from '../runner.js';
import { elementwiseEntry, elementwiseGroups, enableF16 } from './elementwise.js';

export interface BatchNormShape {
  /** batch * height * width. */
  rows: number;
  channels: number;
}

export interface BatchNormOptions {
  /** @default 1e-5 */
  epsilon?: number;
  /** Weight of the batch statistics in the running ones. @default 0.1 */
  momentum?: number;
  /** Apply max(0, .) after the affine transform. @default true */
  relu?: boolean;
  /** Workgroups the statistics pass aims at (it splits the rows into chunks to get them). @default 512 */
  parallelism?: number;
}

/**
 * The `stats` tensor's layout, [4, C]: rows MEAN and INV_STD are what the backward pass needs, SCALE is
 * gamma * INV_STD and BETA a copy of beta, so `apply` reads one tensor. `running` is [2, C]: running mean, running (unbiased) variance.
 */
export const BN_STATS = { MEAN: 0, INV_STD: 1, SCALE: 2, BETA: 3, ROWS: 4 } as const;

const MAX_DIM = 65535;

/**
 * How a per-channel sums pass over [rows, C] splits the work (the forward's statistics, the backward's gradient
 * sums): workgroups of CT channels x RT rows, the rows cut into `chunks` of `rowsPerChunk`, one workgroup per
 * (channel tile, chunk), each writing its two sums per channel to `partial` ([chunks, C, 2] f32).
 */
export interface ChannelSumsLayout {
  CT: number;
  RT: number;
  chunks: number;
  rowsPerChunk: number;
}

/** The layout that gives about `parallelism` workgroups. */
export function channelSumsLayout(s: BatchNormShape, parallelism: number): ChannelSumsLayout {
  const CT = Math.min(32, Math.max(4, 2 ** Math.ceil(Math.log2(s.channels))));
  const RT = 256 / CT;
  const tiles = Math.ceil(s.channels / CT);
  // Each chunk gives every thread at least 4 rows to sum, so chunking never costs more than it saves.
  const chunks = Math.max(1, Math.min(MAX_DIM, Math.ceil(parallelism / tiles), Math.floor(s.rows / (RT * 4))));
  return { CT, RT, chunks, rowsPerChunk: Math.ceil(s.rows / chunks) };
}

/**
 * WGSL: the constants, workgroup storage and entry point of a sums pass laid out by `L`. Each thread sums `a`
 * and `b` over its rows of channel `c`: `setup` runs once before its rows (when c < C), `row` once per row `r`
 * and adds to `a` and `b`; `helpers` are functions they call. The threads of a channel are then reduced in the
 * workgroup and the chunk's sums written to `partial`, which the module binds.
 */
export function channelSumsMain(
  s: BatchNormShape,
  L: ChannelSumsLayout,
  body: { helpers?: string; setup?: string; row: string },
): string {
  return `const R = ${s.rows}u; const C = ${s.channels}u; const CT = ${L.CT}u; const RT = ${L.RT}u; const CHUNK = ${L.rowsPerChunk}u;
var<workgroup> s1: array<f32, 256>;
var<workgroup> s2: array<f32, 256>;
${body.helpers ? `${body.helpers}\n` : ''}@compute @workgroup_size(${L.CT}, ${L.RT}, 1)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x * CT + lid.x;
  let r0 = wid.y * CHUNK;
  let r1 = min(R, r0 + CHUNK);
  var a = 0.0;
  var b = 0.0;
  if (c < C) {
${body.setup ? `    ${body.setup}\n` : ''}    for (var r = r0 + lid.y; r < r1; r += RT) {
      ${body.row}
    }
  }
  let i = lid.y * CT + lid.x;
  s1[i] = a;
  s2[i] = b;
  for (var step = RT / 2u; step > 0u; step /= 2u) {
    workgroupBarrier();
    if (lid.y < step) {
      s1[i] += s1[i + step * CT];
      s2[i] += s2[i + step * CT];
    }
  }
  if (lid.y == 0u && c < C) {
    partial[(wid.y * C + c) * 2u] = s1[i];
    partial[(wid.y * C + c) * 2u + 1u] = s2[i];
  }
}`;
}

/**
 * WGSL: the entry point of a per-channel pass after a sums pass (one thread per channel `c` < C, which the
 * module declares), with `a` and `b` the totals of the two sums over `chunks` chunks of `partial`. The caller
 * appends the body and the closing brace.
 */
export function chunkTotalsEntry(chunks: number): string {
  return `@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  if (c >= C) { return; }
  var a = 0.0;
  var b = 0.0;
  for (var k = 0u; k < ${chunks}u; k++) {
    a += partial[(k * C + c) * 2u];
    b += partial[(k * C + c) * 2u + 1u];
  }`;
}

function key(s: BatchNormShape, act: Dtype): string {
  return `${s.rows}x${s.channels}:${act}`;
}

/** Partial sums: bindings x, partial ([chunks, C, 2] f32). */
export function batchNormStatsKernel(s: BatchNormShape, act: Dtype, parallelism = 512): Kernel & { chunks: number } {
  const L = channelSumsLayout(s, parallelism);
  const code = /* wgsl */ `${enableF16(act)}
@group(0) @binding(0) var<storage, read> x: array<${act}>;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
${channelSumsMain(s, L, {
  setup: 'let shift = f32(x[c]);',
  row: `let d = f32(x[r * C + c]) - shift;
      a += d;
      b = fma(d, d, b);`,
})}
`;
  return {
    key: `bn-stats:${key(s, act)}:${L.chunks}`,
    code,
    workgroups: [Math.ceil(s.channels / L.CT), L.chunks, 1],
    chunks: L.chunks,
  };
}

/** Statistics and running update: bindings x, partial, gamma, beta, stats ([4, C]), running ([2, C]). */
export function batchNormFinalizeKernel(
  s: BatchNormShape,
  act: Dtype,
  chunks: number,
  o: BatchNormOptions = {},
): Kernel {
  const eps = o.epsilon ?? 1e-5;
  const momentum = o.momentum ?? 0.1;
  const n = s.rows;
  const code = /* wgsl */ `${enableF16(act)}
@group(0) @binding(0) var<storage, read> x: array<${act}>;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> running: array<f32>;
const C = ${s.channels}u;
${chunkTotalsEntry(chunks)}
  let d = a / ${n}.0;
  let variance = max(0.0, b / ${n}.0 - d * d);
  let mean = f32(x[c]) + d;
  let invStd = inverseSqrt(variance + ${eps});
  let scale = gamma[c] * invStd;
  stats[${BN_STATS.MEAN}u * C + c] = mean;
  stats[${BN_STATS.INV_STD}u * C + c] = invStd;
  stats[${BN_STATS.SCALE}u * C + c] = scale;
  stats[${BN_STATS.BETA}u * C + c] = beta[c];
  running[c] = mix(running[c], mean, ${momentum});
  running[C + c] = mix(running[C + c], variance * ${n / Math.max(1, n - 1)}, ${momentum});
}
`;
  return {
    key: `bn-finalize:${key(s, act)}:${chunks}:${eps}:${momentum}`,
    code,
    workgroups: [Math.ceil(s.channels / 64), 1, 1],
  };
}

/** y = relu?((x - mean) * scale + beta): bindings x, stats, y. */
export function batchNormApplyKernel(s: BatchNormShape, act: Dtype, relu = true): Kernel {
  const total = s.rows * s.channels;
  const code = /* wgsl */ `${enableF16(act)}
@group(0) @binding(0) var<storage, read> x: array<${act}>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<${act}>;
const C = ${s.channels}u;
${elementwiseEntry(total)}
  let c = i % C;
  let v = fma(f32(x[i]) - stats[${BN_STATS.MEAN}u * C + c], stats[${BN_STATS.SCALE}u * C + c], stats[${BN_STATS.BETA}u * C + c]);
  y[i] = ${act}(${relu ? 'max(v, 0.0)' : 'v'});
}
`;
  return {
    key: `bn-apply:${key(s, act)}:${relu ? 'relu' : 'id'}`,
    code,
    workgroups: elementwiseGroups(total),
  };
}

export interface BatchNormTensors {
  x: GpuTensor;
  gamma: GpuTensor;
  beta: GpuTensor;
  /** [4, C] f32, written: see BN_STATS. */
  stats: GpuTensor;
  /** [2, C] f32, updated in place. */
  running: GpuTensor;
  y: GpuTensor;
}

/** The three dispatches of a training-mode BatchNorm (+ ReLU); `scratch` provides the partial sums (f32). */
export function batchNormForward(
  s: BatchNormShape,
  t: BatchNormTensors,
  scratch: (shape: number[]) => GpuTensor,
  o: BatchNormOptions = {},
): Dispatch[] {
  const act = t.x.dtype;
  const stats = batchNormStatsKernel(s, act, o.parallelism);
  const partial = scratch([stats.chunks, s.channels, 2]);
  return [
    { kernel: stats, buffers: [t.x, partial] },
    {
      kernel: batchNormFinalizeKernel(s, act, stats.chunks, o),
      buffers: [t.x, partial, t.gamma, t.beta, t.stats, t.running],
    },
    { kernel: batchNormApplyKernel(s, act, o.relu ?? true), buffers: [t.x, t.stats, t.y] },
  ];
}
