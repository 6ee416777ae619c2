/**
 * The GEMM core of gemm.ts on subgroup matrices (Dawn's `chromium_experimental_subgroup_matrix`: cooperative
 * matrices, tensor cores on NVIDIA): the same contract (`loadA`, `loadB`, `store` from the spec's prelude, groups
 * and K slices over dispatch z), so any implicit GEMM can run on it. Operands are staged through workgroup memory
 * as the config's component type (f16 or f32), each subgroup multiplies an FM x FN block of CM x CN fragments with
 * f32 accumulation, and the result goes back through workgroup memory so that `store` sees one f32 per (m, n).
 *
 * What must stay true (from Dawn's subgroup-matrix rules, docs/dawn/features/subgroup_matrix.md):
 * - Matrix types are `subgroup_matrix_left<T, K, M>` (M rows, K columns), `subgroup_matrix_right<T, N, K>` and
 *   `subgroup_matrix_result<T, N, M>`: columns first. Their T, M, N, K must match one of the adapter's configs.
 * - `subgroupMatrixLoad<T, row_major>(&array, offset, stride)` and `subgroupMatrixStore<row_major>(&array, offset,
 *   value, stride)`: offset and stride count array elements, the array's element type is the matrix's scalar type.
 *   Their arguments must be subgroup-uniform: here they depend only on workgroup_id, subgroup_id and loop counters.
 * - The workgroup's x size must be a multiple of the adapter's largest subgroup size.
 * - Variables holding matrices are declared in uniform control flow (the top of `main`).
 * Zeros stand in for out-of-range elements, as in the tiled core, so any M, N, K works.
 */
import type { Kernel } from '../kernel.js';
import { gemmLayout, MAX_DIM, TILE_ORIGIN, type GemmSpec, type MatrixGemmConfig } from './gemm-spec.js';

export type { MatrixGemmConfig } from './gemm-spec.js';

/** Subgroups per workgroup, as a grid over the tile: rows x columns. */
const SG_ROWS = 2;
const SG_COLS = 2;
/** Rows and columns of the workgroup tile, and the depth of one K slice staged in workgroup memory. */
const TILE = 64;
const DEPTH = 32;

export interface MatrixGemmLayout {
  TM: number;
  TN: number;
  TK: number;
  /** Fragments per subgroup along M and N. */
  FM: number;
  FN: number;
  threads: number;
  /** Workgroup memory the kernel declares, in bytes. */
  workgroupBytes: number;
  tileCount: number;
  kChunk: number;
  splitK: number;
  workgroups: [number, number, number];
}

/** Matrix sides the tile layout divides evenly. */
export const MATRIX_SIDES = [8, 16, 32] as const;

export function matrixGemmLayout(
  spec: Pick<GemmSpec, 'M' | 'N' | 'K' | 'groups' | 'splitK'>,
  c: MatrixGemmConfig,
): MatrixGemmLayout {
  for (const side of [c.M, c.N, c.K])
    if (!(MATRIX_SIDES as readonly number[]).includes(side))
      throw new RangeError(`matrix gemm: a ${c.M}x${c.N}x${c.K} config (sides must be one of ${MATRIX_SIDES})`);
  const FM = TILE / (SG_ROWS * c.M);
  const FN = TILE / (SG_COLS * c.N);
  const TK = Math.max(DEPTH, c.K);
  const threads = SG_ROWS * SG_COLS * c.subgroupSize;
  const elem = c.component === 'f16' ? 2 : 4;
  const tileCount = Math.ceil(spec.M / TILE) * Math.ceil(spec.N / TILE);
  // The tiled core's K slices, whatever TK is here: callers size split-K partial sums by them (head.ts
  // productSplit), so both cores must write the same slices. A slice need not be a multiple of TK (zeros pad it).
  const { kChunk, splitK, workgroups } = gemmLayout(spec);
  return {
    TM: TILE,
    TN: TILE,
    TK,
    FM,
    FN,
    threads,
    workgroupBytes: 2 * TILE * TK * elem + TILE * TILE * 4,
    tileCount,
    kChunk,
    splitK,
    workgroups: [Math.min(tileCount, MAX_DIM), Math.ceil(tileCount / MAX_DIM), workgroups[2]],
  };
}

