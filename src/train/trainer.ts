/**
 * The training loop: MultiCropLoader batches -> SwavModel.step, a progress line and a metrics line every
 * `logEvery` steps, a checkpoint every `checkpointEvery` steps, at the end, and when `signal` aborts
 * (SIGINT/SIGTERM in the CLI). By default a run resumes from the newest checkpoint that verifies, with the
 * weights, momentum, queue and the data stream's cursor, so N steps in one go and N steps in pieces give the
 * same weights.
 *
 * The signal ends every wait (resuming, a batch the loader is still reading or decoding), so a stop takes
 * moments in any state. When the data side fails instead (storage down past its retries, a dataset with
 * nothing to train on), the steps done since the last checkpoint are saved before the error is raised:
 * the model is sound, only its input failed.
 */
import * as tf from '@tensorflow/tfjs-core';
import { abortable, isAbort } from '../abort.js';
import { MultiCropLoader, type MultiCropBatch } from '../augment/loader.js';
import type { StreamCursor } from '../augment/stream.js';
import { ConfigError, StoreUnavailableError, WildstreamError } from '../errors.js';
import type { Store } from '../shards/store.js';
import { startBackend, type BackendInfo, type BackendName } from './backend.js';
import { augmentOf, type TrainConfig } from './config.js';
import { NonFiniteStateError, pruneCheckpoints, saveCheckpoint } from './checkpoint.js';
import { CollapseWatch } from './collapse.js';
import { formatLine, writeMetricsPart, type MetricLine } from './metrics.js';
import { SwavModel } from './model.js';
import { batchWarning, divergenceAdvice, resumeState, type LastGood } from './resume.js';

export interface TrainOptions {
  data: Store;
  out: Store;
  config: TrainConfig;
  /** @default 'auto' */
  backend?: BackendName;
  /** Continue from the newest checkpoint in `out`. @default true */
  resume?: boolean;
  /** Train while ingest commits units. @default false */
  follow?: boolean;
  /** @default 500 */
  checkpointEvery?: number;
  /** Checkpoints kept. @default 3 */
  keep?: number;
  /** @default 10 */
  logEvery?: number;
  /** Augmentation worker threads. @default the number of cores */
  threads?: number;
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Called after every step (a progress bar on a terminal). */
  onStep?: (step: number, steps: number, loss: number, lr: number) => void;
}

export interface TrainSummary {
  backend: BackendInfo;
  startStep: number;
  step: number;
  resumedFrom: string | null;
  /** Mean loss of the last interval. */
  loss: number | null;
  stopped: 'done' | 'signal';
  checkpoint: string | null;
  skipped: Record<string, number>;
  /** Times the loss sat at ln K (collapse) during this run. */
  collapseWarnings: number;
}

export class TrainingDivergedError extends WildstreamError {
  override readonly code = 'WS_ERR_DIVERGED';
}

