/**
 * Training on a dataset in a store, what `wildstream train --data D --out O` and a pipeline's train step run:
 * resolve where the run starts (checkpoint and stream cursor), open augment's multi-crop loader at that
 * cursor, and hand it to train(). train itself knows batches, not stores of images.
 */
import { availableParallelism } from 'node:os';
import { abortable, isAbort } from '../abort.js';
import { MultiCropLoader } from '../augment/loader.js';
import { NoDataError } from '../errors.js';
import type { OptionNames } from '../options/declare.js';
import { listUnits } from '../shards/dataset.js';
import type { Store } from '../shards/store.js';
import { startBackend, type BackendInfo } from '../train/backend.js';
import { CHECKPOINT_DIR, type DatasetIdentity } from '../train/checkpoint.js';
import { readManifest } from '../ingest/plan.js';
import { refuseOversizedConfig } from '../train/webgpu/stepper.js';
import { augmentOf } from '../train/config.js';
import { SwavModel } from '../train/model.js';
import { batchWarning, resolveResume, type ResumePoint } from '../train/resume.js';
import { lockRun, TRAIN_RUN, type RunLock } from '../shards/run-lock.js';
import {
  loopOptions,
  stoppedBeforeStart,
  storeLocation,
  train,
  type LoopOptions,
  type ResolvedLoopOptions,
  type TrainSummary,
} from '../train/trainer.js';

export interface TrainOnStoreOptions extends LoopOptions {
  /** The dataset: committed units of Arrow shards, as ingest writes them. */
  data: Store;
  /** Train while ingest commits units: an epoch takes the units committed when it starts. @default false */
  follow?: boolean;
  /** Augmentation worker threads. @default the number of cores */
  threads?: number;
}

export interface TrainOnStoreSummary extends TrainSummary {
  /** Records the stream and the loader skipped, by reason (bad_shard, decode_error, ...). */
  skipped: Record<string, number>;
}

/**
 * Trains `config` on the images of `data`, checkpointing to `out`; resumes from the newest checkpoint there
 * that verifies unless `resume` is false. Holds `out`'s run lock meanwhile (run-lock.ts). Throws a
 * RunLockedError when another run holds it, a ConfigError for bad options or a checkpoint of another
 * run's settings, an InvalidCheckpointError when every checkpoint is damaged, a NoDataError when the dataset
 * gives no sample, a StoreUnavailableError (after checkpointing the steps done) when storage fails, and a
 * TrainingDivergedError when the loss or the state stops being finite. A stop by `signal` returns
 * `stopped: 'signal'` with the steps done checkpointed.
 */
export async function trainOnStore(options: TrainOnStoreOptions): Promise<TrainOnStoreSummary> {
  const o = loopOptions(options);
  const backend = await startBackend(o.backend);
  if (o.signal?.aborted) return stopped(backend, o.trainThreads); // nothing started, nothing to take
  try {
    await abortable(requireUnits(o.data, Boolean(o.follow), o.names), o.signal); // a stalled read must not outlast a stop
  } catch (err) {
    if (!isAbort(err, o.signal)) throw err;
    return stopped(backend, o.trainThreads);
  }
  const locking = lockRun(o.out, TRAIN_RUN, { log: o.log, location: storeLocation(o.out), names: o.names });
  let lock: RunLock;
  try {
    lock = await abortable(locking, o.signal); // reads the store: a stalled read must not outlast a stop
  } catch (err) {
    if (!isAbort(err, o.signal)) throw err;
    void locking.then((l) => l.release()).catch(() => {}); // taken after the stop: not kept
    return stopped(backend, o.trainThreads);
  }
  const beforeWrite = () => (lock.check(), o.beforeWrite?.());
  try {
    // A run killed while writing a checkpoint left its partial file: the lock makes this run its only writer.
    const swept = await o.out.sweepUnfinished?.(CHECKPOINT_DIR);
    if (swept?.length)
      o.log(`removed ${swept.length} unfinished checkpoint write(s) of a killed run: ${swept.join(', ')}`);
    return await trainLocked({ ...o, beforeWrite }, backend);
  } finally {
    await lock.release().catch(() => {}); // a store outage leaves the lease to go stale
  }
}