/**
 * Whether a GEMM should run on subgroup matrices with `c`: its operands must be exact in the component type (f32
 * operands never go through f16), and the problem wide enough that most of a 64 x 64 tile is work (a grouped
 * convolution's 8-16 channels per group stay on the tiled core).
 */
export function matrixGemmFits(spec: Pick<GemmSpec, 'M' | 'N' | 'K' | 'operands'>, c: MatrixGemmConfig): boolean {
  if ((spec.operands ?? 'f32') === 'f32' && c.component !== 'f32') return false;
  return spec.M >= TILE / 2 && spec.N >= 16 && spec.K >= c.K;
}

/** `label` for logs: `subgroup-matrix f16 16x16x16`. */
export function describeMatrixConfig(c: MatrixGemmConfig): string {
  return `subgroup-matrix ${c.component} ${c.M}x${c.N}x${c.K}`;
}

export function matrixGemmKernel(spec: GemmSpec, c: MatrixGemmConfig): Kernel {
  const L = matrixGemmLayout(spec, c);
  const { TM, TN, TK, FM, FN } = L;
  const T = c.component;
  const mTiles = Math.ceil(spec.M / TM);
  const loadAIndex =
    spec.aContiguous === 'k' ? 'let mm = i / TK; let kk = i % TK;' : 'let kk = i / TM; let mm = i % TM;';
  const loadBIndex =
    spec.bContiguous === 'mn' ? 'let kk = i / TN; let nn = i % TN;' : 'let nn = i / TK; let kk = i % TK;';
  // An extension may be enabled once; the prelude of an f16 kernel already enables f16.
  const f16 = T === 'f16' && !/enable\s+f16\s*;/.test(spec.prelude) ? 'enable f16;\n' : '';
  const emulate = c.emulate ?? false;
  // subgroup_id is uniform within a subgroup, which is all the matrix builtins need; a Dawn whose analysis
  // treats it as non-uniform would refuse the `if (owner)` below, so that diagnostic is turned off.
  const header = emulate
    ? `enable subgroups;\n${f16}`
    : `enable chromium_experimental_subgroup_matrix;
enable subgroups;
${f16}diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);
`;
  const types = emulate
    ? emulation(c)
    : `alias Left = subgroup_matrix_left<${T}, ${c.K}, ${c.M}>;
alias Right = subgroup_matrix_right<${T}, ${c.N}, ${c.K}>;
alias Acc = subgroup_matrix_result<f32, ${c.N}, ${c.M}>;`;
  const [loadLeft, loadRight, mma, storeAcc] = emulate
    ? ['emuLoadLeft(', 'emuLoadRight(', 'emuMultiplyAccumulate', 'emuStore(']
    : [
        'subgroupMatrixLoad<Left, row_major>(&As, ',
        'subgroupMatrixLoad<Right, row_major>(&Bs, ',
        'subgroupMatrixMultiplyAccumulate',
        'subgroupMatrixStore<row_major>(&Cs, ',
      ];
  const code = /* wgsl */ `${header}${spec.prelude}
const M = ${spec.M}u; const N = ${spec.N}u; const K = ${spec.K}u; const G = ${spec.groups ?? 1}u;
const TM = ${TM}u; const TN = ${TN}u; const TK = ${TK}u;
const CM = ${c.M}u; const CN = ${c.N}u; const CK = ${c.K}u; const FM = ${FM}u; const FN = ${FN}u;
const SG = ${SG_ROWS * SG_COLS}u; const SG_COLS = ${SG_COLS}u; const THREADS = ${L.threads}u;
const KCHUNK = ${L.kChunk}u; const MTILES = ${mTiles}u; const TILES = ${L.tileCount}u;
${types}
var<workgroup> As: array<${T}, ${TM * TK}>; // [m][k]
var<workgroup> Bs: array<${T}, ${TK * TN}>; // [k][n]
var<workgroup> Cs: array<f32, ${TM * TN}>; // [m][n]

@compute @workgroup_size(${L.threads}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32, @builtin(subgroup_id) sg: u32${emulate ? ', @builtin(subgroup_invocation_id) lane: u32' : ''}) {${emulate ? '\n  emuLane = lane; emuDepth = select(CK, 0u, wid.z == 0xffffffffu); emuPer = select(EMU_PER, 0u, wid.z == 0xffffffffu);' : ''}${TILE_ORIGIN}
  // The first SG subgroups each own FM x FN fragments; a device running narrower subgroups than its largest
  // has more of them, and those beyond SG only help stage the operands.
  let owner = sg < SG;
  let sm = (sg / SG_COLS) * FM * CM;
  let sn = (sg % SG_COLS) * FN * CN;
  var acc: array<array<Acc, FN>, FM>;
  var right: array<Right, FN>;
  for (var k0 = kBeg; k0 < kEnd; k0 += TK) {
    for (var i = li; i < TM * TK; i += THREADS) {
      ${loadAIndex}
      let m = m0 + mm; let k = k0 + kk;
      var v = 0.0;
      if (m < M && k < kEnd) { v = loadA(m, k, g); }
      As[mm * TK + kk] = ${T}(v);
    }
    for (var i = li; i < TN * TK; i += THREADS) {
      ${loadBIndex}
      let n = n0 + nn; let k = k0 + kk;
      var v = 0.0;
      if (n < N && k < kEnd) { v = loadB(k, n, g); }
      Bs[kk * TN + nn] = ${T}(v);
    }
    workgroupBarrier();
    if (owner) {
      for (var kk = 0u; kk < TK; kk += CK) {
        for (var f = 0u; f < FN; f++) {
          right[f] = ${loadRight}kk * TN + sn + f * CN, TN);
        }
        for (var r = 0u; r < FM; r++) {
          let left = ${loadLeft}(sm + r * CM) * TK + kk, TK);
          for (var f = 0u; f < FN; f++) {
            acc[r][f] = ${mma}(left, right[f], acc[r][f]);
          }
        }
      }
    }
    workgroupBarrier();
  }
  if (owner) {
    for (var r = 0u; r < FM; r++) {
      for (var f = 0u; f < FN; f++) {
        ${storeAcc}(sm + r * CM) * TN + sn + f * CN, acc[r][f], TN);
      }
    }
  }
  workgroupBarrier();
  for (var i = li; i < TM * TN; i += THREADS) {
    let m = m0 + i / TN; let n = n0 + i % TN;
    if (m < M && n < N) { store(m, n, g, s, Cs[i]); }
  }
}
`;
  return {
    key: `${spec.key}:sgm-${T}-${c.M}x${c.N}x${c.K}-sg${c.subgroupSize}${emulate ? '-emulated' : ''}`,
    code,
    workgroups: L.workgroups,
  };
}

