/**
 * A training run as `wildstream train` and a pipeline's train stage do it: options in, the config resolved
 * (settings left out chosen for the data, printed as `auto:`), a progress bar, SIGINT/SIGTERM/SIGHUP finish the
 * step and checkpoint, and the summary as one JSON line. A stopped run ends in an InterruptedError (exit 128 +
 * the signal's number) saying what was saved.
 */
import { abortable, isAbort } from '../abort.js';
import { cropCount } from '../crops.js';
import { AUGMENT_OPTIONS } from '../augment/options.js';
import { InterruptedError, WildstreamError } from '../errors.js';
import { STORE_OPTIONS, storeOptionsOf } from '../shards/options.js';
import { openStore } from '../shards/store.js';
import type { OptionNames, OptionValues } from '../options/declare.js';
import { TRAIN_OPTIONS } from '../train/options.js';
import { trainProgress, type TrainProgress } from '../train/progress.js';
import { resolveTrainConfig } from '../train/resolve.js';
import { StopSignals } from '../train/signals.js';
import { trainOnStore, type TrainOnStoreSummary } from './train.js';
import { checkOutputApart, DATASET_FILES, RUN_FILES } from './output-apart.js';

/** Everything `train` takes: where, the training settings, the augmentation and the store options. */
export const TRAIN_RUN_OPTIONS = { ...TRAIN_OPTIONS, ...AUGMENT_OPTIONS, ...STORE_OPTIONS } as const;

export type TrainRunValues = OptionValues<typeof TRAIN_RUN_OPTIONS>;

/**
 * Runs `o`; `how.names` is how its lines name the options (a pipeline's train keys; the flags by default).
 * `how.stop` stops the run as a signal does (the step finishes, the steps done are checkpointed), for a
 * pipeline whose producing stage ended: the run then ends in a StoppedError whose message is `how.stop`'s
 * reason (an Error's message, or a string) and what was saved. A `--out` that is the dataset, lies inside it or
 * holds it is a ConfigError (checkOutputApart).
 */
export async function trainJob(
  o: TrainRunValues,
  how: { names?: OptionNames; stop?: AbortSignal } = {},
): Promise<TrainOnStoreSummary> {
  let progress: TrainProgress | undefined;
  const stop = (signal: NodeJS.Signals) => {
    const line = `wildstream train: ${signal}: finishing the step and writing a checkpoint (a second signal exits at once)`;
    if (progress) progress.note(line);
    else process.stderr.write(`${line}\n`);
  };
  const signals = new StopSignals('train', stop);
  const signal = how.stop ? AbortSignal.any([signals.signal, how.stop]) : signals.signal;
  /** Why the run stopped when no process signal stopped it (`how.stop`'s reason). */
  const stoppedBy = () => {
    const reason: unknown = how.stop?.reason;
    return reason instanceof Error ? reason.message : typeof reason === 'string' ? reason : 'the run was stopped';
  };
  try {
    const dataset = { location: o.data, what: 'the dataset', owns: DATASET_FILES };
    await checkOutputApart('train', { key: 'out', location: o.out, owns: RUN_FILES }, [dataset], how.names);
    // The stores are read before training starts (records for the settings, the checkpoint's settings): a
    // stalled read there must not outlast a stop either.
    const startup = async () => {
      const [data, out] = [await openStore(o.data, storeOptionsOf(o)), await openStore(o.out, storeOptionsOf(o))];
      return {
        data,
        out,
        ...(await resolveTrainConfig(
          o,
          { crops: o.crops, cropCount: cropCount(o.crops), jitterStrength: o.jitterStrength, blur: o.blur },
          data,
          out,
          how.names,
        )),
      };
    };
    const { data, out, config, auto } = await abortable(startup(), signal).catch((err: unknown) => {
      if (!isAbort(err, signal)) throw err;
      if (!signals.stoppedBy) throw new StoppedError(`train stopped before training started (${stoppedBy()})`);
      throw new InterruptedError(
        `stopped by ${signals.stoppedBy} before training started; nothing was changed`,
        signals.exitCode,
      );
    });
    progress = trainProgress();
    if (auto) progress.log(auto);
    const summary = await trainOnStore({
      data,
      out,
      config,
      backend: o.backend,
      resume: o.resume,
      follow: o.follow,
      checkpointEvery: o.checkpointEvery,
      keep: o.keep,
      logEvery: o.logEvery,
      threads: o.threads,
      trainThreads: o.trainThreads,
      precision: o.precision,
      names: how.names,
      signal,
      log: progress.log,
      onStep: progress.step,
    }).finally(() => progress?.stop());
    process.stdout.write(`${JSON.stringify({ event: 'train_done', ...summary })}\n`);
    if (summary.stopped === 'signal') {
      // Before its first step the run may not have read its checkpoints yet: it names none it did not resume.
      const where =
        summary.step > summary.startStep
          ? `at step ${summary.step}; ${summary.checkpoint} written`
          : `before its first step; no checkpoint was written${summary.resumedFrom ? ` (${summary.resumedFrom} is kept)` : ''}`;
      if (!signals.stoppedBy) throw new StoppedError(`train stopped ${where} (${stoppedBy()})`);
      throw new InterruptedError(`stopped by ${signals.stoppedBy} ${where}; rerun to resume`, signals.exitCode);
    }
    return summary;
  } finally {
    signals.finish();
  }
}

/** A run stopped by `how.stop` (its producing stage ended), not by a process signal; what was saved is kept. */
export class StoppedError extends WildstreamError {
  override readonly code = 'WS_ERR_STOPPED';
}
