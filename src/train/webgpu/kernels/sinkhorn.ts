/**
 * SwAV's Sinkhorn-Knopp codes (swav.ts' sinkhorn) on the GPU, for each assignment crop's rows of the head's
 * scores ([crops * B, K]), with no gradient. swav.ts computes
 *   q = exp(max((s - colmax) / eps, -80));  q /= sum(q);
 *   repeat: q /= colsum(q) * K;  q /= rowsum(q) * B;     then codes = q * B.
 * Here q is kept as q0[b, k] * c[k] * r[b], the iterations updating only the vectors (one pass over q0 each):
 *   column step  c[k] = 1 / (K * sum_b q0[b, k] r[b])
 *   row step     r[b] = 1 / (B * sum_k q0[b, k] c[k])
 * The global normalisation is exactly undone by the first column step, so it is folded into it. What keeps it
 * finite at eps 0.02 (exponents down to -100 before the floor): the column max makes every exponent <= 0 with
 * a 1 in each column, as swav.ts; in addition each row of q0 is stored divided by its own largest entry
 * (a per-row factor the next row step cancels exactly), so no row sum is the ~1e-41 subnormal that
 * e^-80 / (K * B) would be on swav.ts' path, which a GPU flushing subnormals would turn into 0 and 1/0.
 * Dispatches, each over every assignment crop at once (q0 is stored in `codes`, scaled in place at the end):
 *   init      per column tile: colmax, first column step from exp(x) (x = the floored exponent)
 *   rows      per row: x, its max m_b, q0 = exp(x - m_b) stored, first row step
 *   (iterations - 1) x [columns, rows] over q0
 *   codes     codes = q0 c r B
 */
import type { Dispatch, GpuTensor, Kernel } from '../runner.js';
import { elementwiseEntry, elementwiseGroups } from './elementwise.js';

export interface SinkhornShape {
  /** Rows per crop (the batch). */
  batch: number;
  prototypes: number;
  /** Crops in the scores tensor (its rows are crops * batch). */
  crops: number;
}

export interface SinkhornOptions {
  epsilon: number;
  iterations: number;
  /** The crops whose codes are computed, in order (SwavConfig.cropsForAssign). */
  cropsForAssign: readonly number[];
}

/** Scratch vectors, f32: colmax and c [A, K], r [A, B] (A assignment crops). */
export interface SinkhornScratch {
  colmax: GpuTensor;
  c: GpuTensor;
  r: GpuTensor;
}

const FLOOR = -80;
const CT = 32;
const RT = 8;
const ROW_THREADS = 256;
const MAX_DIM = 65535;
/** Rows one assignment's Sinkhorn takes (a workgroup per row): the batch, plus the queue when it joins. */
export const SINKHORN_MAX_ROWS = MAX_DIM;

function key(s: SinkhornShape, crops: readonly number[], ...rest: (string | number)[]): string {
  return [`${s.crops}x${s.batch}x${s.prototypes}`, `assign${crops.join(',')}`, ...rest].join(':');
}

/**
 * WGSL shared by every kernel: shape constants, ROW0[a] (assignment a's first scores row) and, with the
 * bindings scores and colmax, `exponent(a, b, k)`: the floored exponent of that crop's score [b, k].
 */
function common(s: SinkhornShape, crops: readonly number[], epsilon?: number): string {
  const table = crops.map((c) => `${c * s.batch}u`).join(', ');
  const exponent = `fn exponent(a: u32, b: u32, k: u32) -> f32 {
  return max((scores[(ROW0[a] + b) * K + k] - colmax[a * K + k]) / ${epsilon}, ${FLOOR}.0);
}`;
  return `const B = ${s.batch}u; const K = ${s.prototypes}u;
var<private> ROW0: array<u32, ${crops.length}> = array<u32, ${crops.length}>(${table});
${epsilon === undefined ? '' : exponent}`;
}

/** WGSL fn `name`: a workgroup reduction over the RT rows of a [RT, CT] tile of `red`, by `op`. */
function columnReduce(name: string, op: (a: string, b: string) => string): string {
  return `fn ${name}(i: u32, lidy: u32) {
  for (var step = ${RT / 2}u; step > 0u; step /= 2u) {
    workgroupBarrier();
    if (lidy < step) { red[i] = ${op('red[i]', `red[i + step * ${CT}u]`)}; }
  }
  workgroupBarrier();
}`;
}

/** Column tiles along x, assignments along y. */
function columnGroups(s: SinkhornShape, assign: number): [number, number, number] {
  return [Math.ceil(s.prototypes / CT), assign, 1];
}

