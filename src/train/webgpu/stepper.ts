/**
 * Training steps on a WebGPU device, plugged in where the trainer calls `model.step(crops, step)`, as the
 * data-parallel ParallelStepper is: `await stepper.step(crops, step)`, `await stepper.sync()` before the model
 * is checkpointed or evaluated, `await stepper.close()` at the end. The SwavModel (tfjs, on the cpu backend)
 * keeps owning the state and its checkpoint format; `start` copies weights, LARS momentum and BatchNorm
 * running statistics into flat GPU buffers (state.ts), `sync` copies them back.
 *
 * A step is recorded once and submitted as one command buffer, with no read-back inside it:
 *   the GradientProgram   forward and backward of RegNet + SwAV: gradients of loss * scale, the loss, the
 *                         running statistics (engine/, kernels/head.ts, sinkhorn.ts, swav-loss.ts)
 *   LARS norms            kernels/lars.ts
 *   loss-scale check      mixed precision only (kernels/loss-scale.ts): an inf/NaN gradient skips the update
 *                         and halves the scale, a clean run doubles it
 *   LARS update           f32 masters and momentum, and the f16 weight copy in mixed precision
 *   loss sum              the loss added to a sum the trainer reads when it logs (kernels/loss-sum.ts)
 * Between submissions only queue writes happen: the crops, the learning rate of the step (optim.ts' schedule)
 * into LARS' `hyper` buffer, and, when the prototypes freeze or thaw, the LARS table (a frozen parameter has
 * size 0 there, so neither the update nor its momentum touch it, as SwavModel.step drops its gradient).
 *
 * At most MAX_STEPS_IN_FLIGHT steps are submitted and unfinished: step n first waits for step n - 2 to finish,
 * then uploads its crops and submits, so the CPU uploads step n + 1 while the device computes step n, and the
 * queue's staged uploads (a step's crops: ~480 MB at batch 256, crops 2x224 + 6x96) stay bounded however fast
 * the loader is. The time spent waiting is each step's `gpuWaitMs`. (A ring of mapped MAP_WRITE upload buffers,
 * filled straight from the loader's shared arrays and copied in the step's command buffer, works on lavapipe
 * but was slower there: bench/webgpu-upload.ts.)
 *
 * Allocation is checked: start() runs inside out-of-memory and validation error scopes, and a buffer the
 * device cannot make (out of memory, or above maxBufferSize / maxStorageBufferBindingSize) is a
 * WebGpuMemoryError naming the bytes asked for, the model, the batch and the crops.
 */
import * as tf from '@tensorflow/tfjs-core';
import { checkCrop, checkCropDtype, type ByteCrop, type CropDtype, type CropTensor } from '../../crop-tensor.js';
import { ByteCropInputs } from './byte-crops.js';
import { cropCount, cropSizes } from '../../crops.js';
import { ConfigError } from '../../errors.js';
import { FLAG_NAMES, type OptionNames } from '../../options/declare.js';
import type { TrainConfig } from '../config.js';
import type { StepResult, SwavModel } from '../model.js';
import { learningRate } from '../optim.js';
import { PROTOTYPES } from '../swav.js';
import { describeDevice, openDevice, type GpuContext } from './device.js';
import { LARS_HYPER, larsStep, larsTable, type ParamLayout } from './kernels/lars.js';
import {
  initialLossScaleState,
  LOSS_SCALE,
  lossScaleCheck,
  type LossScaleOptions,
  type LossScaleState,
} from './kernels/loss-scale.js';
import { lossSum } from './kernels/loss-sum.js';
import { describePrecision, resolvePrecision, type Precision } from './precision.js';
import {
  recomputesOnGpu,
  type GradientProgram,
  type GradientProgramFactory,
  type GradientProgramSpec,
  type StepBuffers,
} from './program.js';
import { WebGpuTrainingError } from './errors.js';
import {
  memoryFailure,
  refuseLongQueue,
  refuseOversizedWeights,
  sizeText,
  WebGpuMemoryError,
} from './stepper-limits.js';
import { GpuRunner, type Dispatch, type GpuTensor, type Recording } from './runner.js';
import {
  allocateState,
  downloadState,
  importDownloaded,
  releaseState,
  stateTensors,
  uploadState,
  type GpuModelState,
} from './state.js';

