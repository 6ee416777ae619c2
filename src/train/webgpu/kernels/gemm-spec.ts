/**
 * What a GEMM is asked to compute (`GemmSpec`) and how the tiled core lays it out over workgroups, shared by the
 * tiled core (gemm.ts), the subgroup-matrix core (matrix-gemm.ts) and the kernels built on them. A leaf module
 * apart from the kernel types, so the two cores can import it without importing each other.
 */
import type { Dtype } from '../kernel.js';

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

/** One subgroup-matrix shape the engine can use: `componentType` x `componentType` -> f32, M x N x K. */
export interface MatrixGemmConfig {
  component: 'f16' | 'f32';
  M: number;
  N: number;
  K: number;
  /** The adapter's largest subgroup size (the workgroup is a multiple of it). */
  subgroupSize: number;
  /**
   * Plain WGSL stands in for the matrix types and builtins, with their documented semantics (every invocation
   * computes its subgroup's whole fragment): slow, and needs only `subgroups`, so that the tiling can be checked
   * on a device without subgroup matrices (lavapipe). @default false
   */
  emulate?: boolean;
}

/** The subgroup-matrix configs GEMMs run on by default, per operand type; none: every GEMM is tiled. */
export type MatrixGemmChoice = Partial<Record<Dtype, MatrixGemmConfig>>;

export interface GemmTiles {
  TM: number;
  TN: number;
  TK: number;
  RM: number;
  RN: number;
}

const MAX_THREADS = 256;
/** The most workgroups along one dispatch dimension. */
export const MAX_DIM = 65535;

/**
 * WGSL statements both GEMM kernels open with: the tile this workgroup owns (m0, n0; returning past the last),
 * its group g and its K slice [kBeg, kEnd). Needs `wid`, and constants TILES, MTILES, TM, TN, G, K, KCHUNK.
 */
export const TILE_ORIGIN = `
  let tile = wid.x + wid.y * ${MAX_DIM}u;
  if (tile >= TILES) { return; }
  let m0 = (tile % MTILES) * TM;
  let n0 = (tile / MTILES) * TN;
  let g = wid.z % G;
  let s = wid.z / G;
  let kBeg = s * KCHUNK;
  let kEnd = min(K, kBeg + KCHUNK);`;

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

function nextPow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}
