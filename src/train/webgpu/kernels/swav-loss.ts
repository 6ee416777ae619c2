/**
 * SwAV's swapped-prediction loss (swav.ts' swavLoss) and its gradient with respect to every crop's scores, on
 * the GPU with no read-back. With V crops of B rows, A assignment crops i_a and their codes q_a (sinkhorn.ts),
 * p_v = softmax(s_v / T):
 *   loss          = 1/A sum_a 1/(V-1) sum_{v != i_a} -1/B sum_b sum_k q_a[b, k] log p_v[b, k]
 *   dloss/ds_v    = 1/(A (V-1) B T) sum_{a: i_a != v} (p_v[b, k] sum_k' q_a[b, k'] - q_a[b, k])
 * (codes carry no gradient, as localCodes' stopGradient). Dispatches:
 *   rows      one workgroup per row of every crop: log-sum-exp of s / T (saved), each of its terms, and the
 *             row sums of the codes it is compared with (saved)
 *   total     one workgroup sums the row terms into the 1-element loss (a fixed order: deterministic)
 *   backward  one thread per score: the gradient above, times the loss scale when one is bound
 * SwAV's queue joins the Sinkhorn assignment only (swav-queue.ts), so the loss reads codes made either way;
 * swavLoss's `queued` scores are refused here.
 */
import type { Dispatch, GpuTensor, Kernel } from '../runner.js';
import { elementwiseEntry, elementwiseGroups } from './elementwise.js';
import { LOSS_SCALE } from './loss-scale.js';

export interface SwavLossShape {
  batch: number;
  prototypes: number;
  crops: number;
}

export interface SwavLossOptions {
  temperature: number;
  /** Crop of each assignment (SwavConfig.cropsForAssign), in the codes tensor's order. */
  cropsForAssign: readonly number[];
}

/** Written by the forward, read by the backward (f32): lse [crops * B], qsum [A, B], rowLoss [crops * B]. */
export interface SwavLossState {
  lse: GpuTensor;
  qsum: GpuTensor;
  rowLoss: GpuTensor;
}

const THREADS = 256;
const MAX_DIM = 65535;

function key(s: SwavLossShape, o: SwavLossOptions): string {
  return `${s.crops}x${s.batch}x${s.prototypes}:T${o.temperature}:a${o.cropsForAssign.join(',')}`;
}

/** The crop whose row workgroups write qsum for assignment a (any one crop other than i_a). */
function qsumOwner(crop: number): number {
  return crop === 0 ? 1 : 0;
}

