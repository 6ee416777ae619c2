/**
 * The gradient program of a RegNet + SwAV step (program.ts' seam), composed as SwavModel.step computes it:
 *   normalise   the prototype columns (and their f16 copy), as normalisePrototypes before every step
 *   backbones   one per crop resolution (engine/backbone.ts), on the crops of that size concatenated along the
 *               batch, in crop order, so BatchNorm sees them together and the running statistics follow each
 *               resolution in turn
 *   gather      their pooled features into [crops * batch, F] in crop order
 *   SwAV        head, Sinkhorn codes and loss, then the backward of loss * scale (kernels/swav.ts)
 *   scatter     d features back to each backbone, whose backwards write (the first) and add (the others) the
 *               backbone's gradients
 *   queue       with config.queue.length > 0, each step pushes the assignment crops' embeddings onto SwAV's
 *               queue (kernels/swav-queue.ts); a second list, the same but for Sinkhorn over queue + batch,
 *               is for the steps the queue joins the assignment (`queue()`)
 * The stepper writes each crop straight into its backbone's input (`inputs`). With recomputation
 * (`recomputesOnGpu`), the backbones keep only each segment's output and share one set of activation slots:
 * every backward recomputes its segments before reading them, so a later forward may overwrite them.
 */
import { regnetSpec } from '../regnet-spec.js';
import { PROTOTYPES } from '../swav.js';
import {
  activationSlotNeeds,
  allocateActivationScratch,
  buildBackbone,
  type ActivationScratch,
  type Backbone,
  type BackboneWeights,
} from './engine/backbone.js';
import { copyKernel } from './kernels/elementwise.js';
import { normalisePrototypesKernel } from './kernels/head.js';
import type { ParamLayout } from './kernels/lars.js';
import { createSwavTensors, swavBackward, swavForward, swavTensorList, type SwavShape } from './kernels/swav.js';
import {
  createSwavQueue,
  pushQueue,
  swavQueueTensors,
  type SwavQueue,
  type SwavQueueShape,
} from './kernels/swav-queue.js';
import { recomputesOnGpu, type GradientProgram, type GradientProgramSpec, type StepBuffers } from './program.js';
import type { Dispatch, GpuRunner, GpuTensor } from './runner.js';

/** Crop indices by size, in crop order: each group runs through one backbone. */
function groupsBySize(sizes: readonly number[]): Array<{ size: number; crops: number[] }> {
  const groups = new Map<number, number[]>();
  sizes.forEach((s, i) => groups.set(s, [...(groups.get(s) ?? []), i]));
  return [...groups].map(([size, crops]) => ({ size, crops }));
}

/** The GradientProgram of SwavModel.step on the WebGPU engine (a GradientProgramFactory). */
export function swavGradientProgram(runner: GpuRunner, spec: GradientProgramSpec): SwavGradientProgram {
  return new SwavGradientProgram(runner, spec);
}

export class SwavGradientProgram implements GradientProgram {
  private backbones: Backbone[] = [];
  private readonly own: GpuTensor[] = [];
  private queued: { entries: readonly GpuTensor[]; dispatches: Dispatch[] } | null = null;
  private readonly groups: Array<{ size: number; crops: number[] }>;

  constructor(
    private readonly runner: GpuRunner,
    private readonly spec: GradientProgramSpec,
  ) {
    this.groups = groupsBySize(spec.cropSizes);
  }

  get bytes(): number {
    return [...this.backbones.map((b) => b.bytes), ...this.own.map((t) => t.buffer.size)].reduce((a, b) => a + b, 0);
  }