/**
 * The subgroup-matrix types and builtins in plain WGSL, as Dawn documents them (a row-major load or store maps
 * element [r, c] to offset + r * stride + c of the array). A left or right matrix is where it lies in As or Bs
 * (nothing writes there between its load and its use: both sit between the same two barriers); a result is
 * spread over the subgroup, element r * CN + c held by invocation (r * CN + c) % S. Loop bounds are read at run
 * time (emuDepth) so that LLVM does not unroll them: lavapipe would take minutes to compile.
 */
function emulation(c: MatrixGemmConfig): string {
  const per = (c.M * c.N) / c.subgroupSize;
  if (!Number.isInteger(per)) throw new RangeError(`matrix gemm: ${c.M}x${c.N} is no multiple of ${c.subgroupSize}`);
  return /* wgsl */ `alias Left = vec2u;
alias Right = vec2u;
alias Acc = array<f32, ${per}>;
const EMU_S = ${c.subgroupSize}u; const EMU_PER = ${per}u;
var<private> emuLane: u32;
var<private> emuDepth: u32;
var<private> emuPer: u32;
fn emuLoadLeft(offset: u32, stride: u32) -> Left { return vec2u(offset, stride); }
fn emuLoadRight(offset: u32, stride: u32) -> Right { return vec2u(offset, stride); }
fn emuMultiplyAccumulate(a: Left, b: Right, acc: Acc) -> Acc {
  var v = acc;
  for (var j = 0u; j < emuPer; j++) {
    let e = emuLane + j * EMU_S; let r = e / CN; let c = e % CN;
    var sum = v[j];
    for (var k = 0u; k < emuDepth; k++) { sum = fma(f32(As[a.x + r * a.y + k]), f32(Bs[b.x + k * b.y + c]), sum); }
    v[j] = sum;
  }
  return v;
}
fn emuStore(offset: u32, v: Acc, stride: u32) {
  for (var j = 0u; j < emuPer; j++) {
    let e = emuLane + j * EMU_S;
    Cs[offset + (e / CN) * stride + e % CN] = v[j];
  }
}`;
}
