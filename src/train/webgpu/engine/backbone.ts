/**
 * The RegNet backbone on the WebGPU engine, built from the model's own definition (regnet.ts' regnetBody,
 * recorded by graph.ts) for one input shape: forward (training mode) and backward dispatches over tensors
 * allocated once at build time, so a step allocates nothing.
 *
 * Weights live in flat buffers shared by every instance (one per crop resolution, all built on the same
 * `BackboneWeights`): f32 masters, their f16 copy in mixed precision, f32 gradients, f32 running statistics.
 * Parameter names and shapes are the tfjs ParamSet's, so weights copy both ways by name.
 *
 * Recomputation (`recompute`, engine/recompute.ts) keeps only each segment's (stem, stage) output and the
 * inputs for the backward and writes the rest again there, in slots that instances can share: fewer bytes
 * for one more pass over the activations, with the same gradients, loss and running statistics bit for bit.
 *
 * Precision: 'f32' keeps everything f32. 'mixed' stores activations and their gradients as f16 and has conv
 * and SE matrix kernels read the f16 weight copy; sums, BatchNorm statistics, SE gates, pooled features and
 * every parameter gradient stay f32.
 */
import { paramLayout, type ParamLayout } from '../kernels/lars.js';
import { elementwiseEntry, elementwiseGroups, enableF16 } from '../kernels/elementwise.js';
import type { ConvPrecision } from '../kernels/conv2d.js';
import type { Precision } from '../precision.js';
import type { Dispatch, Dtype, GpuRunner, GpuTensor, Kernel } from '../runner.js';
import type { RegNetSpec } from '../../regnet-spec.js';
import { emitBackbone, type ParamViews, type RecomputeOptions } from './emit.js';
import { recordBackbone, type ParamShape } from './graph.js';
import { allocateActivationScratch, recomputePlan, type ActivationScratch } from './recompute.js';

export { allocateActivationScratch, type ActivationScratch } from './recompute.js';

/** The flat buffers every backbone instance reads its weights from and writes its gradients to. */
export interface BackboneWeights {
  /** Where each trainable parameter (and its gradient) sits, in elements; may also hold others (the head's). */
  params: ParamLayout;
  /** Where each running statistic sits: a BatchNorm's `.var` must follow its `.mean` directly (`pairedStatsLayout`). */
  stats: ParamLayout;
  /** f32 master weights, `params.total` elements. */
  weights: GpuTensor;
  /** Their f16 copy (mixed precision): what conv and SE matrix kernels read. */
  weights16?: GpuTensor;
  /** f32 gradients, `params.total` elements. */
  grads: GpuTensor;
  /** f32 running statistics, `stats.total` elements, updated in place by each forward. */
  running: GpuTensor;
}

export interface BackboneOptions {
  /** Images per batch. */
  batch: number;
  /** Square image side, in pixels. */
  size: number;
  precision: Precision;
  /**
   * 'overwrite': the backward writes every backbone gradient (the first, or only, resolution of a step).
   * 'accumulate': it adds to them (later resolutions), through a private buffer and one add over `grads`.
   * @default 'overwrite'
   */
  gradients?: 'overwrite' | 'accumulate';
  /**
   * Keep only each segment's output for the backward and recompute the other activations there, in
   * `scratch`'s slots (shared with other instances: allocate it with `allocateActivationScratch` from every
   * instance's `activationSlotNeeds`), or in slots of this instance's own without it.
   * @default false
   */
  recompute?: boolean;
  /** Shared activation slots for `recompute`, of the activation type ('f16' in mixed precision). */
  scratch?: ActivationScratch;
}

