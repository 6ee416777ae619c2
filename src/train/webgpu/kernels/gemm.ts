/**
 * The tiled GEMM core every matrix-shaped kernel of the engine is generated from: C[m, n] = sum_k A[m, k] B[k, n]
 * per group, with A, B and the store given as WGSL functions, so a convolution never materialises its im2col
 * matrix (implicit GEMM). Operands are staged through workgroup memory in TK-deep slices and each thread keeps an
 * RM x RN block of f32 accumulators, whatever the storage type (f16 storage, f32 accumulation).
 *
 * What must stay true: loadA / loadB are called only with m < M, n < N and k inside the workgroup's K slice;
 * out-of-range elements are zeros, so any M, N, K works (odd sizes, batch 1). The barriers sit in loops whose
 * bounds depend only on workgroup_id, which keeps them in uniform control flow.
 *
 * `gemmKernel` runs a spec on subgroup matrices instead (matrix-gemm.ts, same contract) where a config was chosen
 * for its operand type (gemm-select.ts, after a self-check at device open) and the shape fits; else on this core.
 */
import type { Kernel } from '../kernel.js';
import { gemmLayout, MAX_DIM, TILE_ORIGIN, type GemmSpec, type MatrixGemmChoice } from './gemm-spec.js';
import { matrixGemmFits, matrixGemmKernel } from './matrix-gemm.js';

export {
  gemmLayout,
  gemmTiles,
  type GemmLayout,
  type GemmSpec,
  type GemmTiles,
  type MatrixGemmChoice,
} from './gemm-spec.js';

let defaultMatrix: MatrixGemmChoice = {};

/**
 * Sets the configs `gemmKernel` uses for specs that name none. `openDevice` calls it once its self-check has
 * chosen (train opens one device per process); the kernels' keys name the config, so pipelines of different
 * choices never mix in a cache.
 */
export function useMatrixGemm(choice: MatrixGemmChoice): void {
  defaultMatrix = { ...choice };
}

/** The configs set by `useMatrixGemm`. */
export function matrixGemmChoice(): MatrixGemmChoice {
  return { ...defaultMatrix };
}

/** The GEMM kernel for a spec: on subgroup matrices where a config is chosen and the shape fits, else tiled. */
export function gemmKernel(spec: GemmSpec): Kernel {
  const ops = spec.operands ?? 'f32';
  // f16 operands are exact in f32, so an f32 config serves them where no f16 one was chosen.
  const matrix =
    spec.matrix === undefined ? (defaultMatrix[ops] ?? (ops === 'f16' ? defaultMatrix.f32 : undefined)) : spec.matrix;
  if (matrix && matrixGemmFits(spec, matrix)) return matrixGemmKernel(spec, matrix);
  return tiledGemmKernel(spec);
}

/** The tiled core, whatever the choice of subgroup matrices (the reference the self-check compares against). */
export function tiledGemmKernel(spec: GemmSpec): Kernel {
  const L = gemmLayout(spec);
  const { TM, TN, TK, RM, RN } = L.tiles;
  const WX = TN / RN;
  const WY = TM / RM;
  const mTiles = Math.ceil(spec.M / TM);
  const loadAIndex =
    spec.aContiguous === 'k' ? 'let mm = i / TK; let kk = i % TK;' : 'let kk = i / TM; let mm = i % TM;';
  const loadBIndex =
    spec.bContiguous === 'mn' ? 'let kk = i / TN; let nn = i % TN;' : 'let nn = i / TK; let kk = i % TK;';
  const code = /* wgsl */ `${spec.prelude}
const M = ${spec.M}u; const N = ${spec.N}u; const K = ${spec.K}u; const G = ${spec.groups ?? 1}u;
const TM = ${TM}u; const TN = ${TN}u; const TK = ${TK}u; const RM = ${RM}u; const RN = ${RN}u;
const WX = ${WX}u; const WY = ${WY}u; const THREADS = ${WX * WY}u;
const KCHUNK = ${L.kChunk}u; const MTILES = ${mTiles}u; const TILES = ${L.tileCount}u;
var<workgroup> As: array<f32, ${TK * TM}>;
var<workgroup> Bs: array<f32, ${TK * TN}>;

@compute @workgroup_size(${WX}, ${WY}, 1)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {${TILE_ORIGIN}
  var acc: array<f32, ${RM * RN}>;
  for (var k0 = kBeg; k0 < kEnd; k0 += TK) {
    for (var i = li; i < TM * TK; i += THREADS) {
      ${loadAIndex}
      let m = m0 + mm; let k = k0 + kk;
      var v = 0.0;
      if (m < M && k < kEnd) { v = loadA(m, k, g); }
      As[kk * TM + mm] = v;
    }
    for (var i = li; i < TN * TK; i += THREADS) {
      ${loadBIndex}
      let n = n0 + nn; let k = k0 + kk;
      var v = 0.0;
      if (n < N && k < kEnd) { v = loadB(k, n, g); }
      Bs[kk * TN + nn] = v;
    }
    workgroupBarrier();
    // A bound known only at run time keeps compilers from unrolling TK copies of the RM x RN block: on lavapipe
    // (LLVM) that unrolling cost 4-5 s of CPU per kernel to compile, against 0.7-1.2 s this way.
    let kLen = min(TK, kEnd - k0);
    for (var kk = 0u; kk < kLen; kk++) {
      var a: array<f32, ${RM}>;
      var b: array<f32, ${RN}>;
      for (var r = 0u; r < RM; r++) { a[r] = As[kk * TM + lid.y + r * WY]; }
      for (var c = 0u; c < RN; c++) { b[c] = Bs[kk * TN + lid.x + c * WX]; }
      for (var r = 0u; r < RM; r++) {
        for (var c = 0u; c < RN; c++) { acc[r * RN + c] = fma(a[r], b[c], acc[r * RN + c]); }
      }
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < RM; r++) {
    for (var c = 0u; c < RN; c++) {
      let m = m0 + lid.y + r * WY;
      let n = n0 + lid.x + c * WX;
      if (m < M && n < N) { store(m, n, g, s, acc[r * RN + c]); }
    }
  }
}
`;
  return { key: spec.key, code, workgroups: L.workgroups };
}

/** out[i] = sum over s of partial[s * size + i]: the second half of a split-K GEMM. */
export function splitKReduceKernel(size: number, splits: number): Kernel {
  const groups = Math.ceil(size / 256);
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * ${MAX_DIM * 256}u;
  if (i >= ${size}u) { return; }
  var sum = 0.0;
  for (var s = 0u; s < ${splits}u; s++) { sum += partial[s * ${size}u + i]; }
  out[i] = sum;
}
`;
  return {
    key: `splitk-reduce:${size}x${splits}`,
    code,
    workgroups: [Math.min(groups, MAX_DIM), Math.ceil(groups / MAX_DIM), 1],
  };
}
