/**
 * Where bench/train.ts's `webgpu` rows get the WebGPU training engine (src/train/webgpu/engine/). Until the
 * engine exists `loadEngine()` answers null and the rows say so: no figure is made without it.
 *
 * To plug the engine in, make `loadEngine()` return its factory through a STATIC import (esbuild then bundles
 * the engine into .gpurun/train.mjs for the GPU machine; a computed import path would be left out of the bundle):
 *
 *   import { openEngineStepper } from '../src/train/webgpu/engine/index.js';
 *   export async function loadEngine(): Promise<OpenEngineStepper | null> { return openEngineStepper; }
 */
import type { CropTensor } from '../src/augment/loader.js';
import type { GpuDeviceInfo } from '../src/train/webgpu/device.js';

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

/** One SwAV training step at a time on the GPU, as `train --backend webgpu` will run it. */
export interface EngineStepper {
  /** The device the engine opened (src/train/webgpu/device.ts), printed with the row. */
  readonly device: GpuDeviceInfo;
  /** The precision it runs: `mixed` may fall back to `f32` where the device grants no `shader-f16`. */
  readonly precision: EnginePrecision;
  /**
   * Uploads the batch (one Float32 NHWC tensor per crop, in `crops` order) and submits one whole step: forward,
   * loss, backward and the optimiser update, with no read-back. Resolves once submitted, not once finished.
   */
  step(crops: CropTensor[], step: number): Promise<void>;
  /** Resolves when every submitted step has finished on the GPU. */
  sync(): Promise<void>;
  /** The last finished step's loss (reads back: called outside the timed steps). */
  loss(): Promise<number>;
  /** The most GPU memory the engine held at once, in bytes, where it counts it. */
  peakBytes?(): number;
  /** Frees the engine's buffers and its device. */
  close(): void;
}

export type OpenEngineStepper = (options: EngineStepperOptions) => Promise<EngineStepper>;

/** Why the rows are empty while `loadEngine()` answers null. */
export const ENGINE_MISSING = 'the WebGPU engine (src/train/webgpu/engine/) is not plugged into bench/webgpu-engine.ts';

/** The engine's stepper factory, or null while there is no engine. */
export async function loadEngine(): Promise<OpenEngineStepper | null> {
  return null;
}
