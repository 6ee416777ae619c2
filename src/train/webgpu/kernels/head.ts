/**
 * The SwAV head of swav.ts' swavHead on the GPU, forward and backward, over the features of every crop at once
 * ([B = crops * batch, F], as model.ts concatenates them):
 *   a1     = features W1 + b1                    W1 [F, H] `swav.proj1.w`, b1 [H] `swav.proj1.b`
 *   h      = relu(batchNorm(a1))                 gamma, beta `swav.proj1.bn.*`, batch statistics (batchnorm.ts)
 *   p      = h W2 + b2                           W2 [H, D] `swav.proj2.w`, b2 [D] `swav.proj2.b`
 *   z      = p / max(|p|, 1e-12)                 per row (l2normalise)
 *   scores = z P                                 P [D, K] `swav.prototypes.w`
 * Matrices come from gemm.ts (the products and their gradients, split along K where M x N alone gives a large
 * GPU too few workgroups: productSplit) and BatchNorm from batchnorm.ts / batchnorm-backward.ts ([B, H] is NHWC
 * with H = W = 1). Everything between the products is f32; `features`, `dfeatures` and the weight matrices may be f16 (weight copies), vectors are f32.
 */
import type { Dispatch, Dtype, GpuRunner, GpuTensor, Kernel } from '../runner.js';
import { batchNormForward, batchNormStatsKernel, BN_STATS, type BatchNormShape } from './batchnorm.js';
import { batchNormBackward, batchNormGradSumsKernel } from './batchnorm-backward.js';
import { elementwiseEntry, elementwiseGroups, enableF16 } from './elementwise.js';
import { gemmKernel, gemmLayout } from './gemm.js';

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
  /**
   * [D, K]; leave it out to skip the product, as model.ts drops the prototypes' gradient during
   * SwavConfig.freezePrototypesSteps (a recording for frozen steps and one for the rest).
   */
  dprototypes?: GpuTensor;
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
    operands: s.a === 'f16' && s.b === 'f16' ? 'f16' : 'f32',
    prelude,
  });
}

/**
 * K slices for a product: aims at `parallelism` workgroups, each slice at least 8 K tiles deep (as conv2d's
 * filterGradSplit). The weight gradients (K = batch) and the products whose M x N is small next to K (z P^T,
 * h W2, da1 W1^T) would otherwise leave most of a large GPU idle. Returns what gemmLayout keeps (it merges
 * slices that would be empty).
 */
export function productSplit(M: number, N: number, K: number, parallelism = 512): number {
  const { tileCount, tiles } = gemmLayout({ M, N, K });
  const wanted = Math.max(1, Math.min(Math.ceil(parallelism / tileCount), Math.floor(K / (tiles.TK * 8))));
  return gemmLayout({ M, N, K, splitK: wanted }).splitK;
}

/**
 * out[i] = sum_s partial[s, i] (+ bias[i % N]), stored as `out`: the second half of a split product.
 * Bindings partial ([slices, M, N] f32), [bias ([N] f32)], out.
 */
export function splitKSumKernel(M: number, N: number, slices: number, out: Dtype, bias: boolean): Kernel {
  const size = M * N;
  const code = /* wgsl */ `${enableF16(out)}
@group(0) @binding(0) var<storage, read> partial: array<f32>;
${bias ? '@group(0) @binding(1) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(${bias ? 2 : 1}) var<storage, read_write> out: array<${out}>;
${elementwiseEntry(size)}
  var sum = ${bias ? `bias[i % ${N}u]` : '0.0'};
  for (var s = 0u; s < ${slices}u; s++) { sum += partial[s * ${size}u + i]; }
  out[i] = ${out}(sum);
}
`;
  return {
    key: `splitk-sum:${M}x${N}x${slices}:${out}:${bias ? 'bias' : ''}`,
    code,
    workgroups: elementwiseGroups(size),
  };
}

/** Which operand is read transposed, and the sizes, of one product of the head. */
interface Product {
  M: number;
  N: number;
  K: number;
  aT: boolean;
  bT: boolean;
}

