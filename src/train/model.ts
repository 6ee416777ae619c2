/**
 * The trained network (RegNet backbone + SwAV head) and one optimisation step, as in facebookresearch/swav
 * `main_swav.py`: normalise the prototypes, run the backbone once per crop resolution (crops of one size are
 * concatenated along the batch, so BatchNorm sees them together), the head once on all features, the swapped
 * loss with optional queue, LARS, then the BatchNorm running statistics and the queue are updated.
 */
import { totalmem } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { cropSizes } from '../crops.js';
import type { OptionNames } from '../options/declare.js';
import type { TrainConfig } from './config.js';
import { planMemory, type MemoryPlan } from './memory.js';
import { Lars, learningRate } from './optim.js';
import { ParamSet } from './params.js';
import { regnetFeatures } from './regnet.js';
import { regnetSpec, type RegNetSpec } from './regnet-spec.js';
import { normalisePrototypes, PROTOTYPES, swavHead, swavLoss } from './swav.js';
import { forwardInParts, type StepSharing } from './parallel/sharing.js';

export interface StepResult {
  loss: number;
  lr: number;
}

export interface StepOptions {
  /**
   * Ghost batches: rows of each consecutive slice of the batch that runs the forward pass alone (BatchNorm
   * normalises each slice with its own statistics; running statistics average over slices, weighted by
   * rows). The single-thread equivalent of a data-parallel step with one slice per worker.
   * @default the whole batch as one slice
   */
  microBatches?: number[];
  /** Set by a data-parallel worker (src/train/parallel/): how its step sees the whole batch. */
  sharing?: StepSharing;
}

export class SwavModel {
  readonly ps: ParamSet;
  readonly spec: RegNetSpec;
  readonly lars: Lars;
  /** Per assignment crop: the last `queue.length` embeddings, newest first. */
  queue: tf.Tensor2D[] = [];
  /** Embeddings pushed into the queue so far (it joins the assignment once full). */
  queueFilled = 0;
  private readonly sizes: number[];
  /** The memory estimate for this backend, and whether stages recompute their activations. */
  readonly memory: MemoryPlan;

  /**
   * `threads`: data-parallel training threads sharing each batch; the memory plan is one thread's share.
   * `backend`: the backend that runs the steps, when not tfjs's own (`webgpu`: the WebGPU engine steps on the
   * device and this model only holds the weights on tfjs's cpu backend, so no tfjs plan refuses the batch or
   * turns recomputation on; the engine checks its own allocation; `none`: a model that only gives the tensors'
   * shapes, no step runs on it). @default tfjs's current backend
   * `names`: how a refused plan names the options (a pipeline's train keys). @default the command's flags
   */
  constructor(
    readonly config: TrainConfig,
    options: { threads?: number; backend?: string; names?: OptionNames } = {},
  ) {
    this.memory = planMemory(
      { ...config, threads: options.threads },
      options.backend ?? tf.getBackend(),
      totalmem(),
      options.names,
    );
    this.ps = new ParamSet(config.seed);
    this.spec = regnetSpec(config.model);
    this.lars = new Lars(config.lars);
    this.sizes = cropSizes(config.crops);
    // Create every variable (and the queue) with one tiny forward pass: variableGrads needs them to exist.
    tf.tidy(() =>
      this.forward(
        this.sizes.map((s) => tf.zeros([2, s, s, 3])),
        false,
      ),
    );
    if (config.queue.length > 0) {
      this.queue = config.swav.cropsForAssign.map(() => tf.keep(tf.zeros([config.queue.length, config.swav.dim])));
    }
  }

