/**
 * The SwAV head of swav.ts' swavHead on the GPU, forward and backward, over the features of every crop at once
 * ([B = crops * batch, F], as model.ts concatenates them):
 *   a1     = features W1 + b1                    W1 [F, H] `swav.proj1.w`, b1 [H] `swav.proj1.b`
 *   h      = relu(batchNorm(a1))                 gamma, beta `swav.proj1.bn.*`, batch statistics (batchnorm.ts)
 *   p      = h W2 + b2                           W2 [H, D] `swav.proj2.w`, b2 [D] `swav.proj2.b`
 *   z      = p / max(|p|, 1e-12)                 per row (l2normalise)
 *   scores = z P                                 P [D, K] `swav.prototypes.w`
 * Matrices come from gemm.ts (the products and their gradients, split-K where the batch is the long axis) and
 * BatchNorm from batchnorm.ts / batchnorm-backward.ts ([B, H] is NHWC with H = W = 1). Everything between the
 * products is f32; `features`, `dfeatures` and the weight matrices may be f16 (weight copies), vectors are f32.
 */
import type { Dispatch, Dtype, GpuRunner, GpuTensor, Kernel } from '../runner.js';
import { batchNormForward, batchNormStatsKernel, BN_STATS, type BatchNormShape } from './batchnorm.js';
import { batchNormBackward, batchNormGradSumsKernel } from './batchnorm-backward.js';
import { elementwiseEntry, elementwiseGroups, enableF16 } from './elementwise.js';
import { gemmKernel, gemmLayout, splitKReduceKernel } from './gemm.js';

export interface SwavHeadShape {
  /** Rows: every crop's samples (crops * batch). */
  batch: number;
  /** Backbone feature width F. */
  features: number;
  /** Projection MLP hidden width H (SwavConfig.hidden). */
  hidden: number;
  /** Embedding width D (SwavConfig.dim). */
  dim: number;
  /** Prototype count K (SwavConfig.prototypes). */
  prototypes: number;
}

/** The head's weights (views of the engine's flat parameter buffers are fine). */
export interface SwavHeadWeights {
  /** [F, H], f32 master or f16 copy. */
  w1: GpuTensor;
  /** [H] f32. */
  b1: GpuTensor;
  /** [H] f32 each. */
  gamma: GpuTensor;
  beta: GpuTensor;
  /** [2, H] f32: running mean, running (unbiased) variance; updated in place by the forward. */
  running: GpuTensor;
  /** [H, D], f32 or f16. */
  w2: GpuTensor;
  /** [D] f32. */
  b2: GpuTensor;
  /** [D, K], f32 or f16 (unit columns: normalisePrototypesKernel). */
  prototypes: GpuTensor;
}

/** Gradients of the weights, f32, overwritten by the backward (not accumulated). */
export interface SwavHeadGrads {
  dw1: GpuTensor;
  db1: GpuTensor;
  dgamma: GpuTensor;
  dbeta: GpuTensor;
  dw2: GpuTensor;
  db2: GpuTensor;
  dprototypes: GpuTensor;
}

/**
 * Every tensor the head writes, allocated once by createSwavHeadState. Saved by the forward for the backward:
 * a1, stats, h, z, norm. `scores` is the output. The rest are the backward's temporaries and scratch.
 */
export interface SwavHeadState {
  /** [B, H] f32: the first product, BatchNorm's input. */
  a1: GpuTensor;
  /** [4, H] f32: BatchNorm's statistics (BN_STATS). */
  stats: GpuTensor;
  /** [B, H] f32: relu(batchNorm(a1)). */
  h: GpuTensor;
  /** [B, D] f32: the embeddings. */
  z: GpuTensor;
  /** [B] f32: max(|p|, 1e-12) per row. */
  norm: GpuTensor;
  /** [B, K] f32: prototype scores (row block v * batch.. is crop v). */
  scores: GpuTensor;
  dz: GpuTensor;
  dp: GpuTensor;
  dh: GpuTensor;
  da1: GpuTensor;
  bnPartial: GpuTensor;
  bnGradPartial: GpuTensor;
  /** Split-K partial sums of the weight gradients (one at a time: they run in order). */
  splitPartial: GpuTensor;
}

/** A GEMM over row-major tensors: out[m, n] = sum_k A[m, k] B[k, n] (+ bias[n]). */
export interface MatmulSpec {
  M: number;
  N: number;
  K: number;
  /** A is stored [K, M] (read transposed), else [M, K]. */
  aT: boolean;
  /** B is stored [N, K] (read transposed), else [K, N]. */
  bT: boolean;
  a: Dtype;
  b: Dtype;
  out: Dtype;
  /** Adds an f32 bias[n] (binding 2, before out); only without split-K. @default false */
  bias?: boolean;
  /** K slices, each stored at out[s * M * N ..] (f32 partial sums for splitKReduceKernel). @default 1 */
  splitK?: number;
}