/** out = A B (+ bias) through gemm, split along K when productSplit says so (then summed into out by a pass). */
function product(p: Product, a: GpuTensor, b: GpuTensor, out: GpuTensor, partial: GpuTensor, bias?: GpuTensor) {
  const slices = productSplit(p.M, p.N, p.K);
  const spec = { ...p, a: a.dtype, b: b.dtype };
  if (slices === 1)
    return [
      {
        kernel: matmulKernel({ ...spec, out: out.dtype, bias: !!bias }),
        buffers: bias ? [a, b, bias, out] : [a, b, out],
      },
    ];
  if (partial.size < slices * p.M * p.N)
    throw new RangeError(`head: split-K scratch of ${partial.size} < ${slices * p.M * p.N}`);
  return [
    { kernel: matmulKernel({ ...spec, out: 'f32', splitK: slices }), buffers: [a, b, partial] },
    {
      kernel: splitKSumKernel(p.M, p.N, slices, out.dtype, !!bias),
      buffers: bias ? [partial, bias, out] : [partial, out],
    },
  ];
}

/** Every product of the head's forward and backward, as [M, N, K] (what sizes the split-K scratch). */
function productSizes(s: SwavHeadShape): [number, number, number][] {
  const { batch: B, features: F, hidden: H, dim: D, prototypes: K } = s;
  return [
    [B, H, F],
    [B, D, H],
    [B, K, D],
    [B, D, K],
    [D, K, B],
    [H, D, B],
    [B, H, D],
    [F, H, B],
    [B, F, H],
  ];
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
  const splits = productSizes(s).map(([m, n, k]) => (productSplit(m, n, k) > 1 ? productSplit(m, n, k) * m * n : 0));
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
  const { batch: B, features: F, hidden: H, dim: D, prototypes: K } = s;
  const part = st.splitPartial;
  return [
    ...product({ M: B, N: H, K: F, aT: false, bT: false }, features, w.w1, st.a1, part, w.b1),
    ...batchNormForward(
      bnShape(s),
      { x: st.a1, gamma: w.gamma, beta: w.beta, stats: st.stats, running: w.running, y: st.h },
      fixed(st.bnPartial),
    ),
    ...product({ M: B, N: D, K: H, aT: false, bT: false }, st.h, w.w2, p, part, w.b2),
    { kernel: l2NormaliseKernel(B, D), buffers: [p, st.z, st.norm] },
    ...product({ M: B, N: K, K: D, aT: false, bT: false }, st.z, w.prototypes, st.scores, part),
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
  const part = st.splitPartial;
  const out: Dispatch[] = [
    ...product({ M: B, N: D, K, aT: false, bT: true }, dscores, w.prototypes, st.dz, part),
    ...(g.dprototypes ? product({ M: D, N: K, K: B, aT: true, bT: false }, st.z, dscores, g.dprototypes, part) : []),
    { kernel: l2NormaliseGradKernel(B, D), buffers: [st.z, st.norm, st.dz, st.dp] },
    ...product({ M: H, N: D, K: B, aT: true, bT: false }, st.h, st.dp, g.dw2, part),
    { kernel: columnSumKernel(B, D), buffers: [st.dp, g.db2] },
    ...product({ M: B, N: H, K: D, aT: false, bT: true }, st.dp, w.w2, st.dh, part),
    ...batchNormBackward(
      bnShape(s),
      { x: st.a1, stats: st.stats, dy: st.dh, dx: st.da1, dgamma: g.dgamma, dbeta: g.dbeta },
      fixed(st.bnGradPartial),
    ),
    ...product({ M: F, N: H, K: B, aT: true, bT: false }, features, st.da1, g.dw1, part),
    { kernel: columnSumKernel(B, H), buffers: [st.da1, g.db1] },
  ];
  if (dfeatures) {
    checkShape('dfeatures', dfeatures, B * F);
    out.push(...product({ M: B, N: F, K: H, aT: false, bT: true }, st.da1, w.w1, dfeatures, part));
  }
  return out;
}
