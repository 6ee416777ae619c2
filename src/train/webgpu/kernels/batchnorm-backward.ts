/**
 * The backward pass of training-mode BatchNorm (+ ReLU) over [rows, C], from the input and the statistics the
 * forward pass saved (BN_STATS: mean, 1/std, gamma/std, beta), in three dispatches recorded together:
 *   sums      per (channel tile, row chunk): sums of dz and dz * xhat in f32, where dz is dy masked by the ReLU
 *             (recomputed from x exactly as the forward computed it, so the mask is the forward's) and
 *             xhat = (x - mean) / std
 *   finalize  per channel: dbeta = sum dz, dgamma = sum dz * xhat (f32)
 *   apply     dx = gamma / std * (dz - dbeta / n - xhat * dgamma / n), stored as the activation type
 * This is the closed form of layers.ts' batchNormTrain gradient (Ioffe & Szegedy).
 */
import type { Dispatch, Dtype, GpuTensor, Kernel } from '../runner.js';
import { BN_STATS, channelSumsLayout, channelSumsMain, chunkTotalsEntry, type BatchNormShape } from './batchnorm.js';
import { elementwiseEntry, elementwiseGroups, enableF16 } from './elementwise.js';

export interface BatchNormBackwardOptions {
  /** The forward applied max(0, .) after the affine transform. @default true */
  relu?: boolean;
  /** Workgroups the sums pass aims at (it splits the rows into chunks to get them). @default 512 */
  parallelism?: number;
}

/** WGSL: dz and xhat of element (r, c) from x, dy and the stats; the pre-ReLU value is the forward's fma. */
function gradAt(relu: boolean): string {
  return `fn gradAt(idx: u32, c: u32) -> vec2f {
  let centred = f32(x[idx]) - stats[${BN_STATS.MEAN}u * C + c];
  let g = f32(dy[idx]);
  ${
    relu
      ? `let z = fma(centred, stats[${BN_STATS.SCALE}u * C + c], stats[${BN_STATS.BETA}u * C + c]);
  let dz = select(0.0, g, z > 0.0);`
      : 'let dz = g;'
  }
  return vec2f(dz, centred * stats[${BN_STATS.INV_STD}u * C + c]);
}`;
}

function bindingsXDyStats(act: Dtype): string {
  return `@group(0) @binding(0) var<storage, read> x: array<${act}>;
@group(0) @binding(1) var<storage, read> dy: array<${act}>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;`;
}

function key(s: BatchNormShape, act: Dtype, relu: boolean): string {
  return `${s.rows}x${s.channels}:${act}:${relu ? 'relu' : 'id'}`;
}

/** Partial sums: bindings x, dy, stats, partial ([chunks, C, 2] f32: sum dz, sum dz * xhat). */
export function batchNormGradSumsKernel(
  s: BatchNormShape,
  act: Dtype,
  o: BatchNormBackwardOptions = {},
): Kernel & { chunks: number } {
  const relu = o.relu ?? true;
  const L = channelSumsLayout(s, o.parallelism ?? 512);
  const code = /* wgsl */ `${enableF16(act)}
${bindingsXDyStats(act)}
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
${channelSumsMain(s, L, {
  helpers: gradAt(relu),
  row: `let g = gradAt(r * C + c, c);
      a += g.x;
      b = fma(g.x, g.y, b);`,
})}
`;
  return {
    key: `bn-grad-sums:${key(s, act, relu)}:${L.chunks}`,
    code,
    workgroups: [Math.ceil(s.channels / L.CT), L.chunks, 1],
    chunks: L.chunks,
  };
}

/** dgamma and dbeta: bindings partial, dgamma ([C] f32), dbeta ([C] f32). */
export function batchNormGradFinalizeKernel(channels: number, chunks: number): Kernel {
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> dbeta: array<f32>;
const C = ${channels}u;
${chunkTotalsEntry(chunks)}
  dbeta[c] = a;
  dgamma[c] = b;
}
`;
  return { key: `bn-grad-finalize:${channels}:${chunks}`, code, workgroups: [Math.ceil(channels / 64), 1, 1] };
}

/** dx: bindings x, dy, stats, dgamma, dbeta, dx (`act`). */
export function batchNormGradApplyKernel(s: BatchNormShape, act: Dtype, relu = true): Kernel {
  const total = s.rows * s.channels;
  const code = /* wgsl */ `${enableF16(act)}
${bindingsXDyStats(act)}
@group(0) @binding(3) var<storage, read> dgamma: array<f32>;
@group(0) @binding(4) var<storage, read> dbeta: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<${act}>;
const C = ${s.channels}u;
const N = ${s.rows}.0;
${gradAt(relu)}
${elementwiseEntry(total)}
  let c = i % C;
  let g = gradAt(i, c);
  let centredGrad = g.x - dbeta[c] / N - g.y * (dgamma[c] / N);
  dx[i] = ${act}(centredGrad * stats[${BN_STATS.SCALE}u * C + c]);
}
`;
  return { key: `bn-grad-apply:${key(s, act, relu)}`, code, workgroups: elementwiseGroups(total) };
}

export interface BatchNormGradTensors {
  /** The forward's input and the statistics it wrote ([4, C], BN_STATS). */
  x: GpuTensor;
  stats: GpuTensor;
  /** Gradient of the output (after the ReLU when there is one), `act`. */
  dy: GpuTensor;
  dx: GpuTensor;
  /** [C] f32, written. */
  dgamma: GpuTensor;
  dbeta: GpuTensor;
}

/** The three dispatches of BatchNorm (+ ReLU) backward; `scratch` provides the partial sums (f32). */
export function batchNormBackward(
  s: BatchNormShape,
  t: BatchNormGradTensors,
  scratch: (shape: number[]) => GpuTensor,
  o: BatchNormBackwardOptions = {},
): Dispatch[] {
  const act = t.x.dtype;
  const relu = o.relu ?? true;
  const sums = batchNormGradSumsKernel(s, act, o);
  const partial = scratch([sums.chunks, s.channels, 2]);
  return [
    { kernel: sums, buffers: [t.x, t.dy, t.stats, partial] },
    { kernel: batchNormGradFinalizeKernel(s.channels, sums.chunks), buffers: [partial, t.dgamma, t.dbeta] },
    { kernel: batchNormGradApplyKernel(s, act, relu), buffers: [t.x, t.dy, t.stats, t.dgamma, t.dbeta, t.dx] },
  ];
}