export { WebGpuTrainingError } from './errors.js';
export { refuseOversizedConfig, WebGpuMemoryError } from './stepper-limits.js';
export type { GradientProgram, GradientProgramFactory, GradientProgramSpec, StepBuffers } from './program.js';

export interface WebGpuStepperOptions {
  /** Builds the step's forward and backward pass for the model's shapes. */
  program: GradientProgramFactory;
  /** @default mixed where the device offers shader-f16, else f32 */
  precision?: Precision;
  /** Where `precision` came from, for the device line: asked for, or kept from the checkpoint resumed. @default 'asked' */
  precisionFrom?: 'asked' | 'checkpoint';
  /** A device to run on, which stays the caller's to destroy. @default one opened by start and destroyed by close */
  device?: GpuContext;
  /**
   * Mixed precision: the first loss scale, the clean steps already counted toward its growth, and the steps
   * skipped and growths so far (a resumed run's, from its checkpoint), and how it grows and shrinks.
   * @default scale 2^16, the counts 0, loss-scale.ts' growth settings
   */
  lossScale?: LossScaleOptions & LossScaleStart;
  /** How errors name the options a person can change (a pipeline's train keys). @default the command's flags */
  names?: OptionNames;
  /**
   * What the batches' crops will be. With 'uint8' the staging buffers for 8-bit crops are made at start, inside
   * its memory check and counted in memoryLine (a quarter of the f32 crops: 114 MiB at batch 256, 2x224 + 6x96);
   * otherwise they are made at the first batch of bytes, if one comes. Either kind of batch works either way.
   * @default 'float32'
   */
  cropDtype?: CropDtype;
  /**
   * Stops a start under way: checked between its phases and its pipeline compiles, it then frees what was made
   * and rejects with the signal's reason (a large model compiles hundreds of pipelines).
   */
  signal?: AbortSignal;
}

/** Where a loss scale starts (a resumed run: its checkpoint's LossScaleState). */
export interface LossScaleStart {
  initial?: number;
  cleanRun?: number;
  skipped?: number;
  grown?: number;
}

/**
 * Steps submitted to the device and not yet finished, at most: two is a double buffer (the CPU uploads one
 * step while the device runs the other); each holds its crops in the queue's staging memory until it ends.
 */
export const MAX_STEPS_IN_FLIGHT = 2;

export interface StepOptions {
  /**
   * Read the loss back after this step (a wait for the device). Without it the step's loss stays on the GPU
   * and joins the mean the next reading step returns. @default true
   */
  readLoss?: boolean;
}

export interface LossScaleCounters {
  scale: number;
  /** Steps skipped for an inf/NaN gradient, and times the scale grew, over the run (a resume counts on). */
  skipped: number;
  grown: number;
}

export interface WebGpuStepResult extends StepResult {
  /**
   * Steps `loss` is the mean of: those since the previous reading step, this one included; 0 when the loss was
   * not read (`loss` is then NaN).
   */
  lossSteps: number;
  /** Mixed precision, on a reading step: the loss scale and its counters. */
  lossScale?: LossScaleCounters;
  /**
   * Milliseconds this call waited for the device: for an earlier step to finish (MAX_STEPS_IN_FLIGHT), and
   * on a reading step for the loss.
   */
  gpuWaitMs: number;
}

/** Crops per step the engine dispatches at most: kernels give each crop a workgroup along one dimension. */
export const MAX_CROPS_PER_STEP = 65535;

/** The stepper's own small buffers: the LARS table and scratch, the loss and its sum, the loss-scale state. */
interface TailBuffers {
  table: GpuTensor;
  norms: GpuTensor;
  hyper: GpuTensor;
  lossScale: GpuTensor;
  loss: GpuTensor;
  lossSum: GpuTensor;
}

/** What start makes for a stepper. */
interface StepperParts {
  state: GpuModelState;
  tail: TailBuffers;
  /** Where each crop is written: the program's inputs, or `ownCrops`. */
  crops: GpuTensor[];
  /** Crop buffers the stepper allocated (none when the program has inputs of its own). */
  ownCrops: GpuTensor[];
  program: GradientProgram;
  recording: Recording;
  /** SwAV's queue: its entries, and the step recorded for when it joins the assignment. */
  queue: { entries: readonly GpuTensor[]; recording: Recording } | null;
  tables: { open: Uint32Array; frozen: Uint32Array };
  /** Staging for 8-bit crops, when start was told the batches bring bytes. */
  byteInputs: ByteCropInputs | undefined;
}

