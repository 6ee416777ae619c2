/**
 * The training loop, read top to bottom. A run on a dataset:
 *
 *   wildstream train --data D --out O      (src/jobs/train.ts opens D's multi-crop loader, then calls train())
 *
 * From TypeScript, any BatchSource trains the same way:
 *
 *   const start = await resolveResume({ out, config, resume: true, log });
 *   const batches = new MultiCropLoader(data, { batchSize, augment, seed, cursor: start.cursor ?? START });
 *   await train({ batches, start, out, config });
 *
 * Phases:
 *   1. Backend and model: start the tfjs backend, build the model from the config (its own seeded weights).
 *   2. Resume: restore the start point's checkpoint; the batches must stand at its cursor.
 *   3. Step loop: a batch -> SwavModel.step, until --steps, the end of the batches, or `signal`.
 *   4. Checkpoint and log: a progress and metrics line every `logEvery` steps, a checkpoint (weights, momentum,
 *      queue, the batches' cursor) every `checkpointEvery` steps and at the end, so N steps in one go and N
 *      steps in pieces give the same weights.
 *   5. Finish: the batches are closed, the model disposed, a summary returned.
 *
 * The signal ends every wait (resuming, a batch still being read or decoded), so a stop takes moments in any
 * state. When the data side fails instead (storage down past its retries, a dataset with nothing to train
 * on), the steps done since the last checkpoint are saved before the error is raised: the model is sound,
 * only its input failed.
 */
import * as tf from '@tensorflow/tfjs-core';
import { abortable, isAbort } from '../abort.js';
import type { BatchSource, MultiCropBatch } from '../augment/loader.js';
import type { StreamCursor } from '../augment/stream.js';
import { cropFloats } from '../crop-tensor.js';
import { defined } from '../defaults.js';
import { FLAG_NAMES, type OptionNames } from '../options/declare.js';
import { checkOptionsObject, ConfigError, shown, StoreUnavailableError, WildstreamError } from '../errors.js';
import { checkStore, type Store } from '../shards/store.js';
import { startBackend, type BackendInfo, type BackendName } from './backend.js';
import {
  NonFiniteStateError,
  pruneCheckpoints,
  restoreModel,
  saveCheckpoint,
  type DatasetIdentity,
} from './checkpoint.js';
import type { CheckpointHeader } from './checkpoint-format.js';
import { CollapseWatch } from './collapse.js';
import { checkTrainConfig, type TrainConfig } from './config.js';
import { formatLine, writeMetricsPart, type MetricLine } from './metrics.js';
import { formatBytes, WASM_HEAP_BYTES, WASM_HEAP_PER_TENSOR_BYTE } from './memory.js';
import { SwavModel } from './model.js';
import { ParallelStepper } from './parallel/stepper.js';
import { WebGpuStepper, type GradientProgramFactory, type WebGpuStepResult } from './webgpu/stepper.js';
import { swavGradientProgram } from './webgpu/swav-program.js';
import { PRECISIONS, type Precision } from './webgpu/precision.js';
import { divergenceAdvice, resolveResume, stepWarnings, type LastGood, type ResumePoint } from './resume.js';

/** The settings of a training loop, whatever feeds it batches. */
export interface LoopOptions {
  /** Checkpoint store: `checkpoints/step-<step>.ckpt` and `metrics/`. */
  out: Store;
  config: TrainConfig;
  /** @default 'auto' */
  backend?: BackendName;
  /** Continue from the newest checkpoint in `out`; false deletes its checkpoints and archives its metrics. @default true */
  resume?: boolean;
  /** Steps between checkpoints (and one at the end). @default 500 */
  checkpointEvery?: number;
  /** Checkpoints kept. @default 3 */
  keep?: number;
  /** Steps between progress and metrics lines. @default 10 */
  logEvery?: number;
  /** Ends the run at the next step boundary (and every wait) with a checkpoint of the steps done. */
  signal?: AbortSignal;
  /** Told each progress, warning and checkpoint line. @default nothing */
  log?: (line: string) => void;
  /**
   * Data-parallel training threads (wasm or cpu backend), each with its own backend and a share of every
   * batch; the same weights as one thread with that split (src/train/parallel/). At most the batch size.
   * @default 1
   */
  trainThreads?: number;
  /** Called after every step (a progress bar on a terminal). */
  onStep?: (step: number, steps: number, loss: number, lr: number) => void;
  /**
   * Numeric precision of the WebGPU engine (src/train/webgpu/precision.ts); only a webgpu run takes it.
   * @default mixed where the device offers shader-f16, else f32
   */
  precision?: Precision;
  /** How its lines name the options a person can change (a pipeline's train keys). @default FLAG_NAMES, the flags */
  names?: OptionNames;
  /**
   * Called before each checkpoint and its metrics are written; what it throws ends the run with nothing
   * written (trainOnStore: another run took over its run lock). @default nothing
   */
  beforeWrite?: () => void;
  /**
   * The dataset the batches come from, recorded in each checkpoint: a resume on another dataset is refused
   * (resume.ts). trainOnStore gives it. @default none recorded
   */
  dataset?: DatasetIdentity;
}

