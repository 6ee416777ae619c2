/**
 * SwAV's queue on the GPU (model.ts' queue, swav.ts' localCodes): for batches too small for a balanced
 * Sinkhorn assignment, each assignment crop keeps its last L embeddings, and once the queue is full (and the
 * run past `queue.startStep`) Sinkhorn runs over the queue's scores and the batch's together, the batch's rows
 * of the codes kept:
 *   queuedCodes   per assignment crop a:  rows [0, L)      queue_a P           (P: the prototypes, [D, K])
 *                                         rows [L, L + B)  the batch's scores of crop cropsForAssign[a]
 *                 Sinkhorn over those L + B rows (sinkhorn.ts; codes scaled by L + B, as swav.ts' sinkhorn
 *                 of the concatenation), then rows [L, L + B) of its codes -> codes[a]
 *   pushQueue     queue_a <- [z of crop cropsForAssign[a]; queue_a[0, L - B)]: newest first, as pushQueue
 * The queue takes no gradient. Both run every step once L > 0 (the queue fills before it is used); the step
 * uses queuedCodes in place of sinkhornCodes only while it is in use, a choice the stepper makes per step.
 */
import type { Dispatch, GpuRunner, GpuTensor, Kernel } from '../runner.js';
import { copyKernel, elementwiseEntry, elementwiseGroups } from './elementwise.js';
import { matmulKernel } from './head.js';
import { createSinkhornScratch, sinkhornCodes, type SinkhornOptions, type SinkhornScratch } from './sinkhorn.js';

export interface SwavQueueShape {
  /** Samples per crop B. */
  batch: number;
  /** Queue length L per assignment crop (a multiple of B, as config.ts checks). */
  length: number;
  /** Embedding width D. */
  dim: number;
  /** Prototype count K. */
  prototypes: number;
}

/** The queue and its scratch, allocated once (all f32). */
export interface SwavQueue {
  /** One per assignment crop, [L, D]: its last L embeddings, newest first (SwavModel.queue's layout). */
  entries: GpuTensor[];
  /** [L + B, K]: one assignment crop's queue scores then batch scores, Sinkhorn's input. */
  scores: GpuTensor;
  /** [L + B, K]: Sinkhorn's codes for them. */
  codes: GpuTensor;
  sinkhorn: SinkhornScratch;
  /** [L, D]: the entries before a push. */
  previous: GpuTensor;
}

function rowsShape(s: SwavQueueShape) {
  return { batch: s.length + s.batch, prototypes: s.prototypes, crops: 1 };
}

export function createSwavQueue(runner: GpuRunner, s: SwavQueueShape, assign: number): SwavQueue {
  if (!(s.length > 0) || s.length % s.batch !== 0)
    throw new RangeError(`queue: length ${s.length} is not a positive multiple of the batch (${s.batch})`);
  const rows = s.length + s.batch;
  return {
    entries: Array.from({ length: assign }, () => runner.tensor([s.length, s.dim])),
    scores: runner.tensor([rows, s.prototypes]),
    codes: runner.tensor([rows, s.prototypes]),
    sinkhorn: createSinkhornScratch(runner, rowsShape(s), 1),
    previous: runner.tensor([s.length, s.dim]),
  };
}

/** Every tensor of `q`, to release. */
export function swavQueueTensors(q: SwavQueue): GpuTensor[] {
  return [...q.entries, q.scores, q.codes, ...Object.values(q.sinkhorn), q.previous];
}

/**
 * Codes of the assignment crops over queue + batch: scores ([crops * B, K] f32, crop v's rows at v * B) and
 * prototypes ([D, K], f32 or f16) -> codes ([assign, B, K] f32, in cropsForAssign order).
 */
export function queuedCodes(
  s: SwavQueueShape,
  o: SinkhornOptions,
  scores: GpuTensor,
  prototypes: GpuTensor,
  q: SwavQueue,
  codes: GpuTensor,
): Dispatch[] {
  const { batch: B, length: L, dim: D, prototypes: K } = s;
  const product = matmulKernel({ M: L, N: K, K: D, aT: false, bT: false, a: 'f32', b: prototypes.dtype, out: 'f32' });
  const sinkhorn = { ...o, cropsForAssign: [0] };
  return o.cropsForAssign.flatMap((crop, a) => [
    { kernel: product, buffers: [q.entries[a]!, prototypes, q.scores] },
    { kernel: copyKernel(B * K, crop * B * K, L * K), buffers: [scores, q.scores] },
    ...sinkhornCodes(rowsShape(s), sinkhorn, q.scores, q.codes, q.sinkhorn),
    { kernel: copyKernel(B * K, L * K, a * B * K), buffers: [q.codes, codes] },
  ]);
}

/** queue[i] = z[first + i] for i < B * D, else previous[i - B * D]: bindings z, previous, queue. */
function pushKernel(s: SwavQueueShape, first: number): Kernel {
  const fresh = s.batch * s.dim;
  const total = s.length * s.dim;
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> previous: array<f32>;
@group(0) @binding(2) var<storage, read_write> queue: array<f32>;
${elementwiseEntry(total)}
  if (i < ${fresh}u) { queue[i] = z[${first}u + i]; } else { queue[i] = previous[i - ${fresh}u]; }
}
`;
  return { key: `queue-push:${s.length}x${s.dim}:${s.batch}:${first}`, code, workgroups: elementwiseGroups(total) };
}

/** Pushes each assignment crop's embeddings (rows of z, [crops * B, D] f32) onto the front of its queue. */
export function pushQueue(
  s: SwavQueueShape,
  cropsForAssign: readonly number[],
  z: GpuTensor,
  q: SwavQueue,
): Dispatch[] {
  const size = s.length * s.dim;
  return cropsForAssign.flatMap((crop, a) => [
    { kernel: copyKernel(size, 0, 0), buffers: [q.entries[a]!, q.previous] },
    { kernel: pushKernel(s, crop * s.batch * s.dim), buffers: [z, q.previous, q.entries[a]!] },
  ]);
}