export class WebGpuStepper {
  private closed = false;
  private failure: Error | null = null;
  /** Whether the LARS table on the GPU is the one with the prototypes frozen (null before the first step). */
  private frozen: boolean | null = null;
  /** Steps whose loss was summed on the GPU and not yet read. */
  private unread = 0;
  /** Embeddings pushed onto SwAV's queue so far, up to its length (SwavModel.queueFilled). */
  private queueFilled: number;
  /** Parameters that have (or had, in the model) a momentum slot: what sync writes back. */
  private readonly withSlot: Set<string>;
  /** Per crop: an ordinary buffer that crops in shared memory are copied through (see writeCrops). */
  private readonly staging: Float32Array[] = [];
  /** Where 8-bit crops are staged and the step recorded with their decode in front (see cropDtype). */
  private byteInputs: ByteCropInputs | undefined;
  /** How the program treats activations, for the memory line: `recompute on|off[, auto]` and why. */
  private recomputeLine = '';
  /** Per unfinished step, oldest first: settles when the device has finished it (or is lost). */
  private readonly inFlight: Array<Promise<unknown>> = [];

  private readonly state: GpuModelState;
  private readonly tail: TailBuffers;
  private readonly crops: GpuTensor[];
  private readonly ownCrops: GpuTensor[];
  private readonly program: GradientProgram;
  private readonly recording: Recording;
  private readonly queue: StepperParts['queue'];
  private readonly tables: { open: Uint32Array; frozen: Uint32Array };

  private constructor(
    readonly model: SwavModel,
    readonly runner: GpuRunner,
    readonly precision: Precision,
    /** The line `train` prints: the device, what it offers, and the precision used. */
    readonly description: string,
    private readonly ownsDevice: boolean,
    parts: StepperParts,
  ) {
    this.state = parts.state;
    this.tail = parts.tail;
    this.crops = parts.crops;
    this.ownCrops = parts.ownCrops;
    this.program = parts.program;
    this.recording = parts.recording;
    this.queue = parts.queue;
    this.queueFilled = model.queueFilled;
    this.tables = parts.tables;
    this.byteInputs = parts.byteInputs;
    this.withSlot = new Set(model.lars.slots.keys());
    // A lost device (driver reset, out of memory, destroyed elsewhere) fails every later call with its reason.
    void runner.device.lost.then((info) => {
      if (!this.closed)
        this.failure = new WebGpuTrainingError(`the WebGPU device was lost (${info.reason}): ${info.message}`);
    });
  }

  /** Copies `model`'s state to the device and records the step; `model` itself changes only in sync(). */
  static async start(model: SwavModel, options: WebGpuStepperOptions): Promise<WebGpuStepper> {
    const { config } = model;
    const perImage = cropCount(config.crops);
    if (config.batchSize * perImage > MAX_CROPS_PER_STEP) {
      const names = options.names ?? FLAG_NAMES;
      throw new ConfigError(
        `the WebGPU engine runs at most ${MAX_CROPS_PER_STEP} crops per step; batch ${config.batchSize} x ${perImage} crops is ${config.batchSize * perImage}: ` +
          `use ${names.set('batch', Math.floor(MAX_CROPS_PER_STEP / perImage))} or less`,
      );
    }
    refuseLongQueue(config, options.names);
    checkCropDtype(options.cropDtype);
    try {
      return await WebGpuStepper.build(model, options, config);
    } catch (err) {
      // recompute auto: WebGPU reports no device memory, so the step is first built without recomputation,
      // and built again with it only when the device could not make the buffers.
      if (!(err instanceof WebGpuMemoryError) || !err.batchDependent || (config.recompute ?? 'auto') !== 'auto')
        throw err;
      const stepper = await WebGpuStepper.build(model, options, { ...config, recompute: 'on' });
      stepper.recomputeLine = `recompute on (auto: without it the device could not make ${sizeText(err.bytes)} of buffers)`;
      return stepper;
    }
  }

