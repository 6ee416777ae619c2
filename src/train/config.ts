/**
 * A training run's configuration: validated once at the boundary, stored in every checkpoint, and compared
 * on resume. Fields that change what a checkpoint means (model, head, crops, seed, batch) must match; the
 * horizon, schedule and intervals may change between runs (extending a run is common).
 */
import { z } from 'zod';
import type { AugmentConfig } from '../augment/config.js';
import { colourJitter, cropCount, cropGroups, SWAV_BLUR_P, SWAV_CROPS, SWAV_JITTER_STRENGTH } from '../crops.js';
import { defined } from '../defaults.js';
import { checkOptionsObject, ConfigError, refuseUnknownKeys } from '../errors.js';
import { FLAG_NAMES, type OptionNames } from '../options/declare.js';
import { RECOMPUTE_MODES, type RecomputeMode } from './memory.js';
import { DEFAULT_LARS, type LarsConfig, type ScheduleConfig } from './optim.js';
import { DEFAULT_STEPS, MAX_STEPS, TRAIN_OPTIONS } from './options.js';
import { regnetParams, regnetSpec } from './regnet-spec.js';
import { DEFAULT_SWAV, type SwavConfig } from './swav.js';

export interface QueueConfig {
  /** Embeddings kept per assignment crop (0: no queue). SwAV uses 3840 for batches of 256 or less. */
  length: number;
  /** First step at which the queue joins the Sinkhorn assignment (it must also be full). */
  startStep: number;
}

export interface TrainConfig {
  model: string;
  batchSize: number;
  /** Total steps: the schedule's horizon and where training stops. */
  steps: number;
  crops: string;
  /** Colour distortion strength s (SimCLR): jitter 0.8s brightness/contrast/saturation, 0.2s hue. SwAV: 1. */
  jitterStrength: number;
  /** Gaussian blur probability (SwAV 0.5; small crops such as CIFAR's 32 px usually turn it off). */
  blurP: number;
  seed: number;
  swav: SwavConfig;
  queue: QueueConfig;
  lars: LarsConfig;
  schedule: Omit<ScheduleConfig, 'totalSteps'>;
  /**
   * Activation recomputation per RegNet stage: `on` keeps only each stage's input for the backward pass and
   * runs the stage again there (one more forward pass per step, a fraction of the memory); `auto` turns it on
   * when the memory estimate without it exceeds the backend's budget (the 4 GiB wasm heap). Absent in
   * checkpoints written before it existed: read as `auto`.
   * @default 'auto'
   */
  recompute?: RecomputeMode;
}

const num = z.number();

/**
 * The shape of a TrainConfig: the fields code reads, each of its type (checkTrainConfig then checks their
 * values). Loose: a checkpoint of a newer version may hold fields this one does not read.
 */
export const TRAIN_CONFIG_SHAPE = z.looseObject({
  model: z.string(),
  batchSize: num,
  steps: num,
  crops: z.string(),
  jitterStrength: num,
  blurP: num,
  seed: num,
  swav: z.looseObject({
    hidden: num,
    dim: num,
    prototypes: num,
    temperature: num,
    epsilon: num,
    sinkhornIters: num,
    cropsForAssign: z.array(num),
    freezePrototypesSteps: num,
  }),
  queue: z.looseObject({ length: num, startStep: num }),
  lars: z.looseObject({
    momentum: num,
    weightDecay: num,
    trust: num,
    excludeBnBias: z.boolean(),
    clip: z.boolean().optional(),
  }),
  schedule: z.looseObject({ baseLr: num, finalLr: num, warmupSteps: num, startWarmupLr: num }),
});

/** TrainConfig's fields, what defaultTrainConfig takes overrides of. */
const CONFIG_KEYS: readonly string[] = [...Object.keys(TRAIN_CONFIG_SHAPE.shape), 'recompute'];

/**
 * SwAV's small-batch recipe scaled to a config: lr 0.6 at batch 256, linear scaling, final lr 0.0006x.
 * Throws a ConfigError for an override that is no TrainConfig field (`bacth`) or a value out of range.
 */
