/**
 * Activation recomputation ("gradient checkpointing", Chen et al. 2016) for the WebGPU backbone, segment by
 * segment (graph.ts: the stem, each stage; the pool is its own): the forward keeps only each segment's output
 * (the next one's input), the input images and the pooled features; every other activation of a segment lives
 * in slots shared with every other segment (and every backbone instance built on the same ActivationScratch).
 * The backward of a segment first writes its activations into the slots again, then runs as without
 * recomputation (emit.ts).
 *
 * What must stay true:
 *   - a segment's backward reads only activations of its own segment, its input and its output: RegNet's
 *     blocks read nothing across stages but a stage's input (checked here);
 *   - the recomputed activations equal the first forward's bit for bit: each is written by the very dispatch
 *     that wrote it then (same kernel, same buffers), from its input and what the forward kept per layer
 *     (BatchNorm's batch statistics [4, C], SE's gate [B, C]); the statistics pass and its running-statistics
 *     update are not run again, so the running statistics move once per forward;
 *   - slots are shared, so the first forward of a later segment (or instance) overwrites an earlier one's:
 *     dispatches run in order in one compute pass, and each segment's backward recomputes before it reads.
 * Cost: one more conv, BatchNorm-apply, SE-scale and add pass over each segment's activations per step.
 */
import type { Dtype, GpuRunner, GpuTensor } from '../runner.js';
import { inputsOf, type BackboneGraph, type GraphNode } from './graph.js';

export interface RecomputePlan {
  /** Where each recomputed activation lives: slot and element offset (nodes absent here keep their own buffer). */
  slotOf: Map<GraphNode, { slot: number; offset: number }>;
  /** The recomputed nodes of each segment, in execution order, by segment. */
  segments: Map<number, GraphNode[]>;
  /** Elements each slot must hold. */
  needs: number[];
}

/**
 * Offsets within a slot are multiples of this many elements: 256 bytes or more for f16 and f32, the largest
 * minStorageBufferOffsetAlignment WebGPU allows, so every view binds on every device.
 */
const ALIGN = 128;

/**
 * Which activations a recomputing backbone keeps and where the others go. A segment's activations are live
 * together during its backward, so they are laid out side by side; segments share the space. A dispatch may
 * not bind one buffer both read-only and writable, so a node and each of its inputs sit in different slots:
 * within a segment each node takes the least filled slot none of its inputs is in (a block is nearly a chain,
 * so two or three slots, filled about evenly, and the slots together hold about the largest segment).
 */
export function recomputePlan(graph: BackboneGraph): RecomputePlan {
  const nodes = graph.nodes;
  // The last node of a segment is its output (the next segment's input).
  const kept = (n: GraphNode) => n.kind === 'input' || n.kind === 'pool' || nodes[n.id + 1]?.segment !== n.segment;
  const segments = new Map<number, GraphNode[]>();
  for (const n of nodes) {
    for (const x of inputsOf(n))
      if (x.segment !== n.segment && !kept(x))
        throw new Error(`engine: node ${n.id} (segment ${n.segment}) reads node ${x.id} inside segment ${x.segment}`);
    if (!kept(n)) segments.set(n.segment, [...(segments.get(n.segment) ?? []), n]);
  }
  const slotOf: RecomputePlan['slotOf'] = new Map();
  const needs: number[] = [];
  for (const inside of segments.values()) {
    const used: number[] = needs.map(() => 0);
    for (const n of inside) {
      const taken = new Set(inputsOf(n).map((x) => slotOf.get(x)?.slot));
      let slot = -1;
      used.forEach((u, i) => {
        if (!taken.has(i) && (slot < 0 || u < used[slot]!)) slot = i;
      });
      if (slot < 0) {
        slot = used.length;
        used.push(0);
      }
      const offset = used[slot]!;
      slotOf.set(n, { slot, offset });
      used[slot] = offset + Math.ceil(size(n) / ALIGN) * ALIGN;
      needs[slot] = Math.max(needs[slot] ?? 0, used[slot]!);
    }
  }
  return { slotOf, segments, needs };
}

const size = (n: GraphNode) => n.shape.reduce((a, b) => a * b, 1);

/** Activation slots shared by recomputing backbone instances: slot i holds `slots[i].size` elements. */
export interface ActivationScratch {
  /** The activation type (f16 in mixed precision). */
  dtype: Dtype;
  slots: GpuTensor[];
}

/** Slots large enough for every plan in `needs` (each a RecomputePlan's `needs`); the caller releases them. */
export function allocateActivationScratch(
  runner: GpuRunner,
  dtype: Dtype,
  needs: ReadonlyArray<readonly number[]>,
): ActivationScratch {
  const most: number[] = [];
  for (const list of needs) list.forEach((n, i) => (most[i] = Math.max(most[i] ?? 0, n)));
  return { dtype, slots: most.map((n) => runner.tensor([n], dtype)) };
}

/** `shape` viewed in slot `at.slot` from element `at.offset`; a RangeError when the scratch does not fit the plan. */
export function slotView(
  runner: GpuRunner,
  scratch: ActivationScratch,
  at: { slot: number; offset: number },
  shape: readonly number[],
): GpuTensor {
  const slot = scratch.slots[at.slot];
  const end = at.offset + shape.reduce((a, b) => a * b, 1);
  if (!slot || slot.size < end)
    throw new RangeError(
      `backbone: activation scratch slot ${at.slot} holds ${slot?.size ?? 0} elements, the plan needs ${end} (allocate it from every instance's recomputePlan)`,
    );
  return runner.view(slot, at.offset, shape);
}