  /** start() for `config` (the model's, or with its recompute setting resolved). */
  private static async build(
    model: SwavModel,
    options: WebGpuStepperOptions,
    config: TrainConfig,
  ): Promise<WebGpuStepper> {
    const ctx = options.device ?? (await openDevice());
    const runner = new GpuRunner(ctx);
    const made: {
      state?: GpuModelState;
      tail?: TailBuffers;
      crops?: GpuTensor[];
      program?: GradientProgram;
      bytes?: ByteCropInputs;
    } = {};
    // Buffers are checked as they are made; the first failure found decides the error start throws. The outer
    // scope holds what follows from it (writes to, and bindings of, a buffer that was not made), which would
    // otherwise be printed as uncaptured errors.
    ctx.device.pushErrorScope('validation');
    let stray: Promise<GPUError | null> | null = null;
    const popStray = () => (stray ??= ctx.device.popErrorScope());
    runner.trackAllocations();
    let verdict: Promise<WebGpuMemoryError | null> | null = null;
    const memoryCheck = (err?: unknown) => (verdict ??= memoryFailure(runner, config, err, options.names));
    const { signal } = options;
    try {
      signal?.throwIfAborted();
      const precision = resolvePrecision(options.precision, ctx.info, options.names);
      refuseOversizedWeights(model, ctx.info.limits);
      const state = (made.state = allocateState(runner, model, precision === 'mixed'));
      uploadState(runner, model, state);
      signal?.throwIfAborted();
      const tail = (made.tail = tailBuffers(runner, state.params.params.length, precision, options.lossScale));
      const sizes = cropSizes(config.crops);
      const layout = { params: state.params, stats: state.stats };
      const spec = { config, rows: config.batchSize, cropSizes: sizes, precision, layout };
      const program = (made.program = await options.program(runner, spec));
      const own = program.inputs ? [] : sizes.map((s) => runner.tensor([config.batchSize, s, s, 3]));
      made.crops = own;
      const io = stepBuffers(state, tail, own);
      const step = (list: Dispatch[]) => stepDispatches(spec, state, tail, list, options.lossScale);
      const recording = await runner.record(step(program.dispatches(io)), signal);
      const queue = config.queue.length > 0 ? await recordQueue(runner, model, program, step, signal) : null;
      const crops = program.inputs?.() ?? own;
      const byteInputs = (made.bytes = options.cropDtype === 'uint8' ? new ByteCropInputs(runner, crops) : undefined);
      const failed = await memoryCheck();
      const error = await popStray();
      if (failed) throw failed;
      if (error) throw new WebGpuTrainingError(`setting up the WebGPU step failed: ${error.message.split('\n')[0]}`);
      const line = `WebGPU ${describeDevice(ctx.info)}; ${describePrecision(precision, options.precision, ctx.info, options.precisionFrom)}`;
      const tables = larsTables(state.params, config);
      const parts = { state, tail, crops, ownCrops: own, program, recording, queue, tables, byteInputs };
      const stepper = new WebGpuStepper(model, runner, precision, line, !options.device, parts);
      const mode = model.config.recompute ?? 'auto';
      stepper.recomputeLine = `recompute ${recomputesOnGpu(config) ? 'on' : 'off'}${mode === 'auto' ? ', auto' : ''}`;
      return stepper;
    } catch (err) {
      // A buffer the device could not make is invalid, and binding it fails in record(): the checks say why.
      const failed = await memoryCheck(err).catch(() => null);
      await popStray().catch(() => null);
      made.program?.release();
      made.bytes?.release();
      if (!options.device) ctx.destroy();
      else {
        // A shared device lives on: free what was made for it.
        const { state, tail, crops } = made;
        const tensors = [...(state ? stateTensors(state) : []), ...Object.values(tail ?? {}), ...(crops ?? [])];
        for (const t of tensors) t.buffer.destroy();
        runner.trim(); // the program's and the byte staging's buffers, released to this runner's pool above
      }
      throw failed ?? err;
    }
  }