export interface Backbone {
  /** Images, NHWC [batch, size, size, 3] f32, written by the caller before the forward runs. */
  input: GpuTensor;
  /** Pooled features [batch, C] f32, written by the forward (C = the last stage's width). */
  features: GpuTensor;
  /** d(loss)/d(features) [batch, C] f32 (loss-scaled or not), written by the caller before the backward runs. */
  featuresGrad: GpuTensor;
  /** Training-mode forward: features from input, each BatchNorm's batch statistics, running statistics updated. */
  forward: Dispatch[];
  /** Gradients of every backbone parameter into `weights.grads` (see `gradients`), from `featuresGrad`. */
  backward: Dispatch[];
  /** Each BatchNorm's statistics of the last forward, by layer name, [4, C] f32 (kernels/batchnorm.ts BN_STATS). */
  bnStats: ReadonlyMap<string, GpuTensor>;
  /**
   * Bytes of GPU memory this instance holds (activations, gradients, scratch; not the shared weights, nor a
   * shared `scratch`).
   */
  bytes: number;
  release(): void;
}

/** Trainable parameters and running statistics of `spec`'s backbone, names and shapes as the ParamSet's. */
export function backboneParams(spec: RegNetSpec): { params: ParamShape[]; stats: ParamShape[] } {
  const { params, stats } = recordBackbone(spec, 1, 32);
  return { params, stats };
}

/** Elements of each activation slot an instance for `o` needs when it recomputes (ActivationScratch). */
export function activationSlotNeeds(spec: RegNetSpec, o: Pick<BackboneOptions, 'batch' | 'size'>): number[] {
  return recomputePlan(recordBackbone(spec, o.batch, o.size)).needs;
}

/** A stats layout with each BatchNorm's `.mean` and `.var` side by side ([2, C] from mean's aligned offset). */
export function pairedStatsLayout(stats: readonly ParamShape[], align = 128): ParamLayout {
  const slots: ParamLayout['params'] = [];
  let offset = 0;
  for (let i = 0; i < stats.length; i++) {
    const p = stats[i]!;
    const size = p.shape.reduce((a, b) => a * b, 1);
    const next = stats[i + 1];
    const paired = p.name.endsWith('.mean') && next?.name === `${p.name.slice(0, -5)}.var`;
    slots.push({ name: p.name, shape: [...p.shape], size, offset });
    if (paired) {
      slots.push({ name: next.name, shape: [...next.shape], size, offset: offset + size });
      i++;
    }
    offset += Math.ceil(((paired ? 2 : 1) * size) / align) * align;
  }
  return { params: slots, total: Math.max(align, offset) };
}

/** Allocates `BackboneWeights` for `spec` alone (contents undefined until written). */
export function allocateBackboneWeights(runner: GpuRunner, spec: RegNetSpec, precision: Precision): BackboneWeights {
  const shapes = backboneParams(spec);
  const params = paramLayout(shapes.params);
  const stats = pairedStatsLayout(shapes.stats);
  return {
    params,
    stats,
    weights: runner.tensor([params.total]),
    ...(precision === 'mixed' ? { weights16: runner.tensor([params.total], 'f16') } : {}),
    grads: runner.tensor([params.total]),
    running: runner.tensor([stats.total]),
  };
}

