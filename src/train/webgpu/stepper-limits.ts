/**
 * What the WebGPU stepper refuses, and how it explains a device that could not make its buffers: a model whose
 * weights exceed one binding (before anything is built), a SwAV queue longer than the engine's Sinkhorn takes,
 * and an allocation the device refused during start (as a WebGpuMemoryError naming what was asked for).
 */
import { ConfigError } from '../../errors.js';
import { FLAG_NAMES, type OptionNames } from '../../options/declare.js';
import type { TrainConfig } from '../config.js';
import { estimateMemory } from '../memory.js';
import type { SwavModel } from '../model.js';
import type { GpuDeviceInfo } from './device.js';
import { WebGpuKernelError, WebGpuTrainingError } from './errors.js';
import { SINKHORN_MAX_ROWS } from './kernels/sinkhorn.js';
import { GpuAllocationError, type GpuRunner } from './runner.js';

/** The device could not make the buffers a run needs (out of memory, or one above the device's limits). */
export class WebGpuMemoryError extends WebGpuTrainingError {
  override readonly code = 'WS_ERR_WEBGPU_MEMORY';
  constructor(
    message: string,
    /** Bytes of buffers the stepper asked the device for. */
    readonly bytes: number,
    /** Whether a smaller batch or recomputation could help (not when the weights alone do not fit). */
    readonly batchDependent = true,
  ) {
    super(message);
  }
}

/** A queue the engine's Sinkhorn cannot take with the batch (a workgroup per row): a ConfigError naming the most. */
export function refuseLongQueue(config: TrainConfig, names: OptionNames = FLAG_NAMES): void {
  const [length, batch] = [config.queue.length, config.batchSize];
  if (length === 0 || length + batch <= SINKHORN_MAX_ROWS) return;
  const most = Math.floor((SINKHORN_MAX_ROWS - batch) / batch) * batch;
  throw new ConfigError(
    `the WebGPU engine's Sinkhorn takes at most ${SINKHORN_MAX_ROWS} rows, queue and batch together; ${names.set('queueLength', length)} with batch ${batch} is ${length + batch}: use ${names.set('queueLength', most)} or less`,
  );
}

/**
 * Whether start failed for memory: a buffer the device refused (out of memory, above maxBufferSize, or one
 * too large to bind, which record() meets), as a WebGpuMemoryError naming what was asked for; else null.
 */
export async function memoryFailure(
  runner: GpuRunner,
  config: TrainConfig,
  err?: unknown,
  names: OptionNames = FLAG_NAMES,
): Promise<WebGpuMemoryError | null> {
  const report = await runner.allocationReport();
  if (!report) return null;
  const { limits } = runner.device;
  const perBuffer = `at most ${sizeText(limits.maxBufferSize)} per buffer, ${sizeText(limits.maxStorageBufferBindingSize)} per binding`;
  let why: string;
  if (report.error?.kind === 'out-of-memory') why = `the device ran out of memory (${brief(report.error.message)})`;
  else if (report.error) why = `the device refused a buffer, ${perBuffer} (${brief(report.error.message)})`;
  else if (err instanceof GpuAllocationError) why = brief(err.message);
  else if (err instanceof WebGpuKernelError && report.largest > limits.maxStorageBufferBindingSize)
    why = `a buffer of ${sizeText(report.largest)} is too large to bind, ${perBuffer} (${brief(err.message)})`;
  else return null;
  const recompute = config.recompute === 'on' ? '' : `, or ${names.set('recompute', 'on')}`;
  const queue = config.queue.length > 0 ? `, a shorter ${names.of('queueLength')}` : '';
  return new WebGpuMemoryError(
    `the WebGPU engine could not allocate its buffers for model ${config.model}, batch ${config.batchSize}, crops ${config.crops}: ` +
      `${why}; it had asked for ${sizeText(report.bytes)} (${report.bytes} bytes, the largest buffer ${sizeText(report.largest)}); ` +
      `use a smaller ${names.of('batch')}${queue}${recompute}`,
    report.bytes,
  );
}

/** The first line of a device's message, at most 300 characters: Dawn's can list every kernel of the step. */
function brief(message: string): string {
  const line = message.split('\n')[0]!.trim();
  return line.length > 300 ? `${line.slice(0, 300)}...` : line;
}

/**
 * Refuses, before anything is built, a model whose f32 parameters (one buffer, bound whole by the LARS update)
 * exceed what the device makes or binds: no batch or recomputation changes that, and building the step first
 * would take minutes for a large model (SEER's RegNetY-256GF: 4.8 GiB).
 */
export function refuseOversizedWeights(model: SwavModel, limits: GpuDeviceInfo['limits']): void {
  refuseOversizedModel(
    model.config.model,
    model.ps.count(),
    Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize),
  );
}

/**
 * The same refusal from the configuration alone (its trainable parameters, as the memory estimate counts
 * them, which is what `model.ps.count()` gives), for trainOnStore to make before the tfjs model is built: a
 * large RegNet takes minutes to build on the cpu backend that holds a webgpu run's weights.
 */
export function refuseOversizedConfig(config: TrainConfig, bindingLimit: number): void {
  refuseOversizedModel(config.model, estimateMemory(config).optimiser / 4, bindingLimit);
}

function refuseOversizedModel(name: string, params: number, limit: number): void {
  const bytes = 4 * params;
  if (bytes > limit)
    throw new WebGpuMemoryError(
      `model ${name} has ${(params / 1e6).toFixed(1)} M parameters: their f32 buffer of ${sizeText(bytes)} is above ` +
        `the device's ${sizeText(limit)} per buffer binding, whatever the batch; train a smaller model, or on the wasm or tensorflow backend`,
      bytes,
      false,
    );
}

/** Bytes as a limit or a buffer reads best: MiB below 1 GiB (WebGPU's default binding limit is 128 MiB), else GiB. */
export function sizeText(bytes: number): string {
  return bytes < 2 ** 30 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}
