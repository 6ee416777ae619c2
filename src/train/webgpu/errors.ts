/**
 * Typed errors of the WebGPU engine. They extend the project's `WildstreamError` (stable `code`, one-line
 * message), so the CLI prints and exits on them like on any other run-stopping fault.
 */
import { WildstreamError } from '../../errors.js';

/** Why no WebGPU device could be opened: the `webgpu` package is missing, or Dawn found no adapter / device. */
export type WebGpuUnavailableReason = 'not-installed' | 'no-adapter' | 'no-device';

/** WebGPU cannot be used on this machine; `reason` says which step failed, the message says what to do. */
export class WebGpuUnavailableError extends WildstreamError {
  override readonly code = 'WS_ERR_WEBGPU_UNAVAILABLE';
  constructor(
    readonly reason: WebGpuUnavailableReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A kernel the engine generated was refused by the WebGPU implementation (WGSL or pipeline validation). */
export class WebGpuKernelError extends WildstreamError {
  override readonly code = 'WS_ERR_WEBGPU_KERNEL';
}

/** A training step on the device failed: a batch of the wrong shape, a lost device, a closed stepper. */
export class WebGpuTrainingError extends WildstreamError {
  override readonly code: string = 'WS_ERR_WEBGPU_TRAINING';
}