export function defaultTrainConfig(overrides: Partial<TrainConfig> = {}): TrainConfig {
  checkOptionsObject(overrides, 'defaultTrainConfig overrides');
  refuseUnknownKeys(overrides, CONFIG_KEYS, 'train config field');
  const t = TRAIN_OPTIONS; // the defaults a command or pipeline gets
  const batchSize = overrides.batchSize ?? t.batch.default!;
  const baseLr = 0.6 * (batchSize / 256);
  return checkTrainConfig({
    model: t.model.default!,
    batchSize,
    steps: DEFAULT_STEPS,
    crops: SWAV_CROPS,
    jitterStrength: SWAV_JITTER_STRENGTH,
    blurP: SWAV_BLUR_P,
    seed: t.seed.default!,
    swav: DEFAULT_SWAV,
    queue: { length: t.queueLength.default!, startStep: t.queueStart.default! },
    lars: DEFAULT_LARS,
    schedule: { baseLr, finalLr: baseLr * 0.001, warmupSteps: t.warmupSteps.default!, startWarmupLr: 0 },
    recompute: t.recompute.default!,
    ...defined(overrides),
  });
}

/** The augmentation a config asks for. */
export function augmentOf(c: TrainConfig): Partial<AugmentConfig> {
  return { crops: cropGroups(c.crops), ...colourJitter(c.jitterStrength), blurP: c.blurP };
}

/**
 * Checks a config's shape and values (a config from JavaScript may be anything); returns it. Throws a
 * ConfigError naming the first field at fault.
 */