  /**
   * One step on a batch (NHWC, one per crop: tensors or the loader's crop arrays) of exactly the config's
   * batch size (the step is recorded for that shape). The loss is read back only when `readLoss` asks.
   */
  async step(
    crops: ReadonlyArray<tf.Tensor4D | CropTensor>,
    step: number,
    options: StepOptions = {},
  ): Promise<WebGpuStepResult> {
    this.check();
    const { config } = this.model;
    const t0 = performance.now();
    // Step n - MAX_STEPS_IN_FLIGHT must be done before this one's crops join the queue.
    while (this.inFlight.length >= MAX_STEPS_IN_FLIGHT) await this.inFlight.shift();
    let gpuWaitMs = performance.now() - t0;
    this.check(); // the device may have been lost while this waited
    const bytes = await this.writeCrops(crops);
    const lr = learningRate(step, { ...config.schedule, totalSteps: config.steps });
    const frozen = step < config.swav.freezePrototypesSteps;
    if (frozen !== this.frozen) {
      this.runner.writeBytes(this.tail.table, frozen ? this.tables.frozen : this.tables.open);
      this.frozen = frozen;
    }
    this.runner.writeBytes(this.runner.view(this.tail.hyper, LARS_HYPER.LR, [1]), Float32Array.of(lr));
    this.submit(step, bytes);
    // Settles when the device finishes the step, or is lost (Dawn may then never answer the first).
    const { queue, lost } = this.runner.device;
    this.inFlight.push(Promise.race([queue.onSubmittedWorkDone(), lost]).catch(() => {}));
    for (const p of this.state.params.params) if (!(frozen && p.name === PROTOTYPES)) this.withSlot.add(p.name);
    this.unread++;
    if (options.readLoss === false) return { loss: NaN, lr, lossSteps: 0, gpuWaitMs };
    const t1 = performance.now();
    const read = await this.readLoss();
    gpuWaitMs += performance.now() - t1;
    return { ...read, lr, gpuWaitMs };
  }

  /**
   * Submits the step: with SwAV's queue in the assignment once it is full and the run past its start step,
   * and after the decode of its crops when they came as bytes.
   */
  private submit(step: number, bytes: boolean): void {
    const { length, startStep } = this.model.config.queue;
    const queued = Boolean(this.queue && step >= startStep && this.queueFilled >= length);
    if (bytes) this.byteInputs!.recording(queued).submit();
    else (queued ? this.queue!.recording : this.recording).submit();
    if (this.queue) this.queueFilled = Math.min(length, this.queueFilled + this.model.config.batchSize);
  }

  /**
   * The mean loss of the steps since the last read (resetting the sum), and the loss-scale counters: what a
   * reading step returns, for a trainer that logs or saves after steps that did not read.
   */
  async readLoss(): Promise<Omit<WebGpuStepResult, 'lr' | 'gpuWaitMs'>> {
    this.check();
    const steps = this.unread;
    const [sum, scale] = await Promise.all([
      this.runner.read(this.tail.lossSum),
      this.precision === 'mixed' ? this.runner.read(this.tail.lossScale) : null,
    ]);
    this.runner.writeBytes(this.tail.lossSum, new Float32Array(1));
    this.unread = 0;
    return {
      loss: steps ? sum[0]! / steps : NaN,
      lossSteps: steps,
      ...(scale && {
        lossScale: {
          scale: scale[LOSS_SCALE.SCALE]!,
          skipped: scale[LOSS_SCALE.SKIPPED]!,
          grown: scale[LOSS_SCALE.GROWN]!,
        },
      }),
    };
  }

  /** The loss-scale state now (mixed precision; f32 runs report scale 1 and nothing skipped). */
  async lossScale(): Promise<LossScaleCounters> {
    const s = await this.runner.read(this.tail.lossScale);
    return { scale: s[LOSS_SCALE.SCALE]!, skipped: s[LOSS_SCALE.SKIPPED]!, grown: s[LOSS_SCALE.GROWN]! };
  }

  /** Mixed precision: the scale, clean run and counters a checkpoint keeps (null in f32: no loss scaling). */
  async lossScaleState(): Promise<LossScaleState | null> {
    if (this.precision !== 'mixed') return null;
    const s = await this.runner.read(this.tail.lossScale);
    return {
      scale: s[LOSS_SCALE.SCALE]!,
      cleanRun: s[LOSS_SCALE.CLEAN_RUN]!,
      skipped: s[LOSS_SCALE.SKIPPED]!,
      grown: s[LOSS_SCALE.GROWN]!,
    };
  }

