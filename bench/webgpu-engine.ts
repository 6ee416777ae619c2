/**
 * Where bench/train.ts's `webgpu` rows get the WebGPU training engine. Until it exists `loadEngine()` answers
 * null and the rows say so: no figure is made without it.
 *
 * `EngineStepper` is the part of src/train/webgpu/stepper.ts' `WebGpuStepper` the bench uses (that class
 * satisfies it: tsc checks below). To plug the engine in, make `loadEngine()` return a factory through STATIC
 * imports (esbuild then bundles the engine into .gpurun/train.mjs; a computed import path would be left out), e.g.
 *
 *   import { WebGpuStepper } from '../src/train/webgpu/stepper.js';
 *   import { gradientProgram } from '../src/train/webgpu/engine/index.js'; // the GradientProgramFactory
 *   import { defaultTrainConfig } from '../src/train/config.js';
 *   import { SwavModel } from '../src/train/model.js';
 *   export async function loadEngine(): Promise<OpenEngineStepper | null> {
 *     return (o) => WebGpuStepper.start(
 *       new SwavModel(defaultTrainConfig({ model: o.model, batchSize: o.batch, crops: o.crops })),
 *       { program: gradientProgram, precision: o.precision });
 *   }
 */
import type { CropTensor } from '../src/augment/loader.js';
import type { WebGpuStepper } from '../src/train/webgpu/stepper.js';

export type EnginePrecision = 'f32' | 'mixed';

export interface EngineStepperOptions {
  /** A model name `regnetSpec` accepts, e.g. `regnety_400mf`. */
  model: string;
  /** Images per step (each with every crop). */
  batch: number;
  /** Crops as `--crops` spells them, e.g. `2x224,6x96`. */
  crops: string;
  /** `mixed`: f16 activations and weight copies, f32 sums, master weights and loss scaling. */
  precision: EnginePrecision;
}

/** One SwAV training step at a time on the GPU, as `train --backend webgpu` runs it. */
export interface EngineStepper {
  /** The line `train` prints: the device, what it offers, and the precision used. */
  readonly description: string;
  /** The precision it runs: `mixed` falls back to `f32` where the device grants no `shader-f16`. */
  readonly precision: EnginePrecision;
  /**
   * Uploads the batch (one Float32 NHWC array per crop, in `crops` order) and submits one whole step (forward,
   * loss, backward, optimiser update) as one submission. With `readLoss` it then waits for every submitted step
   * and answers their mean loss; without, it answers once the step is submitted (`loss` NaN).
   */
  step(crops: CropTensor[], step: number, options: { readLoss: boolean }): Promise<{ loss: number }>;
  /** Frees the engine's buffers and the device it opened. */
  close(): Promise<void>;
}

// The engine's stepper must keep fitting what this bench uses (tsc fails here otherwise).
const _stepperFits: WebGpuStepper extends EngineStepper ? true : never = true;

export type OpenEngineStepper = (options: EngineStepperOptions) => Promise<EngineStepper>;

/** Why the rows are empty while `loadEngine()` answers null. */
export const ENGINE_MISSING = 'the WebGPU engine (src/train/webgpu/engine/) is not plugged into bench/webgpu-engine.ts';

/** The engine's stepper factory, or null while there is no engine. */
export async function loadEngine(): Promise<OpenEngineStepper | null> {
  return null;
}