/** Per-row terms: bindings scores ([V * B, K]), codes ([A, B, K]), lse, qsum, rowLoss (all f32). */
export function swavLossRowsKernel(s: SwavLossShape, o: SwavLossOptions): Kernel {
  const weight = 1 / (o.cropsForAssign.length * (s.crops - 1) * s.batch);
  const terms = o.cropsForAssign
    .map(
      (crop, a) => `if (v != ${crop}u) {
    var dot = 0.0;
    var qs = 0.0;
    for (var k = i; k < K; k += ${THREADS}u) {
      let q = codes[${a * s.batch * s.prototypes}u + b * K + k];
      dot = fma(q, scores[row * K + k] * ${1 / o.temperature} - lse, dot);
      qs += q;
    }
    red[i] = dot;
    red2[i] = qs;
    reduce(i);
    total -= red[0];
    if (i == 0u && v == ${qsumOwner(crop)}u) { qsum[${a * s.batch}u + b] = red2[0]; }
    workgroupBarrier();
  }`,
    )
    .join('\n  ');
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> scores: array<f32>;
@group(0) @binding(1) var<storage, read> codes: array<f32>;
@group(0) @binding(2) var<storage, read_write> lseOut: array<f32>;
@group(0) @binding(3) var<storage, read_write> qsum: array<f32>;
@group(0) @binding(4) var<storage, read_write> rowLoss: array<f32>;
const B = ${s.batch}u; const K = ${s.prototypes}u;
var<workgroup> red: array<f32, ${THREADS}>;
var<workgroup> red2: array<f32, ${THREADS}>;
fn reduce(i: u32) {
  for (var step = ${THREADS / 2}u; step > 0u; step /= 2u) {
    workgroupBarrier();
    if (i < step) { red[i] = red[i] + red[i + step]; red2[i] = red2[i] + red2[i + step]; }
  }
  workgroupBarrier();
}
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) i: u32) {
  let row = wid.x;
  let v = row / B;
  let b = row % B;
  var m = -3.4e38;
  for (var k = i; k < K; k += ${THREADS}u) { m = max(m, scores[row * K + k] * ${1 / o.temperature}); }
  red2[i] = m;
  for (var step = ${THREADS / 2}u; step > 0u; step /= 2u) {
    workgroupBarrier();
    if (i < step) { red2[i] = max(red2[i], red2[i + step]); }
  }
  workgroupBarrier();
  let mx = red2[0];
  workgroupBarrier();
  var e = 0.0;
  for (var k = i; k < K; k += ${THREADS}u) { e += exp(scores[row * K + k] * ${1 / o.temperature} - mx); }
  red[i] = e;
  red2[i] = 0.0;
  reduce(i);
  let lse = mx + log(red[0]);
  if (i == 0u) { lseOut[row] = lse; }
  workgroupBarrier();
  var total = 0.0;
  ${terms}
  if (i == 0u) { rowLoss[row] = total * ${weight}; }
}
`;
  return { key: `swav-loss-rows:${key(s, o)}`, code, workgroups: [s.crops * s.batch, 1, 1] };
}

/** loss[0] = sum of rowLoss: bindings rowLoss, loss ([1] f32). One workgroup. */
export function swavLossTotalKernel(rows: number): Kernel {
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> rowLoss: array<f32>;
@group(0) @binding(1) var<storage, read_write> loss: array<f32>;
var<workgroup> red: array<f32, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(local_invocation_index) i: u32) {
  var sum = 0.0;
  for (var r = i; r < ${rows}u; r += ${THREADS}u) { sum += rowLoss[r]; }
  red[i] = sum;
  for (var step = ${THREADS / 2}u; step > 0u; step /= 2u) {
    workgroupBarrier();
    if (i < step) { red[i] += red[i + step]; }
  }
  if (i == 0u) { loss[0] = red[0]; }
}
`;
  return { key: `swav-loss-total:${rows}`, code, workgroups: [1, 1, 1] };
}

/**
 * dscores: bindings scores, codes, lse, qsum, dscores ([V * B, K] f32) and, with `scaled`, lossScale (the
 * loss-scale state, LOSS_SCALE.SCALE read: the gradient of scale * loss, for loss-scale.ts).
 */