/** Bindings a, b, [bias], out. */
export function matmulKernel(s: MatmulSpec): Kernel {
  const bias = s.bias ?? false;
  const splitK = s.splitK ?? 1;
  if (bias && splitK > 1) throw new RangeError('matmul: a bias with split-K would be added once per slice');
  const prelude = /* wgsl */ `${enableF16(s.a, s.b, s.out)}
@group(0) @binding(0) var<storage, read> a: array<${s.a}>;
@group(0) @binding(1) var<storage, read> b: array<${s.b}>;
${bias ? '@group(0) @binding(2) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(${bias ? 3 : 2}) var<storage, read_write> out: array<${s.out}>;
fn loadA(m: u32, k: u32, g: u32) -> f32 { return f32(a[${s.aT ? 'k * M + m' : 'm * K + k'}]); }
fn loadB(k: u32, n: u32, g: u32) -> f32 { return f32(b[${s.bT ? 'n * K + k' : 'k * N + n'}]); }
fn store(m: u32, n: u32, g: u32, s: u32, v: f32) { out[s * M * N + m * N + n] = ${s.out}(v${bias ? ' + bias[n]' : ''}); }
`;
  return gemmKernel({
    key: `matmul:${s.M}x${s.N}x${s.K}:${s.aT ? 'T' : 'N'}${s.bT ? 'T' : 'N'}:${s.a}/${s.b}/${s.out}:${bias ? 'bias' : ''}:k${splitK}`,
    M: s.M,
    N: s.N,
    K: s.K,
    splitK,
    aContiguous: s.aT ? 'mn' : 'k',
    bContiguous: s.bT ? 'k' : 'mn',
    prelude,
  });
}

/**
 * K slices for a weight gradient A^T D whose K is the batch: aims at `parallelism` workgroups, each slice at
 * least 8 K tiles deep (as conv2d's filterGradSplit).
 */
export function weightGradSplit(M: number, N: number, K: number, parallelism = 512): number {
  const { tileCount, tiles } = gemmLayout({ M, N, K });
  return Math.max(1, Math.min(Math.ceil(parallelism / tileCount), Math.floor(K / (tiles.TK * 8))));
}

/** dW (f32, [M, N]) = A^T D with A stored [K, M] and D [K, N]; through `partial` when split. */
function weightGrad(M: number, N: number, K: number, a: GpuTensor, d: GpuTensor, dw: GpuTensor, partial: GpuTensor) {
  const kernel = matmulKernel({
    M,
    N,
    K,
    aT: true,
    bT: false,
    a: a.dtype,
    b: d.dtype,
    out: 'f32',
    splitK: split(M, N, K),
  });
  const slices = kernel.workgroups[2]; // gemmLayout may merge slices that would be empty
  if (slices === 1) return [{ kernel, buffers: [a, d, dw] }];
  if (partial.size < slices * M * N)
    throw new RangeError(`head: split-K scratch of ${partial.size} < ${slices * M * N}`);
  return [
    { kernel, buffers: [a, d, partial] },
    { kernel: splitKReduceKernel(M * N, slices), buffers: [partial, dw] },
  ];
}

function split(M: number, N: number, K: number): number {
  return weightGradSplit(M, N, K);
}

/** out[c] = sum_r x[r, c] (a bias gradient): bindings x ([R, C] f32), out ([C] f32). */
export function columnSumKernel(rows: number, cols: number): Kernel {
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${elementwiseEntry(cols)}
  var acc = 0.0;
  for (var r = 0u; r < ${rows}u; r++) { acc += x[r * ${cols}u + i]; }
  out[i] = acc;
}
`;
  return { key: `column-sum:${rows}x${cols}`, code, workgroups: elementwiseGroups(cols) };
}

/** z = p / max(|p|, 1e-12) per row, as l2normalise: bindings p ([R, D] f32), z ([R, D] f32), norm ([R] f32). */
export function l2NormaliseKernel(rows: number, dim: number): Kernel {
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> p: array<f32>;
@group(0) @binding(1) var<storage, read_write> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> norm: array<f32>;
const D = ${dim}u;
${elementwiseEntry(rows)}
  var ss = 0.0;
  for (var d = 0u; d < D; d++) { let v = p[i * D + d]; ss = fma(v, v, ss); }
  let n = max(sqrt(ss), 1e-12);
  norm[i] = n;
  for (var d = 0u; d < D; d++) { z[i * D + d] = p[i * D + d] / n; }
}
`;
  return { key: `l2-normalise:${rows}x${dim}`, code, workgroups: elementwiseGroups(rows) };
}