  /** Copies the device's weights, momentum and running statistics into `model`: before a checkpoint or evaluation. */
  async sync(): Promise<void> {
    this.check();
    const got = await downloadState(this.runner, this.state, this.queue?.entries);
    importDownloaded(this.model, got, this.withSlot, this.queueFilled);
  }

  /** Frees the device's buffers (and the device, when start opened it). Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.program.release();
    releaseState(this.runner, this.state);
    this.runner.release(...Object.values(this.tail), ...this.ownCrops);
    this.byteInputs?.release();
    if (this.ownsDevice) this.runner.ctx.destroy();
    else this.runner.trim();
  }

  private check(): void {
    if (this.closed) throw new WebGpuTrainingError('the WebGPU stepper is closed');
    if (this.failure) throw this.failure;
  }

  /** GPU memory held, by part (bytes of the buffers; WebGPU reports no peak of its own). */
  memory(): { state: number; crops: number; program: number | null } {
    const bytes = (ts: GpuTensor[]) => ts.reduce((n, t) => n + t.buffer.size, 0);
    return {
      state: bytes([...stateTensors(this.state), ...Object.values(this.tail)]),
      crops: bytes(this.ownCrops) + (this.byteInputs?.bytes ?? 0),
      program: this.program.bytes ?? null,
    };
  }

  /** One line for the training log: the GPU memory the step holds. */
  memoryLine(): string {
    const m = this.memory();
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    const total = m.state + m.crops + (m.program ?? 0);
    return `GPU memory: ${mib(total)}${m.program === null ? ' and the gradient program' : ''} (state ${mib(m.state)}, crops ${mib(m.crops)}${m.program === null ? '' : `, program ${mib(m.program)}`}; ${this.recomputeLine})`;
  }

  /** The state buffers (tests read them to compare with the tfjs step). @internal */
  get buffers(): Readonly<GpuModelState> {
    return this.state;
  }

  /** The crop tensors each step's uploads land in (tests read them). @internal */
  get inputs(): readonly GpuTensor[] {
    return this.crops;
  }

  /**
   * Writes a batch's crops where the step reads them: floats straight into its inputs, bytes (all of the
   * batch's crops or none) into their staging buffers. Returns whether they came as bytes.
   */
  private async writeCrops(crops: ReadonlyArray<tf.Tensor4D | CropTensor>): Promise<boolean> {
    if (crops.length !== this.crops.length)
      throw new WebGpuTrainingError(`a batch of ${crops.length} crops; the run has ${this.crops.length}`);
    const arrays = crops.map((c, i) => {
      if ('dataSync' in c) return { size: c.shape[1], data: c.dataSync() as Float32Array };
      checkCrop(c, i);
      return c;
    });
    arrays.forEach((c, i) => this.checkShape(i, c.size, c.data.length));
    const bytes = arrays.filter((c): c is ByteCrop => 'dtype' in c && c.dtype === 'uint8');
    if (bytes.length > 0) {
      if (bytes.length !== arrays.length)
        throw new WebGpuTrainingError(
          `a batch of ${bytes.length} 8-bit and ${arrays.length - bytes.length} float crops: a step takes one kind`,
        );
      const recordings = { plain: this.recording, queued: this.queue?.recording ?? null };
      this.byteInputs ??= new ByteCropInputs(this.runner, this.crops);
      await this.byteInputs.prepare(bytes[0]!, recordings);
      this.byteInputs.write(bytes);
      return true;
    }
    arrays.forEach(({ data }, i) => {
      const want = this.crops[i]!;
      // Dawn for Node crashes the process (SIGSEGV, webgpu 0.6.2) on a write from a view of a SharedArrayBuffer,
      // where the loader's full batches live, and refuses the SharedArrayBuffer itself: those go through a copy.
      if (data.buffer instanceof SharedArrayBuffer) {
        const staging = (this.staging[i] ??= new Float32Array(want.size));
        staging.set(data as Float32Array);
        this.runner.writeBytes(want, staging);
      } else this.runner.writeBytes(want, data);
    });
    return false;
  }