export interface TrainOptions extends LoopOptions {
  /** The batches, in order, standing at `start.cursor`. train closes them when it returns or throws. */
  batches: BatchSource;
  /**
   * Where the run starts, from `resolveResume` before `batches` was opened at its cursor.
   * @default resolved from `out` (per `resume`); `batches` must then stand at that checkpoint's cursor
   */
  start?: ResumePoint;
  /**
   * The WebGPU engine's forward and backward pass (a webgpu run). @default swavGradientProgram (webgpu/swav-program.ts)
   * @internal
   */
  gradientProgram?: GradientProgramFactory;
  /**
   * The model to train, built from `config` on the started backend (trainOnStore builds it first, to check the
   * checkpoints against it); train disposes it. @default built by train
   * @internal
   */
  model?: SwavModel;
}

export interface TrainSummary {
  backend: BackendInfo;
  startStep: number;
  step: number;
  resumedFrom: string | null;
  /** Data-parallel training threads used. */
  trainThreads: number;
  /** Mean loss of the last interval. */
  loss: number | null;
  stopped: 'done' | 'signal';
  checkpoint: string | null;
  /** Times the loss sat at ln K (collapse) during this call; the metrics lines count the whole run's, across resumes. */
  collapseWarnings: number;
}

/** The summary of a run a signal stopped before its first step. */
export const stoppedBeforeStart = (backend: BackendInfo, trainThreads: number): TrainSummary => ({
  backend,
  trainThreads,
  startStep: 0,
  step: 0,
  resumedFrom: null,
  loss: null,
  stopped: 'signal',
  checkpoint: null,
  collapseWarnings: 0,
});

export class TrainingDivergedError extends WildstreamError {
  override readonly code = 'WS_ERR_DIVERGED';
}

type Defaults = 'backend' | 'resume' | 'checkpointEvery' | 'keep' | 'logEvery' | 'trainThreads' | 'log' | 'names';
export type ResolvedLoopOptions<O extends LoopOptions = LoopOptions> = O & Required<Pick<LoopOptions, Defaults>>;