  dispatches(io: StepBuffers): Dispatch[] {
    const { config, rows: B, precision, layout } = this.spec;
    const w: BackboneWeights = { ...layout, weights: io.weights, grads: io.grads, running: io.running };
    if (io.weights16) w.weights16 = io.weights16;
    const regnet = regnetSpec(config.model);
    const shapes = this.groups.map((g) => ({ batch: g.crops.length * B, size: g.size }));
    const recompute = recomputesOnGpu(config);
    let scratch: ActivationScratch | undefined;
    if (recompute) {
      const needs = shapes.map((o) => activationSlotNeeds(regnet, o));
      scratch = allocateActivationScratch(this.runner, precision === 'mixed' ? 'f16' : 'f32', needs);
      this.own.push(...scratch.slots);
    }
    this.backbones = shapes.map((o, i) =>
      buildBackbone(
        this.runner,
        regnet,
        { ...o, precision, gradients: i === 0 ? 'overwrite' : 'accumulate', recompute, ...(scratch && { scratch }) },
        w,
      ),
    );
    const F = this.backbones[0]!.features.shape[1]!;
    const V = this.spec.cropSizes.length;
    const s: SwavShape = { crops: V, batch: B, features: F, ...config.swav };
    const t = createSwavTensors(this.runner, s, config.swav);
    this.own.push(...swavTensorList(t).filter((x) => x !== t.loss));
    this.runner.release(t.loss);
    const swav = { ...t, loss: io.loss };
    const features = this.tensor([V * B, F]);
    const dfeatures = this.tensor([V * B, F]);
    const view = (buf: GpuTensor, name: string) => this.view(buf, layout.params, name);
    const weight = (name: string) => view(io.weights16 ?? io.weights, name);
    const mean = layout.stats.params.find((p) => p.name === 'swav.proj1.bn.mean')!;
    const head = {
      w1: weight('swav.proj1.w'),
      b1: view(io.weights, 'swav.proj1.b'),
      gamma: view(io.weights, 'swav.proj1.bn.gamma'),
      beta: view(io.weights, 'swav.proj1.bn.beta'),
      running: this.runner.view(io.running, mean.offset, [2, mean.size]),
      w2: weight('swav.proj2.w'),
      b2: view(io.weights, 'swav.proj2.b'),
      prototypes: weight(PROTOTYPES),
    };
    const grads = {
      dw1: view(io.grads, 'swav.proj1.w'),
      db1: view(io.grads, 'swav.proj1.b'),
      dgamma: view(io.grads, 'swav.proj1.bn.gamma'),
      dbeta: view(io.grads, 'swav.proj1.bn.beta'),
      dw2: view(io.grads, 'swav.proj2.w'),
      db2: view(io.grads, 'swav.proj2.b'),
      dprototypes: view(io.grads, PROTOTYPES),
    };
    const [D, K] = [config.swav.dim, config.swav.prototypes];
    const normalise: Dispatch = {
      kernel: normalisePrototypesKernel(D, K, io.weights16 ? 'f16' : undefined),
      buffers: [view(io.weights, PROTOTYPES), ...(io.weights16 ? [view(io.weights16, PROTOTYPES)] : [])],
    };
    // Crop v is rows j*B.. of its group's backbone (j: its place in the group), rows v*B.. of the SwAV part.
    const moves = this.groups.flatMap((g, i) => g.crops.map((v, j) => ({ backbone: this.backbones[i]!, v, j })));
    const rowsF = B * F;
    const queue =
      config.queue.length > 0
        ? this.createQueue({ batch: B, length: config.queue.length, dim: D, prototypes: K })
        : null;
    const step = (withQueue: boolean): Dispatch[] => [
      normalise,
      ...this.backbones.flatMap((b) => b.forward),
      ...moves.map((m) => ({
        kernel: copyKernel(rowsF, m.j * rowsF, m.v * rowsF),
        buffers: [m.backbone.features, features],
      })),
      ...swavForward(s, config.swav, features, head, swav, withQueue && queue ? queue : undefined),
      ...swavBackward(s, config.swav, features, head, swav, grads, dfeatures, io.lossScale),
      ...moves.map((m) => ({
        kernel: copyKernel(rowsF, m.v * rowsF, m.j * rowsF),
        buffers: [dfeatures, m.backbone.featuresGrad],
      })),
      ...this.backbones.flatMap((b) => b.backward),
      ...(queue ? pushQueue(queue.shape, config.swav.cropsForAssign, t.head.z, queue.buffers) : []),
    ];
    if (queue) this.queued = { entries: queue.buffers.entries, dispatches: step(true) };
    return step(false);
  }

  queue(): { entries: readonly GpuTensor[]; dispatches: Dispatch[] } {
    if (!this.queued) throw new RangeError('SwAV program: no queue (config.queue.length 0, or dispatches() not run)');
    return this.queued;
  }

  private createQueue(shape: SwavQueueShape): { shape: SwavQueueShape; buffers: SwavQueue } {
    const buffers = createSwavQueue(this.runner, shape, this.spec.config.swav.cropsForAssign.length);
    this.own.push(...swavQueueTensors(buffers));
    return { shape, buffers };
  }

  /** Where the stepper writes crop v: its rows of its backbone's input. */
  inputs(): GpuTensor[] {
    const B = this.spec.rows;
    return this.spec.cropSizes.map((size, v) => {
      const g = this.groups.findIndex((q) => q.crops.includes(v));
      const j = this.groups[g]!.crops.indexOf(v);
      const input = this.backbones[g]!.input;
      const per = B * size * size * 3;
      return { buffer: input.buffer, shape: [B, size, size, 3], dtype: 'f32', size: per, offset: j * per * 4 };
    });
  }

  release(): void {
    for (const b of this.backbones) b.release();
    this.runner.release(...this.own);
  }

  private tensor(shape: number[]): GpuTensor {
    const t = this.runner.tensor(shape);
    this.own.push(t);
    return t;
  }

  private view(buf: GpuTensor, layout: ParamLayout, name: string): GpuTensor {
    const p = layout.params.find((q) => q.name === name);
    if (!p) throw new RangeError(`SwAV program: parameter ${name} is not in the layout`);
    return this.runner.view(buf, p.offset, p.shape);
  }
}