/**
 * The backward of l2NormaliseKernel from its outputs: dp = (dz - z (z . dz)) / |p| where |p| >= 1e-12, else
 * dz / 1e-12 (tfjs' maximum sends the gradient to the floor there). Bindings z, norm, dz, dp (f32).
 */
export function l2NormaliseGradKernel(rows: number, dim: number): Kernel {
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> norm: array<f32>;
@group(0) @binding(2) var<storage, read> dz: array<f32>;
@group(0) @binding(3) var<storage, read_write> dp: array<f32>;
const D = ${dim}u;
${elementwiseEntry(rows)}
  let n = norm[i];
  var dot = 0.0;
  if (n > 1e-12) {
    for (var d = 0u; d < D; d++) { dot = fma(z[i * D + d], dz[i * D + d], dot); }
  }
  for (var d = 0u; d < D; d++) { dp[i * D + d] = (dz[i * D + d] - z[i * D + d] * dot) / n; }
}
`;
  return { key: `l2-normalise-grad:${rows}x${dim}`, code, workgroups: elementwiseGroups(rows) };
}

/**
 * Unit-length prototype columns, as normalisePrototypes (P [D, K] / max(|P[:, k]|, 1e-12)), in place. Bindings
 * p ([D, K] f32 masters, read_write) and, when `copy` is given, copy ([D, K] `copy`: the weight copy the head
 * reads, rewritten from the normalised masters).
 */
export function normalisePrototypesKernel(dim: number, prototypes: number, copy?: Dtype): Kernel {
  const code = /* wgsl */ `${enableF16(copy ?? 'f32')}