export async function train(options: TrainOptions): Promise<TrainSummary> {
  const o = { resume: true, follow: false, checkpointEvery: 500, keep: 3, logEvery: 10, log: () => {}, ...options };
  for (const [name, v] of [['checkpointEvery', o.checkpointEvery], ['keep', o.keep], ['logEvery', o.logEvery]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new ConfigError(`${name} must be a positive integer, got ${v}`);
  }
  const backend = await startBackend(o.backend ?? 'auto');
  const model = new SwavModel(o.config);
  try {
    let state: Awaited<ReturnType<typeof resumeState>>;
    let crowded: Awaited<ReturnType<typeof batchWarning>>;
    try {
      // Both read the stores: a stalled read must not outlast a stop.
      state = await abortable(resumeState(o, model), o.signal);
      crowded = await abortable(batchWarning(o.data, o.config, o.follow), o.signal);
    } catch (err) {
      if (!isAbort(err, o.signal)) throw err;
      return { backend, startStep: 0, step: 0, resumedFrom: null, loss: null, stopped: 'signal', checkpoint: null, skipped: {}, collapseWarnings: 0 };
    }
    const { step, cursor, resumedFrom } = state;
    if (crowded) o.log(crowded);
    o.log(`wildstream train: backend ${backend.name} (${backend.device}), model ${o.config.model} ` +
      `(${(model.ps.count() / 1e6).toFixed(2)} M params), batch ${o.config.batchSize}, crops ${o.config.crops}, ` +
      (resumedFrom ? `resuming at step ${step} from ${resumedFrom}` : 'starting at step 0'));
    const loop = new Loop(o, model, backend, step);
    loop.lastGood = { step, key: resumedFrom, writtenByThisRun: false };
    const stopped = step >= o.config.steps ? 'done' : await loop.run(cursor);
    return {
      backend, startStep: step, step: loop.step, resumedFrom, loss: loop.lastLoss, stopped, checkpoint: loop.lastCheckpoint,
      skipped: loop.skipped, collapseWarnings: loop.collapse.warnings,
    };
  } finally {
    model.dispose();
  }
}

class Loop {
  lastLoss: number | null = null;
  lastCheckpoint: string | null = null;
  /** The newest checkpoint known to hold finite state: what a diverged run falls back to. */
  lastGood: LastGood = { step: 0, key: null, writtenByThisRun: false };
  skipped: Record<string, number> = {};
  private pending: MetricLine[] = [];
  private interval = { loss: 0, steps: 0, images: 0, waitMs: 0, t0: performance.now() };
  private epoch = 0;
  private lr = 0;
  readonly collapse: CollapseWatch;
  /** When this process started training: marks its metric lines, so a plot shows where a resume cut in. */
  private readonly started = new Date().toISOString();

  constructor(
    private readonly o: Required<Pick<TrainOptions, 'checkpointEvery' | 'keep' | 'logEvery' | 'follow' | 'log'>> & TrainOptions,
    private readonly model: SwavModel,
    private readonly backend: BackendInfo,
    public step: number,
  ) {
    this.collapse = new CollapseWatch({ prototypes: o.config.swav.prototypes });
  }

  async run(cursor: StreamCursor): Promise<'done' | 'signal'> {
    const { config } = this.o;
    const loader = new MultiCropLoader(this.o.data, {
      batchSize: config.batchSize, seed: config.seed, augment: augmentOf(config), cursor,
      follow: this.o.follow, threads: this.o.threads, signal: this.o.signal, onWait: this.o.log, onSkip: this.o.log,
    });
    const batches = loader[Symbol.asyncIterator]();
    let saved = this.step;
    try {
      while (this.step < config.steps && !this.o.signal?.aborted) {
        const t0 = performance.now();
        let next: IteratorResult<MultiCropBatch>;
        try {
          next = await batches.next();
        } catch (err) {
          if (isAbort(err, this.o.signal)) break;
          throw await this.dataFailed(err, cursor, saved);
        }
        if (next.done) break;
        this.interval.waitMs += performance.now() - t0;
        this.trainOn(next.value);
        next.value.release(); // the step has read the crops (its tensors are disposed): the loader may reuse them
        cursor = next.value.cursor;
        if (this.step % this.o.logEvery === 0 || this.step === config.steps) this.report();
        if (this.step % this.o.checkpointEvery === 0 || this.step === config.steps) saved = await this.save(cursor);
      }
      if (this.step > saved) await this.save(cursor);
    } finally {
      await batches.return(undefined);
      this.skipped = { ...loader.stream.stats.skipped, ...loader.stats.skipped };
    }
    return this.step >= config.steps ? 'done' : 'signal';
  }

  /**
   * The data side failed: saves the steps done since checkpoint `saved` (when the checkpoint store takes
   * them) and returns the error to raise, telling a storage outage to rerun.
   */
  private async dataFailed(err: unknown, cursor: StreamCursor, saved: number): Promise<unknown> {
    let kept = this.lastGood.key ? `the last checkpoint ${this.lastGood.key} is kept` : 'no checkpoint was written';
    if (this.step > saved) {
      try {
        await this.save(cursor);
        kept = `${this.lastCheckpoint} written`;
      } catch (saveErr) {
        kept = `the checkpoint of step ${this.step} could not be written (${(saveErr as Error).message})`;
      }
    }
    if (!(err instanceof StoreUnavailableError)) return err;
    return new StoreUnavailableError(`${err.message}; training stopped at step ${this.step}, ${kept}; rerun the same command to resume once the store answers`, { cause: err });
  }

  private trainOn(batch: MultiCropBatch): void {
    try {
      this.stepOn(batch);
    } catch (err) {
      // An exhausted wasm heap (4 GiB) aborts the module with a bare "Aborted()": say what it means.
      if (this.backend.name === 'wasm' && err instanceof Error && err.name === 'RuntimeError' && /Aborted/.test(err.message)) {
        throw new WildstreamError(`the wasm backend ran out of memory (its heap is at most 4 GiB) at batch ${this.o.config.batchSize} with crops ${this.o.config.crops}; use a smaller --batch or crops (${err.message})`);
      }
      throw err;
    }
  }

  private stepOn(batch: MultiCropBatch): void {
    const n = batch.keys.length;
    const crops = batch.crops.map((c) => tf.tensor4d(c.data, [n, c.size, c.size, 3]));
    let result: { loss: number; lr: number };
    try {
      result = this.model.step(crops, this.step);
    } finally {
      tf.dispose(crops);
    }
    const { loss, lr } = result;
    this.lr = lr;
    if (!Number.isFinite(loss)) {
      throw new TrainingDivergedError(`loss became ${loss} at step ${this.step + 1} (lr ${lr.toPrecision(3)}); ${divergenceAdvice(this.o.config, this.lastGood)}`);
    }
    this.step++;
    this.o.onStep?.(this.step, this.o.config.steps, loss, lr);
    this.epoch = batch.epoch;
    Object.assign(this.interval, { loss: this.interval.loss + loss, steps: this.interval.steps + 1, images: this.interval.images + n });
  }

  private report(): void {
    const { loss, steps, images, waitMs, t0 } = this.interval;
    if (steps === 0) return;
    const elapsed = performance.now() - t0;
    const { config } = this.o;
    const line: MetricLine = {
      step: this.step, epoch: this.epoch, loss: loss / steps,
      lr: this.lr, imagesPerSec: (images * 1000) / elapsed,
      dataWaitPct: (100 * waitMs) / elapsed, backend: this.backend.name, time: new Date().toISOString(), run: this.started,
    };
    this.lastLoss = line.loss;
    this.o.log(formatLine(line, config.steps));
    const warning = this.collapse.observe(this.step, line.loss, this.step <= config.swav.freezePrototypesSteps);
    if (warning) this.o.log(warning);
    this.pending.push({ ...line, collapseWarnings: this.collapse.warnings });
    this.interval = { loss: 0, steps: 0, images: 0, waitMs: 0, t0: performance.now() };
  }

  private async save(cursor: StreamCursor): Promise<number> {
    this.report();
    this.lastCheckpoint = await saveCheckpoint(this.o.out, this.model, this.step, cursor).catch((err) => {
      if (!(err instanceof NonFiniteStateError)) throw err;
      throw new TrainingDivergedError(`training diverged: ${err.message}; ${divergenceAdvice(this.o.config, this.lastGood)}`);
    });
    this.lastGood = { step: this.step, key: this.lastCheckpoint, writtenByThisRun: true };
    await writeMetricsPart(this.o.out, this.step, this.pending);
    this.pending = [];
    await pruneCheckpoints(this.o.out, this.o.keep);
    this.o.log(`checkpoint ${this.lastCheckpoint}`);
    return this.step;
  }
}

