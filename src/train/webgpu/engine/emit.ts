/**
 * A recorded backbone graph (graph.ts) turned into dispatches: every activation, gradient and scratch tensor is
 * allocated here, once, so a step's forward and backward only run. The forward is training-mode (batch
 * statistics, running statistics updated in place); the backward walks the nodes in reverse and writes each
 * parameter's gradient into the view `ParamViews.grad` gives for it. An activation read by two nodes (a block's
 * input, by its branch and its shortcut) gets the sum of both gradients.
 *
 * Memory: activations (and what BatchNorm and SE save) live for the whole step. Activation gradients and scratch
 * (partial sums) are recycled: a buffer whose last reader has been emitted is handed to a later tensor of the
 * same type, the smallest free one it fits in, as a view at its start (reuse by exact size only would keep a set
 * of buffers per shape: 8.8 MiB more per image for regnety_400mf at 224 in f32). That is safe because the
 * dispatches of one compute pass run in order, each seeing the writes of those before it. With recomputation
 * (recompute.ts) the activations inside each segment live in shared slots instead, and each segment's backward
 * starts by writing them again.
 */
import { batchNormForward, BN_STATS } from '../kernels/batchnorm.js';
import { batchNormBackward } from '../kernels/batchnorm-backward.js';
import { conv2dFilterGrad, conv2dForwardKernel, conv2dInputGradKernel, type ConvPrecision } from '../kernels/conv2d.js';
import { addKernel, reluGradKernel } from '../kernels/elementwise.js';
import { channelReduceKernel, poolGradKernel } from '../kernels/pool.js';
import { seBackward, seForward, type SeSaved, type SeShape, type SeWeights } from '../kernels/se.js';
import type { Dispatch, Dtype, GpuRunner, GpuTensor } from '../runner.js';
import type { BackboneGraph, GraphNode } from './graph.js';
import { slotView, type ActivationScratch, type RecomputePlan } from './recompute.js';

/** Where the kernels find each parameter, by its ParamSet name. */
export interface ParamViews {
  /** The f32 master (BatchNorm gamma and beta, SE biases). */
  master(name: string): GpuTensor;
  /** What conv and SE matrix kernels read: the f16 copy in mixed precision, else the master. */
  matrix(name: string): GpuTensor;
  /** The f32 gradient the backward overwrites. */
  grad(name: string): GpuTensor;
  /** A BatchNorm's running statistics, [2, C] f32 (mean, unbiased variance), updated in place. */
  running(bn: string): GpuTensor;
}

export interface Emitted {
  forward: Dispatch[];
  backward: Dispatch[];
  /** The graph's input images, [B, S, S, 3] of the activation type. */
  input: GpuTensor;
  /** Pooled features [B, C] f32 (written by the forward). */
  features: GpuTensor;
  /** d(loss)/d(features) [B, C] f32, written by the caller before the backward runs. */
  featuresGrad: GpuTensor;
  /** Each BatchNorm's batch statistics of the last forward, [4, C] f32 (BN_STATS layout). */
  bnStats: Map<string, GpuTensor>;
  /** Every tensor allocated here (the caller releases them). */
  tensors: GpuTensor[];
}

const rows = (shape: readonly number[]) => shape.slice(0, -1).reduce((a, b) => a * b, 1);
const channels = (shape: readonly number[]) => shape[shape.length - 1]!;
const spatial = (shape: readonly number[]) => ({
  batch: shape[0]!,
  hw: shape[1]! * shape[2]!,
  channels: channels(shape),
});

/** Recompute the activations `plan` puts in `scratch`'s slots (of the activation type) in the backward. */
export interface RecomputeOptions {
  plan: RecomputePlan;
  scratch: ActivationScratch;
}