@group(0) @binding(0) var<storage, read_write> p: array<f32>;
${copy ? `@group(0) @binding(1) var<storage, read_write> copy: array<${copy}>;` : ''}
const D = ${dim}u; const K = ${prototypes}u;
${elementwiseEntry(prototypes)}
  var ss = 0.0;
  for (var d = 0u; d < D; d++) { let v = p[d * K + i]; ss = fma(v, v, ss); }
  let n = max(sqrt(ss), 1e-12);
  for (var d = 0u; d < D; d++) {
    let v = p[d * K + i] / n;
    p[d * K + i] = v;
    ${copy ? `copy[d * K + i] = ${copy}(v);` : ''}
  }
}
`;
  return {
    key: `normalise-prototypes:${dim}x${prototypes}:${copy ?? 'none'}`,
    code,
    workgroups: elementwiseGroups(prototypes),
  };
}

function bnShape(s: SwavHeadShape): BatchNormShape {
  return { rows: s.batch, channels: s.hidden };
}

/** Allocates every tensor the head's forward and backward write (once, outside any step). */
export function createSwavHeadState(runner: GpuRunner, s: SwavHeadShape): SwavHeadState {
  const bn = bnShape(s);
  const f32 = (shape: number[]) => runner.tensor(shape, 'f32');
  const splits = [
    [s.features, s.hidden],
    [s.hidden, s.dim],
    [s.dim, s.prototypes],
  ].map(([m, n]) => split(m!, n!, s.batch) * m! * n!);
  return {
    a1: f32([s.batch, s.hidden]),
    stats: f32([BN_STATS.ROWS, s.hidden]),
    h: f32([s.batch, s.hidden]),
    z: f32([s.batch, s.dim]),
    norm: f32([s.batch]),
    scores: f32([s.batch, s.prototypes]),
    dz: f32([s.batch, s.dim]),
    dp: f32([s.batch, s.dim]),
    dh: f32([s.batch, s.hidden]),
    da1: f32([s.batch, s.hidden]),
    bnPartial: f32([batchNormStatsKernel(bn, 'f32').chunks, s.hidden, 2]),
    bnGradPartial: f32([batchNormGradSumsKernel(bn, 'f32').chunks, s.hidden, 2]),
    splitPartial: f32([Math.max(1, ...splits)]),
  };
}

/** The preallocated `t` as BatchNorm's scratch; a larger request is a bug in the sizes above. */
function fixed(t: GpuTensor): (shape: number[]) => GpuTensor {
  return (shape) => {
    const size = shape.reduce((a, b) => a * b, 1);
    if (size > t.size) throw new RangeError(`head: scratch of ${t.size} elements for ${shape.join('x')}`);
    return t;
  };
}

function checkShape(name: string, t: GpuTensor, size: number): void {
  if (t.size !== size) throw new RangeError(`head: ${name} has ${t.size} elements, expected ${size}`);
}

/**
 * Forward dispatches: features ([B, F], f32 or f16) -> state.scores ([B, K] f32), saving a1, stats, h, z and
 * norm for the backward and updating `w.running` (momentum 0.1, unbiased variance, as layers.ts' batchNorm).
 */
export function swavHeadForward(
  s: SwavHeadShape,
  features: GpuTensor,
  w: SwavHeadWeights,
  st: SwavHeadState,
): Dispatch[] {
  checkShape('features', features, s.batch * s.features);
  checkShape('prototypes', w.prototypes, s.dim * s.prototypes);
  const p = st.dp; // p is only needed until z is written; the backward overwrites dp later
  return [
    {
      kernel: matmulKernel({
        M: s.batch,
        N: s.hidden,
        K: s.features,
        aT: false,
        bT: false,
        a: features.dtype,
        b: w.w1.dtype,
        out: 'f32',
        bias: true,
      }),
      buffers: [features, w.w1, w.b1, st.a1],
    },
    ...batchNormForward(
      bnShape(s),
      { x: st.a1, gamma: w.gamma, beta: w.beta, stats: st.stats, running: w.running, y: st.h },
      fixed(st.bnPartial),
    ),
    {
      kernel: matmulKernel({
        M: s.batch,
        N: s.dim,
        K: s.hidden,
        aT: false,
        bT: false,
        a: 'f32',
        b: w.w2.dtype,
        out: 'f32',
        bias: true,
      }),
      buffers: [st.h, w.w2, w.b2, p],
    },
    { kernel: l2NormaliseKernel(s.batch, s.dim), buffers: [p, st.z, st.norm] },
    {
      kernel: matmulKernel({
        M: s.batch,
        N: s.prototypes,
        K: s.dim,
        aT: false,
        bT: false,
        a: 'f32',
        b: w.prototypes.dtype,
        out: 'f32',
      }),
      buffers: [st.z, w.prototypes, st.scores],
    },
  ];
}

/**
 * Backward dispatches from dscores ([B, K] f32, e.g. swavLossBackward's) and the saved forward state: every
 * weight gradient into `g` (f32) and, when given, dfeatures ([B, F], f32 or f16) for the backbone.
 */
export function swavHeadBackward(
  s: SwavHeadShape,
  features: GpuTensor,
  w: SwavHeadWeights,
  st: SwavHeadState,
  dscores: GpuTensor,
  g: SwavHeadGrads,
  dfeatures?: GpuTensor,
): Dispatch[] {
  checkShape('dscores', dscores, s.batch * s.prototypes);
  const { batch: B, features: F, hidden: H, dim: D, prototypes: K } = s;
  const out: Dispatch[] = [
    {
      kernel: matmulKernel({ M: B, N: D, K, aT: false, bT: true, a: dscores.dtype, b: w.prototypes.dtype, out: 'f32' }),
      buffers: [dscores, w.prototypes, st.dz],
    },
    ...weightGrad(D, K, B, st.z, dscores, g.dprototypes, st.splitPartial),
    { kernel: l2NormaliseGradKernel(B, D), buffers: [st.z, st.norm, st.dz, st.dp] },
    ...weightGrad(H, D, B, st.h, st.dp, g.dw2, st.splitPartial),
    { kernel: columnSumKernel(B, D), buffers: [st.dp, g.db2] },
    {
      kernel: matmulKernel({ M: B, N: H, K: D, aT: false, bT: true, a: 'f32', b: w.w2.dtype, out: 'f32' }),
      buffers: [st.dp, w.w2, st.dh],
    },
    ...batchNormBackward(
      bnShape(s),
      { x: st.a1, stats: st.stats, dy: st.dh, dx: st.da1, dgamma: g.dgamma, dbeta: g.dbeta },
      fixed(st.bnGradPartial),
    ),
    ...weightGrad(F, H, B, features, st.da1, g.dw1, st.splitPartial),
    { kernel: columnSumKernel(B, H), buffers: [st.da1, g.db1] },
  ];
  if (dfeatures) {
    checkShape('dfeatures', dfeatures, B * F);
    out.push({
      kernel: matmulKernel({ M: B, N: F, K: H, aT: false, bT: true, a: 'f32', b: w.w1.dtype, out: dfeatures.dtype }),
      buffers: [st.da1, w.w1, dfeatures],
    });
  }
  return out;
}
