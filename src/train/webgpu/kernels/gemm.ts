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
import type { Dtype, Kernel } from '../runner.js';
import { matrixGemmFits, matrixGemmKernel, type MatrixGemmConfig } from './matrix-gemm.js';

export interface GemmSpec {
  /** Unique name of the generated kernel (the pipeline cache key). */
  key: string;
  M: number;
  N: number;
  K: number;
  /** Independent GEMMs of the same shape (a grouped convolution's groups), one per dispatch z. @default 1 */
  groups?: number;
  /** K split into this many slices, each stored separately (`s` in `store`) and summed by `splitKReduce`. @default 1 */
  splitK?: number;
  /** Whether adjacent elements in memory run along k (`'k'`) or along m / n (`'mn'`): loads are coalesced that way. */
  aContiguous: 'k' | 'mn';
  bContiguous: 'k' | 'mn';
  /** WGSL before the kernel: `enable` lines, bindings, helpers, and `loadA(m, k, g) -> f32`, `loadB(k, n, g) -> f32`, `store(m, n, g, s, v: f32)`. */
  prelude: string;
  /**
   * Storage type of both operands: 'f16' only when `loadA` and `loadB` both read f16 (exact in an f16 subgroup
   * matrix); anything else is 'f32' and runs on subgroup matrices only with an f32 config. @default 'f32'
   */
  operands?: Dtype;
  /**
   * Subgroup-matrix config to run on where the shape fits (matrix-gemm.ts `matrixGemmFits`); null keeps the tiled
   * core. @default the process's choice (`useMatrixGemm`), which `openDevice` sets after its self-check
   */
  matrix?: MatrixGemmConfig | null;
}

/** The subgroup-matrix configs GEMMs run on by default, per operand type; none: every GEMM is tiled. */
export type MatrixGemmChoice = Partial<Record<Dtype, MatrixGemmConfig>>;

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

export interface GemmTiles {
  TM: number;
  TN: number;
  TK: number;
  RM: number;
  RN: number;
}

const MAX_THREADS = 256;
const MAX_DIM = 65535;

/** Tile sizes for a problem: N-tiles no wider than the problem (grouped convs have 8-16 channels per group). */
export function gemmTiles(M: number, N: number): GemmTiles {
  const TN = Math.min(64, Math.max(4, nextPow2(N)));
  const RN = TN >= 64 ? 4 : TN >= 32 ? 2 : 1;
  const wx = TN / RN;
  const RM = 4;
  const wy = Math.min(MAX_THREADS / wx, 32, Math.max(1, nextPow2(Math.ceil(M / RM))));
  return { TM: wy * RM, TN, TK: 16, RM, RN };
}

export interface GemmLayout {
  tiles: GemmTiles;
  /** Tiles over M x N; laid out over dispatch x (and y when more than 65535). */
  tileCount: number;
  kChunk: number;
  splitK: number;
  workgroups: [number, number, number];
}

export function gemmLayout(spec: Pick<GemmSpec, 'M' | 'N' | 'K' | 'groups' | 'splitK'>): GemmLayout {
  const tiles = gemmTiles(spec.M, spec.N);
  const tileCount = Math.ceil(spec.M / tiles.TM) * Math.ceil(spec.N / tiles.TN);
  const kChunk = Math.ceil(spec.K / (spec.splitK ?? 1) / tiles.TK) * tiles.TK;
  const splitK = Math.ceil(spec.K / kChunk);
  const z = (spec.groups ?? 1) * splitK;
  if (z > MAX_DIM)
    throw new RangeError(`gemm: ${spec.groups} groups x ${splitK} K slices exceed ${MAX_DIM} workgroups`);
  return {
    tiles,
    tileCount,
    kChunk,
    splitK,
    workgroups: [Math.min(tileCount, MAX_DIM), Math.ceil(tileCount / MAX_DIM), z],
  };
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
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let tile = wid.x + wid.y * ${MAX_DIM}u;
  if (tile >= TILES) { return; }
  let m0 = (tile % MTILES) * TM;
  let n0 = (tile / MTILES) * TN;
  let g = wid.z % G;
  let s = wid.z / G;
  let kBeg = s * KCHUNK;
  let kEnd = min(K, kBeg + KCHUNK);
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

function nextPow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}