/** The options with their defaults, checked: a ConfigError names the first bad one (before anything is changed). */
export function loopOptions<O extends LoopOptions>(options: O): ResolvedLoopOptions<O> {
  checkOptionsObject(options, 'train options');
  checkStore(options.out, 'out (the checkpoint store)');
  checkTrainConfig(options.config);
  for (const key of ['log', 'onStep', 'beforeWrite'] as const) {
    const v: unknown = options[key];
    if (v !== undefined && typeof v !== 'function') throw new ConfigError(`${key} must be a function, got ${shown(v)}`);
  }
  const o = {
    backend: 'auto' as const,
    resume: true,
    checkpointEvery: 500,
    keep: 3,
    logEvery: 10,
    trainThreads: 1,
    log: () => {},
    names: FLAG_NAMES,
    ...defined(options),
  };
  for (const [name, v] of [
    ['checkpointEvery', o.checkpointEvery],
    ['keep', o.keep],
    ['logEvery', o.logEvery],
    ['trainThreads', o.trainThreads],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new ConfigError(`${name} must be a positive integer, got ${v}`);
  }
  if (o.precision !== undefined && !PRECISIONS.includes(o.precision))
    throw new ConfigError(`precision must be one of ${PRECISIONS.join(', ')}, got ${JSON.stringify(o.precision)}`);
  const backend = o.backend as BackendName; // the spread above types it as the default literal
  const { names } = o;
  if (o.precision !== undefined && backend !== 'webgpu' && backend !== 'auto')
    throw new ConfigError(
      `${names.set('precision', o.precision)} applies to the webgpu backend, this run asks for ${names.set('backend', backend)}`,
    );
  if (o.trainThreads > Math.min(256, o.config.batchSize)) {
    throw new ConfigError(
      `${names.of('trainThreads')} must be at most ${names.of('batch')} (${o.config.batchSize}) and 256, got ${o.trainThreads}: each thread needs rows of its own`,
    );
  }
  return o;
}

/**
 * The WebGPU engine for `model`, resumed at `start`; null when the signal stopped it while it started (a large
 * model compiles hundreds of pipelines). A mixed run's checkpoint holds its loss scale and counters: the resume
 * continues them (an f32 run ignores them; a checkpoint written before the counters were kept starts them at 0).
 * A source that says its crops are bytes gets their staging made at start, inside the engine's memory check.
 */
async function startWebGpu(
  o: LoopOptions,
  model: SwavModel,
  start: ResumePoint,
  program: GradientProgramFactory | undefined,
  batches: BatchSource,
): Promise<WebGpuStepper | null> {
  const scaled = start.checkpoint?.header.lossScale;
  try {
    return await WebGpuStepper.start(model, {
      program: program ?? swavGradientProgram,
      ...(o.signal && { signal: o.signal }),
      // Unset, a resume keeps its checkpoint's precision (mixed where f16 is offered for a fresh run).
      ...(o.precision
        ? { precision: o.precision }
        : start.checkpoint?.header.precision && {
            precision: start.checkpoint.header.precision,
            precisionFrom: 'checkpoint' as const,
          }),
      names: o.names,
      ...(batches.cropDtype && { cropDtype: batches.cropDtype }),
      ...(scaled && {
        lossScale: {
          initial: scaled.scale,
          cleanRun: scaled.cleanRun,
          skipped: scaled.skipped ?? 0,
          grown: scaled.grown ?? 0,
        },
      }),
    });
  } catch (err) {
    if (isAbort(err, o.signal)) return null;
    throw err;
  }
}

export async function train(options: TrainOptions): Promise<TrainSummary> {
  let model = options.model;
  let stepper: ParallelStepper | WebGpuStepper | null = null;
  try {
    const o = loopOptions(options);
    const { trainThreads, names } = o;
    // 1. Backend and model.
    const backend = await startBackend(o.backend);
    if (trainThreads > 1 && backend.name !== 'wasm' && backend.name !== 'cpu') {
      throw new ConfigError(
        `${names.set('trainThreads', trainThreads)} needs the wasm or cpu backend, this run has ${backend.name} (which uses every core by itself): use ${names.set('trainThreads', 1)}`,
      );
    }
    if (o.precision !== undefined && backend.name !== 'webgpu')
      throw new ConfigError(
        `${names.set('precision', o.precision)} applies to the webgpu backend, this run has ${backend.name}: set ${names.set('backend', 'webgpu')} or leave ${names.of('precision')} out`,
      );
    // On webgpu the model's tfjs side only holds the weights: no tfjs memory plan (the stepper checks the device's).
    model ??= new SwavModel(o.config, {
      threads: trainThreads,
      names: o.names,
      ...(backend.name === 'webgpu' && { backend: 'webgpu' }),
    });
    // 2. Resume; the threads start from the restored state.
    const start = await startAt(o, model);
    if (!start) return stoppedBeforeStart(backend, trainThreads);
    if (trainThreads > 1 && start.step < o.config.steps) {
      stepper = await ParallelStepper.start(model, { threads: trainThreads, backend: backend.name as 'wasm' | 'cpu' });
    } else if (backend.name === 'webgpu' && start.step < o.config.steps) {
      // The model stays on tfjs's cpu backend (checkpoints, export); the engine steps on the device.
      stepper = await startWebGpu(o, model, start, options.gradientProgram, options.batches);
      if (!stepper)
        return {
          ...stoppedBeforeStart(backend, trainThreads),
          startStep: start.step,
          step: start.step,
          resumedFrom: start.resumedFrom,
        };
      o.log(stepper.description);
    }
    o.log(
      `wildstream train: backend ${backend.name} (${backend.device}), ${trainThreads} training thread${trainThreads > 1 ? 's' : ''}, model ${o.config.model} ` +
        `(${(model.ps.count() / 1e6).toFixed(2)} M params), batch ${o.config.batchSize}, crops ${o.config.crops}, ` +
        (o.config.queue.length > 0 ? `queue ${o.config.queue.length} from step ${o.config.queue.startStep}, ` : '') +
        (start.resumedFrom ? `resuming at step ${start.step} from ${start.resumedFrom}` : 'starting at step 0'),
    );
    if (start.step < o.config.steps) for (const warning of stepWarnings(o.config, names)) o.log(warning);
    // A GPU run's steps hold device buffers (its line says how much); the model's plan is for tfjs steps it never runs.
    o.log(stepper instanceof WebGpuStepper ? stepper.memoryLine() : model.memory.line);
    // 3 and 4. The step loop, with its log lines and checkpoints.
    const loop = new Loop(o, model, backend, start, stepper);
    const stopped = start.step >= o.config.steps ? 'done' : await loop.run();
    // 5. Finish.
    return {
      backend,
      trainThreads,
      startStep: start.step,
      step: loop.step,
      resumedFrom: start.resumedFrom,
      loss: loop.lastLoss,
      stopped,
      checkpoint: loop.lastCheckpoint,
      collapseWarnings: loop.collapse.warnings - loop.collapseAtStart,
    };
  } finally {
    await stepper?.close(); // ends the threads, also one stuck in a step that failed elsewhere
    model?.dispose();
    await options.batches.close();
  }
}

/**
 * Phase 2: restores the start point into `model` (resolving it from `out` when none was given) and checks
 * that the batches stand at its cursor. Null when the signal stopped the run first.
 */
async function startAt(o: ResolvedLoopOptions<TrainOptions>, model: SwavModel): Promise<ResumePoint | null> {
  let start = o.start;
  try {
    start ??= await abortable(resolveResume({ ...o, model }), o.signal); // reads the store: a stalled read must not outlast a stop
  } catch (err) {
    if (isAbort(err, o.signal)) return null;
    throw err;
  }
  if (start.checkpoint) restoreModel(model, start.checkpoint);
  const at = o.batches.cursor();
  if (start.cursor && !sameCursor(at, start.cursor)) {
    throw new ConfigError(
      `the batches stand at ${JSON.stringify(at)}, but the run resumes from ${start.resumedFrom} at ` +
        `${JSON.stringify(start.cursor)}: open the batch source at the start point's cursor`,
    );
  }
  return start;
}

/** Where a store is, as a user finds it: a local store's directory, or its URL. */
export function storeLocation(store: Store): string {
  return store.url.startsWith('file://') ? store.url.slice('file://'.length) : store.url;
}

/** What an interval's rates leave out: a GPU process's first step (its time, images and waits). */
interface Excluded {
  ms: number;
  images: number;
  waitMs: number;
  gpuWaitMs: number;
}

/** An empty log interval, timed from now. */
const newInterval = () => ({
  loss: 0,
  lossSteps: 0,
  steps: 0,
  images: 0,
  waitMs: 0,
  gpuWaitMs: 0,
  t0: performance.now(),
  excluded: null as Excluded | null,
});

const sameCursor = (a: StreamCursor, b: StreamCursor): boolean =>
  a.epoch === b.epoch &&
  a.group === b.group &&
  a.offset === b.offset &&
  a.position === b.position &&
  JSON.stringify(a.units ?? null) === JSON.stringify(b.units ?? null);

class Loop {
  step: number;
  lastLoss: number | null = null;
  lastCheckpoint: string | null = null;
  /** The newest checkpoint known to hold finite state: what a diverged run falls back to. */
  lastGood: LastGood;
  readonly collapse: CollapseWatch;
  /** The run's collapse warnings before this call (a resume's, from its checkpoint). */
  readonly collapseAtStart: number;
  private pending: MetricLine[] = [];
  private interval = newInterval();
  /** The latest loss read (what the progress bar shows between GPU reads). */
  private shownLoss = NaN;
  /** Mixed precision on a GPU: the loss scale and its counters at the latest read. */
  private lossScale: WebGpuStepResult['lossScale'];
  private epoch = 0;
  private lr = 0;
  /** This process has stepped: a GPU's first step is timed apart (setFirstStepApart). */
  private stepped = false;
  /** When this process started training: marks its metric lines, so a plot shows where a resume cut in. */
  private readonly started = new Date().toISOString();
  /**
   * A GPU run's precision and loss scale, from the checkpoint this run resumed, written on by a run on another
   * backend (which has neither): a webgpu resume after it continues them, rather than a fresh precision choice
   * and a scale starting again at 2^16 (which skipped steps to find the scale again).
   */
  private readonly carried: Pick<CheckpointHeader, 'precision' | 'lossScale'>;

  constructor(
    private readonly o: ResolvedLoopOptions<TrainOptions>,
    private readonly model: SwavModel,
    private readonly backend: BackendInfo,
    start: ResumePoint,
    /** Steps the threads when training is data-parallel; `model` then holds their state after each sync. */
    private readonly stepper: ParallelStepper | WebGpuStepper | null = null,
  ) {
    this.step = start.step;
    this.lastGood = { step: start.step, key: start.resumedFrom, writtenByThisRun: false };
    // A resume counts on from the checkpoint's watch (an older checkpoint without one: from zero).
    const collapse = start.checkpoint?.header.collapse;
    this.collapse = new CollapseWatch({ prototypes: o.config.swav.prototypes, ...(collapse && { state: collapse }) });
    this.collapseAtStart = this.collapse.warnings;
    const { precision, lossScale } = start.checkpoint?.header ?? {};
    this.carried = { ...(precision && { precision }), ...(lossScale && { lossScale }) };
  }

  /** Phase 3: steps until --steps, the end of the batches or the signal; then the last checkpoint. */
  async run(): Promise<'done' | 'signal'> {
    const { config, logEvery, checkpointEvery } = this.o;
    const batches = this.o.batches[Symbol.asyncIterator]();
    let saved = this.step;
    let waiting = false;
    try {
      while (this.step < config.steps && !this.o.signal?.aborted) {
        const t0 = performance.now();
        let next: IteratorResult<MultiCropBatch>;
        try {
          waiting = true;
          next = await abortable(batches.next(), this.o.signal); // a source that ignores the signal still stops promptly
          waiting = false;
        } catch (err) {
          if (isAbort(err, this.o.signal)) break;
          waiting = false;
          throw await this.dataFailed(err, saved);
        }
        if (next.done) break;
        this.interval.waitMs += performance.now() - t0;
        if (this.dropsPartial(next.value)) continue;
        const first = !this.stepped && this.stepper instanceof WebGpuStepper;
        await this.trainOn(next.value);
        this.stepped = true;
        if (first) this.setFirstStepApart();
        next.value.release(); // the step has read the crops (its tensors are disposed): the source may reuse them
        if (this.step % logEvery === 0 || this.step === config.steps) this.report();
        if (this.step % checkpointEvery === 0 || this.step === config.steps) saved = await this.save();
      }
      if (this.step > saved) await this.save();
    } finally {
      // An abandoned wait may never settle: ending the iterator would queue behind it, so close() ends the source.
      if (waiting) batches.return?.(undefined)?.catch(() => {});
      else await batches.return?.(undefined);
    }
    return this.step >= config.steps ? 'done' : 'signal';
  }

  /**
   * The data side failed: saves the steps done since checkpoint `saved` (when the checkpoint store takes
   * them) and returns the error to raise, telling a storage outage to rerun.
   */
  private async dataFailed(err: unknown, saved: number): Promise<unknown> {
    let kept = this.lastGood.key ? `the last checkpoint ${this.lastGood.key} is kept` : 'no checkpoint was written';
    if (this.step > saved) {
      try {
        await this.save();
        kept = `${this.lastCheckpoint} written`;
      } catch (saveErr) {
        kept = `the checkpoint of step ${this.step} could not be written (${(saveErr as Error).message})`;
      }
    }
    if (!(err instanceof StoreUnavailableError)) return err;
    return new StoreUnavailableError(
      `${err.message}; training stopped at step ${this.step}, ${kept}; rerun the same command to resume once the store answers`,
      { cause: err },
    );
  }

  /**
   * A batch smaller than the batch size (a finite source's last) on webgpu, whose step is recorded for one
   * shape: skipped with a line, as PyTorch's drop_last (VISSL's setting for SwAV) would. The CPU backends
   * train on it.
   */
  private dropsPartial(batch: MultiCropBatch): boolean {
    const { batchSize } = this.o.config;
    if (!(this.stepper instanceof WebGpuStepper) || batch.keys.length >= batchSize) return false;
    this.o.log(
      `skipped a batch of ${batch.keys.length} images after step ${this.step}: the WebGPU step is recorded for batches of ${batchSize} (as drop_last)`,
    );
    batch.release();
    return true;
  }

  private async trainOn(batch: MultiCropBatch): Promise<void> {
    try {
      await this.stepOn(batch);
    } catch (err) {
      // An exhausted wasm heap (4 GiB) aborts the module with a bare "Aborted()": say what it means.
      if (
        this.backend.name === 'wasm' &&
        err instanceof Error &&
        err.name === 'RuntimeError' &&
        /Aborted/.test(err.message)
      ) {
        throw this.outOfMemory(err);
      }
      throw err;
    }
  }

  /**
   * The wasm heap ran out although the memory plan fitted (its estimate is a model of tfjs's allocations, and
   * the heap fragments): say what the plan expected and what lowers the peak, in the order that costs least.
   */
  private outOfMemory(err: Error): WildstreamError {
    const { names, config } = this.o;
    const plan = this.model.memory;
    const peak = plan.recompute ? plan.estimate.peak.on : plan.estimate.peak.off;
    const fixes = [
      ...(plan.recompute ? [] : [names.set('recompute', 'on')]),
      ...(config.batchSize > 1 ? [names.set('batch', Math.floor(config.batchSize / 2))] : []),
      'smaller crops or model',
    ];
    return new WildstreamError(
      `the wasm backend ran out of memory: its heap holds at most ${formatBytes(WASM_HEAP_BYTES)} and the step ` +
        `(batch ${config.batchSize}, crops ${config.crops}) needed more than the ~${formatBytes(peak * WASM_HEAP_PER_TENSOR_BYTE)} ` +
        `the memory plan expected; try ${fixes.join(', or ')} (${err.message.replace(/\. Build with.*$/, '')})`,
    );
  }

  private async stepOn(batch: MultiCropBatch): Promise<void> {
    const n = batch.keys.length;
    // A GPU step leaves its loss on the device: it is read (the mean of the unread steps) on log steps only,
    // and after the process's first step, whose time then includes the device's (setFirstStepApart).
    const readLoss = !this.stepped || (this.step + 1) % this.o.logEvery === 0 || this.step + 1 === this.o.config.steps;
    const result = this.stepper
      ? await this.stepper.step(batch.crops, this.step, { readLoss })
      : this.stepSingle(batch, n);
    this.lr = result.lr;
    this.interval.gpuWaitMs += (result as Partial<Pick<WebGpuStepResult, 'gpuWaitMs'>>).gpuWaitMs ?? 0;
    this.absorb(result);
    this.step++;
    this.o.onStep?.(this.step, this.o.config.steps, this.shownLoss, result.lr);
    this.epoch = batch.epoch;
    Object.assign(this.interval, { steps: this.interval.steps + 1, images: this.interval.images + n });
  }

  /** Adds a step's loss to the interval: a mean over `lossSteps` steps (1 unless read from a GPU; 0: not read). */
  private absorb(r: { loss: number; lr?: number } & Partial<Pick<WebGpuStepResult, 'lossSteps' | 'lossScale'>>): void {
    const steps = r.lossSteps ?? 1;
    if (steps === 0) return;
    if (!Number.isFinite(r.loss)) {
      const at = steps > 1 ? `in steps ${this.step + 2 - steps}..${this.step + 1}` : `at step ${this.step + 1}`;
      throw new TrainingDivergedError(
        `loss became ${r.loss} ${at} (lr ${this.lr.toPrecision(3)}); ${divergenceAdvice(this.o.config, this.lastGood, this.o.names)}`,
      );
    }
    this.interval.loss += r.loss * steps;
    this.interval.lossSteps += steps;
    this.shownLoss = r.loss;
    if (r.lossScale) this.lossScale = r.lossScale;
  }

  private stepSingle(batch: MultiCropBatch, n: number): { loss: number; lr: number } {
    const crops = batch.crops.map((c, i) => tf.tensor4d(cropFloats(c, i), [n, c.size, c.size, 3]));
    try {
      return this.model.step(crops, this.step);
    } finally {
      tf.dispose(crops);
    }
  }

  /**
   * A GPU process's first step waits for the device's first-use work (lavapipe compiles each kernel at its
   * first dispatch: 40 s for the tiny test model's first step, against 20 ms for the next). It gets a line of
   * its own, and the interval's rates count from the next step, so img/s and gpu-wait describe training.
   */
  private setFirstStepApart(): void {
    const { images, waitMs, gpuWaitMs, t0 } = this.interval;
    const ms = performance.now() - t0;
    this.interval.excluded = { ms, images, waitMs, gpuWaitMs };
    this.o.log(
      `first step ${(ms / 1000).toFixed(1)} s, ${((100 * gpuWaitMs) / ms).toFixed(0)}% of it waiting for the device (its first-use work, such as compiling kernels)` +
        (this.o.logEvery > 1 ? '; the rates of its interval count from the next step' : ''),
    );
  }

  /** Phase 4: the progress line, a collapse warning when the loss sits at ln K, a metrics line for the next save. */
  private report(): void {
    const { loss, lossSteps, steps, t0 } = this.interval;
    if (steps === 0) return;
    let { images, waitMs, gpuWaitMs } = this.interval;
    let elapsed = performance.now() - t0;
    const apart = steps > 1 ? this.interval.excluded : null; // a first step alone in its interval is all it has
    if (apart) {
      [elapsed, images] = [elapsed - apart.ms, images - apart.images];
      [waitMs, gpuWaitMs] = [waitMs - apart.waitMs, gpuWaitMs - apart.gpuWaitMs];
    }
    const { config } = this.o;
    const line: MetricLine = {
      step: this.step,
      epoch: this.epoch,
      loss: loss / lossSteps, // every step's loss is read by now (save flushes a GPU's unread ones)
      lr: this.lr,
      imagesPerSec: (images * 1000) / elapsed,
      dataWaitPct: (100 * waitMs) / elapsed,
      ...(this.stepper instanceof WebGpuStepper && { gpuWaitPct: (100 * gpuWaitMs) / elapsed }),
      backend: this.backend.name,
      ...(this.lossScale && { lossScale: { ...this.lossScale } }),
      ...(this.interval.excluded && { firstStepSeconds: this.interval.excluded.ms / 1000 }),
      time: new Date().toISOString(),
      run: this.started,
    };
    this.lastLoss = line.loss;
    this.o.log(formatLine(line, config.steps));
    const warning = this.collapse.observe(this.step, line.loss, this.step <= config.swav.freezePrototypesSteps);
    if (warning) this.o.log(warning);
    this.pending.push({ ...line, collapseWarnings: this.collapse.warnings });
    this.interval = newInterval();
  }

  /** Phase 4: the interval's metrics, then a checkpoint at the batches' cursor (the one after the last batch trained on). */
  private async save(): Promise<number> {
    this.o.beforeWrite?.();
    if (this.stepper instanceof WebGpuStepper) this.absorb(await this.stepper.readLoss()); // steps since the last read
    this.report();
    await this.stepper?.sync(); // the threads hold the trained state; the model takes it before it is saved
    const lossScale = this.stepper instanceof WebGpuStepper ? await this.stepper.lossScaleState() : null;
    const cursor = this.o.batches.cursor();
    // The metrics part goes first: a run killed between the two writes resumes from the previous checkpoint,
    // which drops this part and rewrites it; the other order would keep a checkpoint whose lines are lost.
    await writeMetricsPart(this.o.out, this.step, this.pending);
    this.lastCheckpoint = await saveCheckpoint(this.o.out, this.model, this.step, cursor, {
      ...(this.stepper instanceof WebGpuStepper
        ? { precision: this.stepper.precision, ...(lossScale && { lossScale }) }
        : this.carried),
      ...(this.o.dataset && { dataset: this.o.dataset }),
      collapse: this.collapse.state(),
    }).catch((err) => {
      if (!(err instanceof NonFiniteStateError)) throw err;
      throw new TrainingDivergedError(
        `training diverged: ${err.message}; ${divergenceAdvice(this.o.config, this.lastGood, this.o.names)}`,
      );
    });
    this.lastGood = { step: this.step, key: this.lastCheckpoint, writtenByThisRun: true };
    this.pending = [];
    await pruneCheckpoints(this.o.out, this.o.keep);
    this.o.log(`checkpoint ${this.lastCheckpoint} in ${storeLocation(this.o.out)}`);
    return this.step;
  }
}