  /** A crop of another size or image count than the step was recorded for is a WebGpuTrainingError. */
  private checkShape(i: number, size: number, elements: number): void {
    const want = this.crops[i]!;
    if (size === want.shape[1] && elements === want.size) return;
    const images = elements / (size * size * 3);
    const holds = Number.isInteger(images)
      ? `${images} images of ${size}x${size}`
      : `${elements} values, not whole ${size}x${size}x3 images`;
    throw new WebGpuTrainingError(
      `crop ${i} holds ${holds}; the WebGPU step is recorded for ${this.model.config.batchSize} of ${want.shape[1]}x${want.shape[1]}`,
    );
  }
}

/** The buffers the program's dispatches work on. */
function stepBuffers(state: GpuModelState, tail: TailBuffers, crops: GpuTensor[]): StepBuffers {
  const { w, w16, g, running } = state;
  return {
    weights: w,
    ...(w16 ? { weights16: w16 } : {}),
    grads: g,
    running,
    crops,
    lossScale: tail.lossScale,
    loss: tail.loss,
  };
}

/** The step as recorded: the program's passes, the LARS norms, the loss-scale check (mixed), the update, the loss sum. */
function stepDispatches(
  spec: GradientProgramSpec,
  state: GpuModelState,
  tail: TailBuffers,
  passes: Dispatch[],
  lossScale?: LossScaleOptions,
): Dispatch[] {
  const { w, w16, g, v } = state;
  const P = state.params.params.length;
  const check = spec.precision === 'mixed' ? lossScaleCheck(P, tail.norms, tail.lossScale, tail.hyper, lossScale) : [];
  const lars = { w, g, v, table: tail.table, norms: tail.norms, hyper: tail.hyper, ...(w16 ? { w16 } : {}) };
  return [...passes, ...larsStep(state.params, spec.config.lars, lars, check), ...lossSum(tail.loss, tail.lossSum)];
}

/**
 * SwAV's queue on the device: the model's entries (zeros, or a checkpoint's) uploaded, and the step recorded
 * for when the queue joins the assignment. A program without a queue cannot run a config with one.
 */
async function recordQueue(
  runner: GpuRunner,
  model: SwavModel,
  program: GradientProgram,
  step: (passes: Dispatch[]) => Dispatch[],
  signal?: AbortSignal,
): Promise<{ entries: readonly GpuTensor[]; recording: Recording }> {
  if (!program.queue)
    throw new ConfigError(
      `the gradient program has no SwAV queue (queue length ${model.config.queue.length}): train with queue length 0`,
    );
  const { entries, dispatches } = program.queue();
  entries.forEach((t, a) => runner.writeBytes(t, model.queue[a]!.dataSync() as Float32Array));
  return { entries, recording: await runner.record(step(dispatches), signal) };
}

function tailBuffers(
  runner: GpuRunner,
  paramCount: number,
  precision: Precision,
  start: LossScaleStart = {},
): TailBuffers {
  const t: TailBuffers = {
    table: runner.tensor([paramCount, 4]),
    norms: runner.tensor([paramCount, 2]),
    hyper: runner.tensor([LARS_HYPER.SIZE]),
    lossScale: runner.tensor([LOSS_SCALE.SIZE]),
    loss: runner.tensor([1]),
    lossSum: runner.tensor([1]),
  };
  // f32: no loss scaling. The gradient multiplier and skip flag stay 1 and 0; mixed: the check writes them.
  runner.writeBytes(t.hyper, Float32Array.of(0, 1, 0));
  const scale =
    precision === 'mixed'
      ? initialLossScaleState(start.initial, start.cleanRun, start.skipped, start.grown)
      : initialLossScaleState(1);
  runner.writeBytes(t.lossScale, scale);
  runner.writeBytes(t.loss, new Float32Array(1));
  runner.writeBytes(t.lossSum, new Float32Array(1));
  return t;
}

/** LARS tables with every parameter, and with the prototypes frozen (size 0: no update, no momentum). */
function larsTables(layout: ParamLayout, config: TrainConfig): { open: Uint32Array; frozen: Uint32Array } {
  const open = larsTable(layout, config.lars);
  const frozen = open.slice();
  const p = layout.params.findIndex((s) => s.name === PROTOTYPES);
  if (p >= 0) frozen[p * 4 + 1] = 0;
  return { open, frozen };
}