/** colmax ([A, K]) and the first column step c ([A, K]): bindings scores, colmax, c. */
export function sinkhornInitKernel(s: SinkhornShape, crops: readonly number[], epsilon: number): Kernel {
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> scores: array<f32>;
@group(0) @binding(1) var<storage, read_write> colmax: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
${common(s, crops, epsilon)}
var<workgroup> red: array<f32, ${CT * RT}>;
${columnReduce('reduceMax', (a, b) => `max(${a}, ${b})`)}
${columnReduce('reduceSum', (a, b) => `${a} + ${b}`)}
@compute @workgroup_size(${CT}, ${RT}, 1)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let a = wid.y;
  let k = wid.x * ${CT}u + lid.x;
  let i = lid.y * ${CT}u + lid.x;
  var m = -3.4e38;
  if (k < K) {
    for (var b = lid.y; b < B; b += ${RT}u) { m = max(m, scores[(ROW0[a] + b) * K + k]); }
  }
  red[i] = m;
  reduceMax(i, lid.y);
  if (lid.y == 0u && k < K) { colmax[a * K + k] = red[i]; }
  let cm = red[lid.x];
  var sum = 0.0;
  if (k < K) {
    for (var b = lid.y; b < B; b += ${RT}u) {
      sum += exp(max((scores[(ROW0[a] + b) * K + k] - cm) / ${epsilon}, ${FLOOR}.0));
    }
  }
  workgroupBarrier();
  red[i] = sum;
  reduceSum(i, lid.y);
  if (lid.y == 0u && k < K) { c[a * K + k] = 1.0 / (${s.prototypes}.0 * red[i]); }
}
`;
  return { key: `sinkhorn-init:${key(s, crops, epsilon)}`, code, workgroups: columnGroups(s, crops.length) };
}

/** WGSL: a reduction of `red` over the 256 threads of a row workgroup; the result is red[0]. */
const ROW_REDUCE = `fn rowReduce(i: u32, isMax: bool) {
  for (var step = ${ROW_THREADS / 2}u; step > 0u; step /= 2u) {
    workgroupBarrier();
    if (i < step) { red[i] = select(red[i] + red[i + step], max(red[i], red[i + step]), isMax); }
  }
  workgroupBarrier();
}`;

/**
 * One workgroup per (row b, assignment a), the row step r ([A, B]). `first`: q0[b, k] = exp(x - max_k x)
 * written into codes (bindings scores, colmax, c, r, codes); else over the stored q0 (bindings c, r, codes).
 */
export function sinkhornRowsKernel(
  s: SinkhornShape,
  crops: readonly number[],
  epsilon: number,
  first: boolean,
): Kernel {
  const bindings = first
    ? `@group(0) @binding(0) var<storage, read> scores: array<f32>;
@group(0) @binding(1) var<storage, read> colmax: array<f32>;
@group(0) @binding(2) var<storage, read> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> r: array<f32>;
@group(0) @binding(4) var<storage, read_write> q: array<f32>;`
    : `@group(0) @binding(0) var<storage, read> c: array<f32>;
@group(0) @binding(1) var<storage, read_write> r: array<f32>;
@group(0) @binding(2) var<storage, read_write> q: array<f32>;`;
  const fill = first
    ? `var m = -3.4e38;
  for (var k = i; k < K; k += ${ROW_THREADS}u) { m = max(m, exponent(a, b, k)); }
  red[i] = m;
  rowReduce(i, true);
  let rowMax = red[0];
  workgroupBarrier();
  var sum = 0.0;
  for (var k = i; k < K; k += ${ROW_THREADS}u) {
    let v = exp(exponent(a, b, k) - rowMax);
    q[base + k] = v;
    sum = fma(v, c[a * K + k], sum);
  }`
    : `var sum = 0.0;
  for (var k = i; k < K; k += ${ROW_THREADS}u) { sum = fma(q[base + k], c[a * K + k], sum); }`;
  const code = /* wgsl */ `${bindings}
${common(s, crops, first ? epsilon : undefined)}
var<workgroup> red: array<f32, ${ROW_THREADS}>;
${ROW_REDUCE}
@compute @workgroup_size(${ROW_THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) i: u32) {
  let b = wid.x;
  let a = wid.y;
  let base = (a * B + b) * K;
  ${fill}
  red[i] = sum;
  rowReduce(i, false);
  if (i == 0u) { r[a * B + b] = 1.0 / (${s.batch}.0 * red[0]); }
}
`;
  return {
    key: `sinkhorn-rows:${key(s, crops, first ? epsilon : '', first ? 'first' : 'next')}`,
    code,
    workgroups: [s.batch, crops.length, 1],
  };
}

/** The column step over the stored q0: bindings r, q (codes), c. */
export function sinkhornColumnsKernel(s: SinkhornShape, assign: number): Kernel {
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> r: array<f32>;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
const B = ${s.batch}u; const K = ${s.prototypes}u;
var<workgroup> red: array<f32, ${CT * RT}>;
${columnReduce('reduceSum', (a, b) => `${a} + ${b}`)}
@compute @workgroup_size(${CT}, ${RT}, 1)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let a = wid.y;
  let k = wid.x * ${CT}u + lid.x;
  let i = lid.y * ${CT}u + lid.x;
  var sum = 0.0;
  if (k < K) {
    for (var b = lid.y; b < B; b += ${RT}u) { sum = fma(q[(a * B + b) * K + k], r[a * B + b], sum); }
  }
  red[i] = sum;
  reduceSum(i, lid.y);
  if (lid.y == 0u && k < K) { c[a * K + k] = 1.0 / (${s.prototypes}.0 * red[i]); }
}
`;
  return {
    key: `sinkhorn-columns:${s.batch}x${s.prototypes}x${assign}`,
    code,
    workgroups: columnGroups(s, assign),
  };
}

