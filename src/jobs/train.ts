/**
 * Training on a dataset in a store, what `wildstream train --data D --out O` and a pipeline's train step run:
 * resolve where the run starts (checkpoint and stream cursor), open augment's multi-crop loader at that
 * cursor, and hand it to train(). train itself knows batches, not stores of images.
 */
import { abortable, isAbort } from '../abort.js';
import { MultiCropLoader } from '../augment/loader.js';
import type { Store } from '../shards/store.js';
import { startBackend } from '../train/backend.js';
import { augmentOf } from '../train/config.js';
import { SwavModel } from '../train/model.js';
import { batchWarning, resolveResume, type ResumePoint } from '../train/resume.js';
import { loopOptions, train, type LoopOptions, type TrainSummary } from '../train/trainer.js';

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
 * that verifies unless `resume` is false. Throws a ConfigError for bad options or a checkpoint of another
 * run's settings, an InvalidCheckpointError when every checkpoint is damaged, a NoDataError when the dataset
 * gives no sample, a StoreUnavailableError (after checkpointing the steps done) when storage fails, and a
 * TrainingDivergedError when the loss or the state stops being finite. A stop by `signal` returns
 * `stopped: 'signal'` with the steps done checkpointed.
 */
export async function trainOnStore(options: TrainOnStoreOptions): Promise<TrainOnStoreSummary> {
  const o = loopOptions(options);
  const backend = await startBackend(o.backend);
  // Built once: the checkpoints are checked against it (a model costs seconds to build), then it trains.
  // On webgpu the model's tfjs side only holds weights: no tfjs memory plan (the WebGPU stepper checks the device's).
  const model = new SwavModel(o.config, {
    threads: o.trainThreads,
    names: o.names,
    ...(backend.name === 'webgpu' && { backend: 'webgpu' }),
  });
  let start: ResumePoint, loader: MultiCropLoader;
  try {
    // Both read the stores: a stalled read must not outlast a stop.
    start = await abortable(resolveResume({ ...o, model }), o.signal);
    const crowded = await abortable(batchWarning(o.data, o.config, Boolean(o.follow), o.names), o.signal);
    if (crowded) o.log(crowded);
    loader = new MultiCropLoader(o.data, {
      batchSize: o.config.batchSize,
      seed: o.config.seed,
      augment: augmentOf(o.config),
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
    return {
      backend,
      trainThreads: o.trainThreads,
      startStep: 0,
      step: 0,
      resumedFrom: null,
      loss: null,
      stopped: 'signal',
      checkpoint: null,
      collapseWarnings: 0,
      skipped: {},
    };
  }
  const summary = await train({ ...o, backend: backend.name, model, batches: loader, start }); // disposes the model, closes the loader
  return { ...summary, skipped: { ...loader.stream.stats.skipped, ...loader.stats.skipped } };
}