export function emitBackbone(
  runner: GpuRunner,
  graph: BackboneGraph,
  views: ParamViews,
  p: ConvPrecision,
  recompute?: RecomputeOptions,
): Emitted {
  if (recompute && recompute.scratch.dtype !== p.act)
    throw new RangeError(`backbone: ${recompute.scratch.dtype} activation scratch for ${p.act} activations`);
  const tensors: GpuTensor[] = [];
  const alloc = (shape: readonly number[], dtype: Dtype = 'f32') => {
    const t = runner.tensor(shape, dtype);
    tensors.push(t);
    return t;
  };
  /** Buffers no live tensor uses, and the buffer each tensor handed out by `take` lives in. */
  const free: GpuTensor[] = [];
  const home = new Map<GpuTensor, GpuTensor>();
  /** The smallest free buffer of the type that holds `shape` (a view at its start), or a new one. */
  const take = (shape: readonly number[], dtype: Dtype = 'f32'): GpuTensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    let best = -1;
    free.forEach((t, i) => {
      if (t.dtype === dtype && t.size >= n && (best < 0 || t.size < free[best]!.size)) best = i;
    });
    if (best < 0) return alloc(shape, dtype);
    const buffer = free.splice(best, 1)[0]!;
    const t = buffer.size === n ? { ...buffer, shape: [...shape] } : runner.view(buffer, 0, shape);
    home.set(t, buffer);
    return t;
  };
  const recycle = (t: GpuTensor) => {
    free.push(home.get(t) ?? t);
    home.delete(t);
  };
  let inUse: GpuTensor[] = [];
  /** Partial sums, read only by the dispatches of the layer that asked: recycled once that layer is emitted. */
  const scratch = (shape: number[]) => {
    const t = take(shape);
    inUse.push(t);
    return t;
  };
  const doneWithScratch = () => {
    inUse.forEach(recycle);
    inUse = [];
  };
  const out = new Map<GraphNode, GpuTensor>();
  const saved = new Map<GraphNode, SeSaved>();
  const bnStats = new Map<string, GpuTensor>();
  const seWeights = (name: string): SeWeights => ({
    w1: views.matrix(`${name}.reduce.w`),
    b1: views.master(`${name}.reduce.b`),
    w2: views.matrix(`${name}.expand.w`),
    b2: views.master(`${name}.expand.b`),
  });
  const seShape = (node: GraphNode & { kind: 'se' }): SeShape => ({ ...spatial(node.shape), squeeze: node.squeeze });

  const forward: Dispatch[] = [];
  /** Each recomputed node's last forward dispatch: the one that writes its activation. */
  const writer = new Map<GraphNode, Dispatch>();
  for (const node of graph.nodes) {
    const slot = recompute?.plan.slotOf.get(node);
    const y =
      slot === undefined
        ? alloc(node.shape, node.kind === 'pool' ? 'f32' : p.act)
        : slotView(runner, recompute!.scratch, slot, node.shape);
    out.set(node, y);
    const first = forward.length;
    const x = node.kind === 'input' || node.kind === 'add' ? null : out.get(node.x)!;
    switch (node.kind) {
      case 'conv':
        forward.push({ kernel: conv2dForwardKernel(node.conv, p), buffers: [x!, views.matrix(`${node.name}.w`), y] });
        break;
      case 'bn': {
        const stats = alloc([BN_STATS.ROWS, channels(node.shape)]);
        bnStats.set(node.name, stats);
        const s = { rows: rows(node.shape), channels: channels(node.shape) };
        const t = { x: x!, gamma: views.master(`${node.name}.gamma`), beta: views.master(`${node.name}.beta`) };
        forward.push(
          ...batchNormForward(s, { ...t, stats, running: views.running(node.name), y }, scratch, { relu: node.relu }),
        );
        break;
      }
      case 'se': {
        const b = node.shape[0]!;
        const c = channels(node.shape);
        const sv = { pooled: alloc([b, c]), hidden: alloc([b, node.squeeze]), gate: alloc([b, c]) };
        saved.set(node, sv);
        forward.push(...seForward(seShape(node), x!, seWeights(node.name), sv, y));
        break;
      }
      case 'add':
        forward.push({
          kernel: addKernel(y.size, p.act, node.relu),
          buffers: [out.get(node.a)!, out.get(node.b)!, y],
        });
        break;
      case 'pool':
        forward.push({ kernel: channelReduceKernel(spatial(node.x.shape), p.act, 'mean'), buffers: [x!, y] });
        break;
    }
    doneWithScratch();
    if (slot !== undefined) {
      // batchNormForward ends with apply (x, stats -> y), seForward with scale (x, gate -> y): replayed alone,
      // the last dispatch rewrites y from x and what the earlier ones kept, and touches nothing else.
      const last = forward[forward.length - 1]!;
      if (forward.length === first || last.buffers[last.buffers.length - 1] !== y)
        throw new Error(`engine: the last forward dispatch of node ${node.id} (${node.kind}) does not write it`);
      writer.set(node, last);
    }
  }

  // Backward, in reverse execution order: when a node is reached every reader of it has given its gradient.
  // A gradient tensor is recycled when no node holds it any more (the residual join hands one to both inputs).
  const grads = new Map<GraphNode, GpuTensor>();
  const holders = new Map<GpuTensor, number>();
  const hold = (node: GraphNode, t: GpuTensor) => {
    grads.set(node, t);
    holders.set(t, (holders.get(t) ?? 0) + 1);
  };
  const drop = (t: GpuTensor) => {
    const n = (holders.get(t) ?? 0) - 1;
    holders.set(t, n);
    if (n <= 0 && t !== featuresGrad) recycle(t);
  };
  const backward: Dispatch[] = [];
  /** Adds `g` to `node`'s gradient; `transient`: nobody else holds g, so it is recycled once summed in. */
  const give = (node: GraphNode, g: GpuTensor, transient = true) => {
    const before = grads.get(node);
    if (!before) return hold(node, g);
    const sum = take(node.shape, p.act);
    backward.push({ kernel: addKernel(sum.size, p.act, false), buffers: [before, g, sum] });
    drop(before);
    if (transient) recycle(g);
    hold(node, sum);
  };
  const last = graph.nodes[graph.nodes.length - 1]!;
  const featuresGrad = alloc(last.shape);
  hold(last, featuresGrad);
  let segment = last.segment + 1;
  for (const node of [...graph.nodes].reverse()) {
    if (node.segment !== segment) {
      segment = node.segment;
      for (const n of recompute?.plan.segments.get(segment) ?? []) backward.push(writer.get(n)!);
    }
    const dy = grads.get(node);
    if (!dy || node.kind === 'input') continue;
    if (node.kind === 'add') {
      let dsum = dy;
      if (node.relu) {
        dsum = take(node.shape, p.act);
        backward.push({ kernel: reluGradKernel(dsum.size, p.act), buffers: [out.get(node)!, dy, dsum] });
      }
      give(node.a, dsum, false);
      give(node.b, dsum, false);
      drop(dy);
      if (dsum !== dy && !holders.get(dsum)) recycle(dsum);
      continue;
    }
    const x = out.get(node.x)!;
    const dx = node.x.kind === 'input' ? null : take(node.x.shape, p.act);
    switch (node.kind) {
      case 'pool':
        backward.push({ kernel: poolGradKernel(spatial(node.x.shape), p.act), buffers: [dy, dx!] });
        break;
      case 'bn': {
        const s = { rows: rows(node.shape), channels: channels(node.shape) };
        const t = { x, stats: bnStats.get(node.name)!, dy, dx: dx! };
        const g = { dgamma: views.grad(`${node.name}.gamma`), dbeta: views.grad(`${node.name}.beta`) };
        backward.push(...batchNormBackward(s, { ...t, ...g }, scratch, { relu: node.relu }));
        break;
      }
      case 'se': {
        const g = {
          dx: dx!,
          dw1: views.grad(`${node.name}.reduce.w`),
          db1: views.grad(`${node.name}.reduce.b`),
          dw2: views.grad(`${node.name}.expand.w`),
          db2: views.grad(`${node.name}.expand.b`),
        };
        backward.push(...seBackward(seShape(node), x, dy, seWeights(node.name), saved.get(node)!, g, scratch));
        break;
      }
      case 'conv': {
        const w = `${node.name}.w`;
        backward.push(...conv2dFilterGrad(node.conv, p, x, dy, views.grad(w), scratch));
        if (dx) backward.push({ kernel: conv2dInputGradKernel(node.conv, p), buffers: [dy, views.matrix(w), dx] });
        break;
      }
    }
    doneWithScratch();
    drop(dy);
    if (dx) give(node.x, dx);
  }
  return {
    forward,
    backward,
    input: out.get(graph.nodes[0]!)!,
    features: out.get(last)!,
    featuresGrad,
    bnStats,
    tensors,
  };
}