async function trainLocked(
  o: ResolvedLoopOptions<TrainOnStoreOptions>,
  backend: BackendInfo,
): Promise<TrainOnStoreSummary> {
  // Built once: the checkpoints are checked against it (a model costs seconds to build), then it trains.
  // On webgpu the model's tfjs side only holds weights: no tfjs memory plan (the WebGPU stepper checks the device's).
  // A model too big for the device's binding is refused before it is built (minutes for a large RegNet).
  if (backend.name === 'webgpu' && backend.bindingLimit !== undefined)
    refuseOversizedConfig(o.config, backend.bindingLimit);
  const model = new SwavModel(o.config, {
    threads: o.trainThreads,
    names: o.names,
    ...(backend.name === 'webgpu' && { backend: 'webgpu' }),
  });
  let start: ResumePoint, loader: MultiCropLoader;
  try {
    // Both read the stores: a stalled read must not outlast a stop.
    const dataset = await abortable(datasetIdentity(o.data), o.signal);
    o = { ...o, dataset };
    start = await abortable(resolveResume({ ...o, model }), o.signal);
    const crowded = await abortable(batchWarning(o.data, o.config, Boolean(o.follow), o.names), o.signal);
    if (crowded) o.log(crowded);
    const oversubscribed = threadsWarning(o, availableParallelism());
    if (oversubscribed) o.log(oversubscribed);
    loader = new MultiCropLoader(o.data, {
      batchSize: o.config.batchSize,
      seed: o.config.seed,
      augment: augmentOf(o.config),
      // The GPU normalises 8-bit crops itself: a quarter of the bytes to copy and upload each step.
      cropDtype: backend.name === 'webgpu' ? 'uint8' : 'float32',
      ...(start.cursor && { cursor: start.cursor }),
      follow: o.follow,
      threads: o.threads,
      signal: o.signal,
      onWait: o.log,
      onSkip: o.log,
    });
  } catch (err) {
    model.dispose();
    if (!isAbort(err, o.signal)) throw err;
    return stopped(backend, o.trainThreads);
  }
  const summary = await train({ ...o, backend: backend.name, model, batches: loader, start }); // disposes the model, closes the loader
  return { ...summary, skipped: { ...loader.stream.stats.skipped, ...loader.stats.skipped } };
}

/**
 * A warning when `--threads` or `--train-threads` asks for more threads than the machine has cores: each then
 * waits its turn for a core, and every augmentation worker holds its own decoder and buffers (64 workers on
 * 2 cores ran a tiny model's steps 10x slower in 2.2 GB). Null otherwise.
 */
export function threadsWarning(
  o: Pick<ResolvedLoopOptions<TrainOnStoreOptions>, 'threads' | 'trainThreads' | 'names'>,
  cores: number,
): string | null {
  const over = (['threads', 'trainThreads'] as const).filter((k) => (o[k] ?? 0) > cores);
  if (over.length === 0) return null;
  const asked = over.map((k) => o.names.set(k, o[k]!)).join(' and ');
  return `warning: ${asked} ${over.length > 1 ? 'ask' : 'asks'} for more threads than the ${cores} core(s) here: they take turns on them; use ${over.map((k) => o.names.set(k, cores)).join(' and ')} or fewer`;
}

/**
 * Refuses a dataset without committed units (a wrong --data, or ingest not yet run) before anything is built or
 * written: else the model is built, its memory judged (a refusal that names the batch, not the data) and the
 * run locked, all for a loader that finds nothing. With `follow`, units may still come.
 */
async function requireUnits(data: Store, follow: boolean, names: OptionNames): Promise<void> {
  if (follow || (await listUnits(data)).length > 0) return;
  throw new NoDataError(
    `no committed units in ${data.url}: ${names.of('data')} names no dataset that ingest (or crawl) has written, or one it has not yet committed a unit to; ingest into it first, or train with ${names.of('follow')} while ingest runs`,
  );
}

/** Which dataset `data` is, for the checkpoints: its location and its dataset.json id when it has one. */
async function datasetIdentity(data: Store): Promise<DatasetIdentity> {
  const id = await readManifest(data).then(
    (m) => m?.id,
    () => undefined, // a damaged dataset.json: the location alone (the stream says what is wrong with the data)
  );
  return { url: data.url, ...(id && { id }) };
}

/** A run stopped before its first step. */
const stopped = (backend: BackendInfo, trainThreads: number): TrainOnStoreSummary => ({
  ...stoppedBeforeStart(backend, trainThreads),
  skipped: {},
});