  /** Embeddings and prototype scores of every crop, in crop order (each [B, dim] and [B, K]). */
  forward(crops: tf.Tensor4D[], training: boolean): { z: tf.Tensor2D[]; scores: tf.Tensor2D[] } {
    const bySize = new Map<number, number[]>();
    crops.forEach((c, i) => bySize.set(c.shape[1], [...(bySize.get(c.shape[1]) ?? []), i]));
    const features: tf.Tensor2D[] = new Array(crops.length);
    for (const idx of bySize.values()) {
      const f = regnetFeatures(
        this.ps,
        this.spec,
        tf.concat(
          idx.map((i) => crops[i]!),
          0,
        ),
        training,
        this.memory.recompute,
      );
      // tfjs's SplitV gradient fails for a split into one part ("Pass at least one tensor to concat"), which
      // a resolution with a single crop (crops 1x32,1x16) asked for: such a group's features are used whole.
      if (idx.length === 1) features[idx[0]!] = f;
      else tf.split(f, idx.length, 0).forEach((part, j) => (features[idx[j]!] = part as tf.Tensor2D));
    }
    const { z, scores } = swavHead(this.ps, this.config.swav, tf.concat(features, 0), training);
    const n = crops.length;
    return { z: tf.split(z, n, 0) as tf.Tensor2D[], scores: tf.split(scores, n, 0) as tf.Tensor2D[] };
  }

  /** One SGD/LARS step on a batch of crops (NHWC, one tensor per crop). */
  step(crops: tf.Tensor4D[], step: number, options: StepOptions = {}): StepResult {
    const { config, ps } = this;
    const lr = learningRate(step, { ...config.schedule, totalSteps: config.steps });
    normalisePrototypes(ps);
    ps.pendingUpdates = [];
    let embeddings: tf.Tensor2D[] = [];
    const { value, grads: raw } = tf.variableGrads(() => {
      const out = forwardInParts((c) => this.forward(c, true), ps, crops, options.microBatches);
      embeddings = config.swav.cropsForAssign.map((i) => tf.keep(out.z[i]!));
      return swavLoss(out.scores, config.swav, this.queuedScores(step), options.sharing?.codes);
    }, [...ps.trainable().values()]);
    const grads = ps.byName(raw);
    options.sharing?.reduce(grads, ps);
    if (step < config.swav.freezePrototypesSteps) {
      grads[PROTOTYPES]?.dispose();
      delete grads[PROTOTYPES];
    }
    this.lars.apply(ps.trainable(), grads, lr);
    for (const [v, next] of ps.pendingUpdates) {
      v.assign(next);
      next.dispose();
    }
    ps.pendingUpdates = null;
    if (options.sharing && this.queue.length > 0) embeddings = options.sharing.gather(embeddings);
    this.pushQueue(embeddings);
    const loss = value.dataSync()[0]!;
    tf.dispose([value, ...Object.values(grads), ...embeddings]);
    return { loss, lr };
  }

  /** Scores of the queued embeddings against the current prototypes, once the queue is in use. */
  private queuedScores(step: number): tf.Tensor2D[] | undefined {
    const { length, startStep } = this.config.queue;
    if (length === 0 || step < startStep || this.queueFilled < length) return undefined;
    const prototypes = this.ps.vars.get(PROTOTYPES)! as tf.Tensor2D;
    return this.queue.map((q) => tf.matMul(q, prototypes));
  }

  private pushQueue(embeddings: tf.Tensor2D[]): void {
    if (this.queue.length === 0) return;
    this.queue = this.queue.map((q, i) => {
      const next = tf.tidy(() =>
        tf.concat([embeddings[i]!, tf.slice(q, [0, 0], [q.shape[0] - embeddings[i]!.shape[0], -1])], 0),
      );
      q.dispose();
      return next as tf.Tensor2D;
    });
    this.queueFilled = Math.min(this.config.queue.length, this.queueFilled + (embeddings[0]?.shape[0] ?? 0));
  }

  /** Backbone features in evaluation mode (running BatchNorm statistics). */
  features(images: tf.Tensor4D): tf.Tensor2D {
    return regnetFeatures(this.ps, this.spec, images, false);
  }

  dispose(): void {
    this.ps.dispose();
    for (const v of this.lars.slots.values()) v.dispose();
    this.lars.slots.clear();
    tf.dispose(this.queue);
    this.queue = [];
  }
}
