/**
 * A run's TrainConfig from its parsed options: the horizon from --steps or --epochs, and the SwAV settings
 * left out chosen for the dataset and run (auto-config.ts), or on a resume taken from the checkpoint.
 */
import { ConfigError } from '../errors.js';
import { FLAG_NAMES, type OptionNames } from '../options/declare.js';
import { listUnits } from '../shards/dataset.js';
import type { Store } from '../shards/store.js';
import { autoConfig, checkpointSettings, fromCheckpoint, type SwavSettings } from './auto-config.js';
import { defaultTrainConfig, type TrainConfig } from './config.js';
import { DEFAULT_STEPS, MAX_STEPS, type TrainValues } from './options.js';
import { DEFAULT_SWAV } from './swav.js';

/** The augmentation settings a run records in its config (declared in augment/options.ts). */
export interface RunAugment {
  crops: string;
  /** Crops per image in `crops` (the caller parsed the spec). */
  cropCount: number;
  jitterStrength: number;
  blur: number;
}

export interface ResolvedConfig {
  config: TrainConfig;
  /** The `auto: ...` line saying what was chosen and why; null when the user set everything. */
  auto: string | null;
}

/**
 * Reads the dataset's committed records (and on a resume the checkpoint's settings) to complete the config.
 * `names` names the options in its errors and `auto:` line (the command's flags by default).
 */
export async function resolveTrainConfig(
  o: Omit<TrainValues, 'data' | 'out'>,
  aug: RunAugment,
  data: Store,
  out: Store,
  names: OptionNames = FLAG_NAMES,
): Promise<ResolvedConfig> {
  if (aug.cropCount < 2)
    throw new ConfigError(
      `${names.set('crops', aug.crops)} gives ${aug.cropCount} crop per image; SwAV needs at least two (it predicts each crop's code from another's)`,
    );
  if (o.steps !== undefined && o.epochs !== undefined)
    throw new ConfigError(`set ${names.of('steps')} or ${names.of('epochs')}, not both`);
  if (o.queueLength % o.batch !== 0)
    throw new ConfigError(
      `${names.set('queueLength', o.queueLength)} must be a multiple of ${names.of('batch')} (${o.batch}): the queue holds whole batches`,
    );
  if (o.queueStart > 0 && o.queueLength === 0)
    throw new ConfigError(
      `${names.set('queueStart', o.queueStart)} needs a queue, and ${names.of('queueLength')} is 0 (no queue): set it to a multiple of ${names.of('batch')}, or leave out ${names.of('queueStart')}`,
    );
  const records = (await listUnits(data)).reduce((n, u) => n + u.records, 0);
  const steps = o.steps ?? (o.epochs ? stepsFor(data, records, o.epochs, o.batch, names) : DEFAULT_STEPS);
  const user: SwavSettings = {
    prototypes: o.prototypes,
    epsilon: o.epsilon,
    freezePrototypes: o.freezePrototypes,
    lr: o.lr,
    finalLr: o.finalLr,
  };
  const saved = o.resume ? await checkpointSettings(out) : null;
  const s = saved
    ? fromCheckpoint(user, saved)
    : autoConfig(user, { records, steps, batchSize: o.batch, queueLength: o.queueLength, larsAll: o.larsAll }, names);
  const config = defaultTrainConfig({
    model: o.model,
    batchSize: o.batch,
    crops: aug.crops,
    jitterStrength: aug.jitterStrength,
    blurP: aug.blur,
    seed: o.seed,
    steps,
    swav: {
      ...DEFAULT_SWAV,
      prototypes: s.prototypes,
      hidden: o.hidden,
      dim: o.dim,
      epsilon: s.epsilon,
      temperature: o.temperature,
      freezePrototypesSteps: s.freezePrototypes,
      cropsForAssign: aug.cropCount >= 2 ? [0, 1] : [0],
    },
    queue: { length: o.queueLength, startStep: o.queueStart },
    lars: {
      ...defaultTrainConfig().lars,
      weightDecay: o.weightDecay,
      trust: o.larsTrust,
      excludeBnBias: !o.larsAll,
      clip: o.larsClip,
    },
    schedule: { baseLr: s.lr, finalLr: s.finalLr, warmupSteps: o.warmupSteps, startWarmupLr: 0 },
    recompute: o.recompute,
  });
  return { config, auto: s.line };
}

/**
 * Steps for `epochs` passes: ceil(records x epochs / batch) over the committed records, as VISSL and
 * mosaicml-streaming count an epoch from the dataset's length. Records the loader skips (undecodable) count
 * too: the stream then wraps into the next epoch a little sooner than the step count implies.
 */
function stepsFor(data: Store, records: number, epochs: number, batch: number, names: OptionNames): number {
  if (records === 0)
    throw new ConfigError(
      `${names.of('epochs')} needs committed records in ${data.url}; it has none (use ${names.of('steps')} with ${names.of('follow')})`,
    );
  const steps = Math.max(1, Math.ceil((records * epochs) / batch));
  if (steps > MAX_STEPS)
    throw new ConfigError(
      `${names.set('epochs', epochs)} over ${records} records at ${names.of('batch')} ${batch} is ${steps} steps, more than the ${MAX_STEPS} a run can have: use fewer ${names.of('epochs')}`,
    );
  return steps;
}
