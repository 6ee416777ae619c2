/**
 * The seam between the WebGPU stepper (stepper.ts: state, optimiser, loss scaling, submissions) and the engine
 * that computes gradients (engine/: the RegNet backbone; kernels/head.ts, sinkhorn.ts, swav-loss.ts: SwAV). A
 * GradientProgram is built once per shape and contributes the first dispatches of every step's one submission.
 */
import type { TrainConfig } from '../config.js';
import type { ParamLayout } from './kernels/lars.js';
import type { Precision } from './precision.js';
import type { Dispatch, GpuRunner, GpuTensor } from './runner.js';

/** What a gradient program is built for: shapes are fixed, so its dispatches are recorded once. */
export interface GradientProgramSpec {
  /** The run's config; its `recompute` is resolved by `recomputesOnGpu`. */
  config: TrainConfig;
  /** Images per step (every crop has this many). */
  rows: number;
  /** Each crop's side, in the config's crop order. */
  cropSizes: readonly number[];
  precision: Precision;
  /** Where each parameter (and its gradient) and each running statistic sits in the flat buffers. */
  layout: { params: ParamLayout; stats: ParamLayout };
}

/** The buffers a step's dispatches work on. */
export interface StepBuffers {
  /** Flat f32 master weights (layout.params). */
  weights: GpuTensor;
  /** Their f16 copy (mixed precision only). */
  weights16?: GpuTensor;
  /** Flat f32 gradients (layout.params). */
  grads: GpuTensor;
  /** BatchNorm running statistics, f32 (layout.stats). */
  running: GpuTensor;
  /** One per crop, f32 NHWC [rows, size, size, 3], written before each submission (empty with `inputs`). */
  crops: readonly GpuTensor[];
  /** Loss-scale state (LOSS_SCALE); the scale at LOSS_SCALE.SCALE is 1 in f32 precision. */
  lossScale: GpuTensor;
  /** [1] f32: the step's loss, unscaled. */
  loss: GpuTensor;
}

/**
 * A step's forward and backward pass. Its dispatches, run in order inside the step's one submission, must
 *   - normalise the prototype columns in `weights` (and `weights16`) first, as SwavModel.step does;
 *   - overwrite every element of every parameter's gradient in `grads` with d(loss * scale)/dw, scale being
 *     lossScale[LOSS_SCALE.SCALE] (any stale element would be applied by the update);
 *   - update `running` as the tfjs forward does (each crop resolution's statistics in turn);
 *   - write the unscaled loss to `loss`.
 * It reads nothing back and submits nothing itself.
 */
export interface GradientProgram {
  dispatches(io: StepBuffers): Dispatch[];
  /** Bytes of GPU memory the program holds (activations, scratch), for the memory line. @default unknown */
  readonly bytes?: number;
  /**
   * Where the stepper writes each crop (f32 NHWC [rows, size, size, 3]; views at any 4-byte offset), when the
   * program reads its input from buffers of its own; called after `dispatches`. Without it the stepper
   * allocates `StepBuffers.crops`.
   */
  inputs?(): GpuTensor[];
  /**
   * SwAV's queue (config.queue.length > 0), set up by `dispatches`: each assignment crop's entries ([L, D]
   * f32, newest first, as SwavModel.queue), which every step pushes, and the step's dispatches for the steps
   * it joins the assignment (the same buffers as `dispatches`' list). Absent: the program has no queue.
   */
  queue?(): { entries: readonly GpuTensor[]; dispatches: Dispatch[] };
  /** Frees the program's own buffers (activations, scratch). */
  release(): void;
}

export type GradientProgramFactory = (
  runner: GpuRunner,
  spec: GradientProgramSpec,
) => GradientProgram | Promise<GradientProgram>;

/**
 * Whether a gradient program recomputes activations (engine/recompute.ts) for `config.recompute`: 'on' yes,
 * 'off' no, and 'auto' (the default) no. The tfjs backends decide 'auto' from a memory budget they can read
 * (memory.ts); WebGPU reports no device memory and no peak, only per-buffer limits, so there is nothing to
 * compare the estimate with. Off is the cheaper side to try first: recomputation costs one more pass over
 * every activation per step. WebGpuStepper.start builds an 'auto' step again with 'on' when the device could
 * not make its buffers, which cuts the program's activation bytes (the memory line shows them) by about half.
 */
export function recomputesOnGpu(config: Pick<TrainConfig, 'recompute'>): boolean {
  return config.recompute === 'on';
}