export function checkTrainConfig(c: TrainConfig): TrainConfig {
  const shape = TRAIN_CONFIG_SHAPE.safeParse(c);
  if (!shape.success) {
    const issue = shape.error.issues[0]!;
    const field = ['config', ...issue.path.map(String)].join('.');
    throw new ConfigError(
      `${field}: ${issue.message}; build a config with defaultTrainConfig({ ...the fields to change }), which fills in the rest`,
    );
  }
  const int = (name: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER) => {
    if (!Number.isSafeInteger(v) || v < min || v > max)
      throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${v}`);
  };
  const pos = (name: string, v: number, min = 0) => {
    if (!(typeof v === 'number' && Number.isFinite(v) && v >= min))
      throw new ConfigError(`${name} must be a number >= ${min}, got ${v}`);
  };
  regnetSpec(c.model); // throws on an unknown model
  int('batch size', c.batchSize, 1, 65536);
  int('steps', c.steps, 1, MAX_STEPS);
  int('seed', c.seed, 0, 2 ** 32 - 1);
  const crops = cropCount(c.crops);
  if (crops < 2) throw new ConfigError('SwAV needs at least two crops per image');
  if (!(c.blurP >= 0 && c.blurP <= 1)) throw new ConfigError(`blur probability must be in [0, 1], got ${c.blurP}`);
  if (c.recompute !== undefined && !RECOMPUTE_MODES.includes(c.recompute))
    throw new ConfigError(`recompute must be one of ${RECOMPUTE_MODES.join(', ')}, got ${JSON.stringify(c.recompute)}`);
  if (!(c.jitterStrength >= 0 && c.jitterStrength <= 2.5))
    throw new ConfigError(`jitter strength must be in [0, 2.5], got ${c.jitterStrength}`);
  const { swav, queue, lars, schedule } = c;
  int('swav.hidden', swav.hidden, 1, 65536);
  int('swav.dim', swav.dim, 1, 65536);
  int('swav.prototypes', swav.prototypes, 2, 1_000_000);
  pos('swav.temperature', swav.temperature, 1e-6);
  pos('swav.epsilon', swav.epsilon, 1e-6);
  int('swav.sinkhornIters', swav.sinkhornIters, 1, 100);
  int('swav.freezePrototypesSteps', swav.freezePrototypesSteps, 0);
  if (
    swav.cropsForAssign.length === 0 ||
    swav.cropsForAssign.some((i) => !Number.isInteger(i) || i < 0 || i >= crops)
  ) {
    throw new ConfigError(
      `swav.cropsForAssign must name crops 0..${crops - 1}, got ${JSON.stringify(swav.cropsForAssign)}`,
    );
  }
  int('queue.length', queue.length, 0, 1_000_000);
  if (queue.length > 0 && queue.length % c.batchSize !== 0)
    throw new ConfigError(`queue.length (${queue.length}) must be a multiple of the batch size (${c.batchSize})`);
  int('queue.startStep', queue.startStep, 0);
  if (queue.length === 0 && queue.startStep > 0)
    throw new ConfigError(`queue.startStep (${queue.startStep}) needs a queue, and queue.length is 0 (no queue)`);
  pos('lars.momentum', lars.momentum);
  pos('lars.weightDecay', lars.weightDecay);
  pos('lars.trust', lars.trust, 1e-9);
  pos('schedule.baseLr', schedule.baseLr);
  pos('schedule.finalLr', schedule.finalLr);
  pos('schedule.startWarmupLr', schedule.startWarmupLr);
  int('schedule.warmupSteps', schedule.warmupSteps, 0);
  return c;
}

/**
 * The option that sets each identity field. SwAV's fields are compared one by one so a refusal names the
 * option (`--epsilon 0.02`), not the whole head as JSON; those without an option (the Sinkhorn iterations, the
 * assignment crops, which follow --crops) are named as they are.
 */
const OPTION_OF: Record<string, string> = {
  model: 'model',
  batchSize: 'batch',
  crops: 'crops',
  seed: 'seed',
  'queue.length': 'queueLength',
  'swav.hidden': 'hidden',
  'swav.dim': 'dim',
  'swav.prototypes': 'prototypes',
  'swav.temperature': 'temperature',
  'swav.epsilon': 'epsilon',
  'swav.freezePrototypesSteps': 'freezePrototypes',
};

/**
 * The fields a resumed run must share with its checkpoint, each as [canonical form, as written]: the model and
 * crops are compared parsed (`custom:4,16,8,2,16` is `custom:4,16,8,2,16,0.25`; `2x32, 4x16` is
 * `2x32@0.08-1,4x16@0.08-1`), and named as the person wrote them.
 */
function identity(c: TrainConfig, swavFields: string[]): Record<string, [unknown, unknown]> {
  const swav = c.swav as unknown as Record<string, unknown>;
  return {
    model: [regnetParams(c.model), c.model],
    batchSize: [c.batchSize, c.batchSize],
    crops: [cropGroups(c.crops), c.crops],
    seed: [c.seed, c.seed],
    ...Object.fromEntries(swavFields.map((k) => [`swav.${k}`, [swav[k], swav[k]]])),
    'queue.length': [c.queue.length, c.queue.length],
  };
}

/** Throws, naming the first differing field, when `wanted` cannot continue from a checkpoint of `saved`. */
export function checkCompatible(
  saved: TrainConfig,
  wanted: TrainConfig,
  where: string,
  names: OptionNames = FLAG_NAMES,
): void {
  // Every SwAV field either side has, so one only a later (or earlier) version writes is compared too.
  const swavFields = [...new Set([...Object.keys(saved.swav), ...Object.keys(wanted.swav)])];
  const a = identity(saved, swavFields),
    b = identity(wanted, swavFields);
  for (const key of Object.keys(a)) {
    if (JSON.stringify(a[key]![0]) !== JSON.stringify(b[key]![0])) {
      const [x, y] = [JSON.stringify(a[key]![1]), JSON.stringify(b[key]![1])];
      const option = OPTION_OF[key];
      throw new ConfigError(
        `${where} was trained with ${option ? names.set(option, x) : `${key}=${x}`}, this run asks for ${y}; use the same settings, ${names.set('resume', false)}, or another ${names.of('out')}`,
      );
    }
  }
}
