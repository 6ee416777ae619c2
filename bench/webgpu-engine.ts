/**
 * Where bench/train.ts's `webgpu` rows get the WebGPU training engine: `WebGpuStepper` running the SwAV
 * gradient program (src/train/webgpu/), as `train --backend webgpu` does, on a `SwavModel` whose tfjs side
 * (weights, optimiser slots, checkpoint format) lives on the tfjs cpu backend. Imports are static so that
 * esbuild bundles the engine into .gpurun/train.mjs.
 */
import type { CropTensor } from '../src/augment/loader.js';
import { startBackend } from '../src/train/backend.js';
import { defaultTrainConfig } from '../src/train/config.js';
import { SwavModel } from '../src/train/model.js';
import { WebGpuStepper } from '../src/train/webgpu/stepper.js';
import { swavGradientProgram } from '../src/train/webgpu/swav-program.js';

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
  /** The precision it runs (`mixed` where the device grants no `shader-f16` is refused: that row says so). */
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
export const ENGINE_MISSING = 'the WebGPU engine could not be loaded';

/** The engine's stepper factory (SwAV's defaults for the head: 3000 prototypes, no queue). */
export async function loadEngine(): Promise<OpenEngineStepper | null> {
  await startBackend('cpu'); // the tfjs side only holds the weights; the steps run on the GPU
  return (o) =>
    WebGpuStepper.start(new SwavModel(defaultTrainConfig({ model: o.model, batchSize: o.batch, crops: o.crops })), {
      program: swavGradientProgram,
      precision: o.precision,
    });
}