/** Builds one instance for `o.batch` images of `o.size` pixels on the shared `w`. */
export function buildBackbone(runner: GpuRunner, spec: RegNetSpec, o: BackboneOptions, w: BackboneWeights): Backbone {
  const p: ConvPrecision = o.precision === 'mixed' ? { act: 'f16', weight: 'f16' } : { act: 'f32', weight: 'f32' };
  if (p.weight === 'f16' && !w.weights16) throw new RangeError('backbone: mixed precision needs weights16');
  const own: GpuTensor[] = [];
  const accumulate = (o.gradients ?? 'overwrite') === 'accumulate';
  const local = accumulate ? runner.tensor([w.params.total]) : null;
  if (local) {
    own.push(local);
    runner.writeBytes(local, new Float32Array(w.params.total)); // slots the backbone never writes add zero
  }
  const views = paramViews(runner, w, local ?? w.grads);
  const graph = recordBackbone(spec, o.batch, o.size);
  let recompute: RecomputeOptions | undefined;
  if (o.recompute) {
    const plan = recomputePlan(graph);
    let scratch = o.scratch;
    if (!scratch) {
      scratch = allocateActivationScratch(runner, p.act, [plan.needs]);
      own.push(...scratch.slots);
    }
    recompute = { plan, scratch };
  }
  const e = emitBackbone(runner, graph, views, p, recompute);
  own.push(...e.tensors);
  let input = e.input;
  const forward = e.forward;
  if (p.act !== 'f32') {
    input = runner.tensor(e.input.shape, 'f32');
    own.push(input);
    forward.unshift({ kernel: castKernel(input.size, 'f32', p.act), buffers: [input, e.input] });
  }
  const backward = e.backward;
  if (local) backward.push({ kernel: accumulateKernel(w.params.total), buffers: [local, w.grads] });
  return {
    input,
    features: e.features,
    featuresGrad: e.featuresGrad,
    forward,
    backward,
    bnStats: e.bnStats,
    bytes: own.reduce((n, t) => n + t.buffer.size, 0),
    release: () => runner.release(...own),
  };
}

function paramViews(runner: GpuRunner, w: BackboneWeights, grads: GpuTensor): ParamViews {
  const slot = (layout: ParamLayout, name: string, what: string) => {
    const s = layout.params.find((q) => q.name === name);
    if (!s) throw new RangeError(`backbone: ${what} ${name} is not in the layout`);
    return s;
  };
  const view = (t: GpuTensor, name: string) => {
    const s = slot(w.params, name, 'parameter');
    return runner.view(t, s.offset, s.shape);
  };
  return {
    master: (name) => view(w.weights, name),
    matrix: (name) => view(w.weights16 ?? w.weights, name),
    grad: (name) => view(grads, name),
    running: (bn) => {
      const mean = slot(w.stats, `${bn}.mean`, 'statistic');
      const variance = slot(w.stats, `${bn}.var`, 'statistic');
      if (variance.offset !== mean.offset + mean.size)
        throw new RangeError(`backbone: ${bn}.var does not follow ${bn}.mean in the stats layout (pairedStatsLayout)`);
      return runner.view(w.running, mean.offset, [2, mean.size]);
    },
  };
}

/** out = in, converted: bindings in (`from`), out (`to`). */
function castKernel(total: number, from: Dtype, to: Dtype): Kernel {
  const code = /* wgsl */ `${enableF16(from, to)}
@group(0) @binding(0) var<storage, read> src: array<${from}>;
@group(0) @binding(1) var<storage, read_write> dst: array<${to}>;
${elementwiseEntry(total)}
  dst[i] = ${to}(src[i]);
}
`;
  return { key: `cast:${total}:${from}:${to}`, code, workgroups: elementwiseGroups(total) };
}

/** g += local: bindings local, g (f32). */
function accumulateKernel(total: number): Kernel {
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> local: array<f32>;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
${elementwiseEntry(total)}
  g[i] += local[i];
}
`;
  return { key: `accumulate:${total}`, code, workgroups: elementwiseGroups(total) };
}

/** Flat f32 values laid out by `layout` from per-name values (zeros where `valueOf` gives none). */
export function packByName(
  layout: ParamLayout,
  valueOf: (name: string) => ArrayLike<number> | undefined,
): Float32Array {
  const out = new Float32Array(layout.total);
  for (const p of layout.params) {
    const v = valueOf(p.name);
    if (v) out.set(v as ArrayLike<number>, p.offset);
  }
  return out;
}

/** Per-name slices of flat values laid out by `layout`. */
export function unpackByName(layout: ParamLayout, flat: Float32Array): Map<string, Float32Array> {
  return new Map(layout.params.map((p) => [p.name, flat.slice(p.offset, p.offset + p.size)]));
}