/** codes = q0 c r B in place: bindings c, r, q (codes). */
export function sinkhornCodesKernel(s: SinkhornShape, assign: number): Kernel {
  const total = assign * s.batch * s.prototypes;
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> c: array<f32>;
@group(0) @binding(1) var<storage, read> r: array<f32>;
@group(0) @binding(2) var<storage, read_write> q: array<f32>;
const B = ${s.batch}u; const K = ${s.prototypes}u;
${elementwiseEntry(total)}
  let row = i / K;
  q[i] = q[i] * c[(row / B) * K + i % K] * (r[row] * ${s.batch}.0);
}
`;
  return { key: `sinkhorn-codes:${s.batch}x${s.prototypes}x${assign}`, code, workgroups: elementwiseGroups(total) };
}

/** Allocates the scratch vectors (once, outside any step). */
export function createSinkhornScratch(
  runner: { tensor(shape: readonly number[]): GpuTensor },
  s: SinkhornShape,
  assign: number,
): SinkhornScratch {
  return {
    colmax: runner.tensor([assign, s.prototypes]),
    c: runner.tensor([assign, s.prototypes]),
    r: runner.tensor([assign, s.batch]),
  };
}

function checkArgs(s: SinkhornShape, o: SinkhornOptions, scores: GpuTensor, codes: GpuTensor): void {
  if (!Number.isInteger(o.iterations) || o.iterations < 1)
    throw new RangeError(`sinkhorn: ${o.iterations} iterations (at least 1, as SwavConfig.sinkhornIters)`);
  if (!(o.epsilon > 0)) throw new RangeError(`sinkhorn: epsilon ${o.epsilon} is not positive`);
  if (s.batch > MAX_DIM) throw new RangeError(`sinkhorn: batch ${s.batch} exceeds ${MAX_DIM} workgroups`);
  for (const crop of o.cropsForAssign)
    if (!Number.isInteger(crop) || crop < 0 || crop >= s.crops)
      throw new RangeError(`sinkhorn: assignment crop ${crop} is not one of crops 0..${s.crops - 1}`);
  if (scores.dtype !== 'f32' || scores.size !== s.crops * s.batch * s.prototypes)
    throw new RangeError(`sinkhorn: scores must be [${s.crops * s.batch}, ${s.prototypes}] f32`);
  if (codes.dtype !== 'f32' || codes.size !== o.cropsForAssign.length * s.batch * s.prototypes)
    throw new RangeError(`sinkhorn: codes must be [${o.cropsForAssign.length}, ${s.batch}, ${s.prototypes}] f32`);
}

/**
 * Codes for every assignment crop: scores ([crops * B, K] f32, crop v's rows at v * B) -> codes
 * ([assign, B, K] f32, in cropsForAssign order). Nothing is saved: codes carry no gradient.
 */
export function sinkhornCodes(
  s: SinkhornShape,
  o: SinkhornOptions,
  scores: GpuTensor,
  codes: GpuTensor,
  scratch: SinkhornScratch,
): Dispatch[] {
  checkArgs(s, o, scores, codes);
  const { colmax, c, r } = scratch;
  const crops = o.cropsForAssign;
  if (r.size < crops.length * s.batch || c.size < crops.length * s.prototypes)
    throw new RangeError(`sinkhorn: scratch made for fewer than ${crops.length} assignment crops`);
  const out: Dispatch[] = [
    { kernel: sinkhornInitKernel(s, crops, o.epsilon), buffers: [scores, colmax, c] },
    { kernel: sinkhornRowsKernel(s, crops, o.epsilon, true), buffers: [scores, colmax, c, r, codes] },
  ];
  for (let it = 1; it < o.iterations; it++)
    out.push(
      { kernel: sinkhornColumnsKernel(s, crops.length), buffers: [r, codes, c] },
      { kernel: sinkhornRowsKernel(s, crops, o.epsilon, false), buffers: [c, r, codes] },
    );
  out.push({ kernel: sinkhornCodesKernel(s, crops.length), buffers: [c, r, codes] });
  return out;
}