export function swavLossGradKernel(s: SwavLossShape, o: SwavLossOptions, scaled: boolean): Kernel {
  const total = s.crops * s.batch * s.prototypes;
  const weight = 1 / (o.cropsForAssign.length * (s.crops - 1) * s.batch * o.temperature);
  const terms = o.cropsForAssign
    .map(
      (crop, a) =>
        `if (v != ${crop}u) { g += p * qsum[${a * s.batch}u + b] - codes[${a * s.batch * s.prototypes}u + b * K + k]; }`,
    )
    .join('\n  ');
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> scores: array<f32>;
@group(0) @binding(1) var<storage, read> codes: array<f32>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read> qsum: array<f32>;
@group(0) @binding(4) var<storage, read_write> dscores: array<f32>;
${scaled ? '@group(0) @binding(5) var<storage, read> lossScale: array<f32>;' : ''}
const B = ${s.batch}u; const K = ${s.prototypes}u;
${elementwiseEntry(total)}
  let row = i / K;
  let k = i % K;
  let v = row / B;
  let b = row % B;
  let p = exp(scores[i] * ${1 / o.temperature} - lse[row]);
  var g = 0.0;
  ${terms}
  dscores[i] = g * ${weight}${scaled ? ` * lossScale[${LOSS_SCALE.SCALE}]` : ''};
}
`;
  return { key: `swav-loss-grad:${key(s, o)}:${scaled ? 'scaled' : ''}`, code, workgroups: elementwiseGroups(total) };
}

function checkArgs(s: SwavLossShape, o: SwavLossOptions, scores: GpuTensor, codes: GpuTensor): void {
  if (s.crops < 2) throw new RangeError(`swavLoss: ${s.crops} crop(s); swapped prediction needs at least 2`);
  if (s.crops * s.batch > MAX_DIM) throw new RangeError(`swavLoss: ${s.crops * s.batch} rows exceed ${MAX_DIM}`);
  if (!(o.temperature > 0)) throw new RangeError(`swavLoss: temperature ${o.temperature} is not positive`);
  for (const crop of o.cropsForAssign)
    if (!Number.isInteger(crop) || crop < 0 || crop >= s.crops)
      throw new RangeError(`swavLoss: assignment crop ${crop} is not one of crops 0..${s.crops - 1}`);
  if (scores.dtype !== 'f32' || scores.size !== s.crops * s.batch * s.prototypes)
    throw new RangeError(`swavLoss: scores must be [${s.crops * s.batch}, ${s.prototypes}] f32`);
  if (codes.dtype !== 'f32' || codes.size !== o.cropsForAssign.length * s.batch * s.prototypes)
    throw new RangeError(`swavLoss: codes must be [${o.cropsForAssign.length}, ${s.batch}, ${s.prototypes}] f32`);
}

/** Allocates the forward's saved tensors (once, outside any step). */
export function createSwavLossState(
  runner: { tensor(shape: readonly number[]): GpuTensor },
  s: SwavLossShape,
  o: Pick<SwavLossOptions, 'cropsForAssign'>,
): SwavLossState {
  return {
    lse: runner.tensor([s.crops * s.batch]),
    qsum: runner.tensor([o.cropsForAssign.length, s.batch]),
    rowLoss: runner.tensor([s.crops * s.batch]),
  };
}

/**
 * Forward: scores ([V * B, K] f32, crop v's rows at v * B) and codes ([A, B, K] f32, sinkhornCodes') -> loss
 * ([1] f32, stays on the GPU), saving lse and qsum in `st`. `queued` scores are refused (the queue joins the codes only).
 */
export function swavLossForward(
  s: SwavLossShape,
  o: SwavLossOptions & { queued?: unknown },
  scores: GpuTensor,
  codes: GpuTensor,
  st: SwavLossState,
  loss: GpuTensor,
): Dispatch[] {
  if (o.queued !== undefined)
    throw new RangeError('swavLoss: queued scores go to the codes (swav-queue.ts queuedCodes), not to the WebGPU loss');
  checkArgs(s, o, scores, codes);
  return [
    { kernel: swavLossRowsKernel(s, o), buffers: [scores, codes, st.lse, st.qsum, st.rowLoss] },
    { kernel: swavLossTotalKernel(s.crops * s.batch), buffers: [st.rowLoss, loss] },
  ];
}

/** Backward: d loss / d scores ([V * B, K] f32) for every crop, times lossScale[SCALE] when it is given. */
export function swavLossBackward(
  s: SwavLossShape,
  o: SwavLossOptions,
  scores: GpuTensor,
  codes: GpuTensor,
  st: SwavLossState,
  dscores: GpuTensor,
  lossScale?: GpuTensor,
): Dispatch[] {
  checkArgs(s, o, scores, codes);
  if (dscores.dtype !== 'f32' || dscores.size !== scores.size)
    throw new RangeError(`swavLoss: dscores must be [${s.crops * s.batch}, ${s.prototypes}] f32`);
  return [
    {
      kernel: swavLossGradKernel(s, o, lossScale !== undefined),
      buffers: [scores, codes, st.lse, st.qsum, dscores, ...(lossScale ? [lossScale] : [])],
    },
  ];
}
