/**
 * Where a training run starts, and what it says before its first step.
 *
 * - A run resumes from the newest checkpoint that verifies; damaged newer ones are named and removed.
 * - When every checkpoint is damaged, the run is refused (naming each and its damage) rather than quietly
 *   started over on top of them; `--no-resume` is how a person asks for a fresh start.
 * - A fresh start never overwrites an earlier run's metrics: they move to `metrics/archive/<time>/`.
 * - The learning rate is a pure function of (step, --steps, schedule settings), as in VISSL and nanoGPT, so
 *   resuming with another --steps stretches or shortens the cosine from where the run is. That is what
 *   extending a run asks for, but the rate jumps; the run says by how much. (Lightning instead restores the
 *   scheduler's old horizon from the checkpoint, so the cosine ignores the new max_epochs.)
 */
import type { StreamCursor } from '../augment/stream.js';
import { FLAG_NAMES, type OptionNames } from '../options/declare.js';
import { listUnits } from '../shards/dataset.js';
import type { Store } from '../shards/store.js';
import {
  checkTensors,
  InvalidCheckpointError,
  latestCheckpoint,
  listCheckpoints,
  modelTensors,
  NewerCheckpointError,
  type Checkpoint,
  type DatasetIdentity,
} from './checkpoint.js';
import { everyDamaged } from './checkpoint-format.js';
import { checkCompatible, defaultTrainConfig, type TrainConfig } from './config.js';
import { ConfigError } from '../errors.js';
import { archiveMetrics, dropMetricsAfter } from './metrics.js';
import { SwavModel } from './model.js';
import { DEFAULT_LARS, learningRate } from './optim.js';

export interface ResumeOptions {
  /** The run's checkpoint store (checkpoints/, metrics/). */
  out: Store;
  config: TrainConfig;
  /** Continue from the newest checkpoint that verifies; false deletes the checkpoints there and archives the metrics. */
  resume: boolean;
  log: (line: string) => void;
  /** How its lines name the options a person can change. @default FLAG_NAMES, the command's flags */
  names?: OptionNames;
  /**
   * A stop: checked before each checkpoint is judged and before anything is deleted or archived, so a stopped
   * run changes nothing, and what it was judging with (the caller's model, disposed on the way out) never
   * makes a good checkpoint look damaged. Rejects with the signal's reason.
   */
  signal?: AbortSignal;
  /**
   * The model that will train (built from `config`): checkpoints must hold its tensors. Without it one is built
   * for the check and disposed, which needs a started backend and costs seconds of CPU for the default model.
   * @internal
   */
  model?: SwavModel;
  /**
   * The dataset this run reads: a checkpoint that records another is refused (its stream cursor belongs to that
   * dataset). A checkpoint without one (written before datasets were recorded) resumes as before.
   */
  dataset?: DatasetIdentity;
}

/** Where a run starts: what to restore, and where its batch source must be opened. */
export interface ResumePoint {
  step: number;
  /** Where the batch source opens: the checkpoint's cursor, or null to start the stream at its beginning. */
  cursor: StreamCursor | null;
  /** Key of the checkpoint restored, or null for a fresh start. */
  resumedFrom: string | null;
  /** The verified checkpoint to restore into the model before the first step; null for a fresh start. */
  checkpoint: Checkpoint | null;
}

/**
 * Where a run starts, resolved before its batch source opens: picks the newest checkpoint in `o.out` that
 * verifies and fits the config (or prepares a fresh start) and drops what lies beyond it. Throws a ConfigError
 * for a checkpoint of another run's settings, an InvalidCheckpointError when every checkpoint is damaged, a
 * NewerCheckpointError for a later format.
 */
export async function resolveResume(o: ResumeOptions): Promise<ResumePoint> {
  const damaged: InvalidCheckpointError[] = [];
  const model = o.model;
  let shapes = model;
  const fits = (c: Checkpoint) => {
    o.signal?.throwIfAborted();
    checkCompatible(c.header.config, o.config, `checkpoint ${c.key}`, o.names); // another run's settings: a ConfigError, not damage
    checkSameDataset(c, o.dataset, o.names);
    checkTensors(c, modelTensors((shapes ??= new SwavModel(o.config, { backend: 'none' })), c)); // shapes only: no memory plan
  };
  let ckpt: Checkpoint | null;
  try {
    ckpt = o.resume
      ? await latestCheckpoint(
          o.out,
          (err) => {
            o.signal?.throwIfAborted();
            damaged.push(err);
            o.log(`warning: ${err.message}; trying the previous checkpoint`);
          },
          fits,
        )
      : null;
  } finally {
    if (shapes !== model) shapes?.dispose();
  }
  o.signal?.throwIfAborted();
  refuseDamaged(o, damaged, ckpt);
  const n = o.names ?? FLAG_NAMES;
  const step = ckpt?.header.step ?? 0;
  if (ckpt) {
    if (damaged.length > 0)
      o.log(
        `resuming from ${ckpt.key}, the newest checkpoint that verifies; removing the damaged ${damaged.map((e) => e.key).join(', ')}`,
      );
    const change = scheduleChange(ckpt.header.config, o.config, step, n);
    if (change) o.log(change);
    const augment = augmentChange(ckpt.header.config, o.config, step, n);
    if (augment) o.log(augment);
    const lars = larsChange(ckpt.header.config, o.config, step, n);
    if (lars) o.log(lars);
    if (step >= o.config.steps)
      o.log(
        `${ckpt.key} is at step ${step}, already at or past ${n.of('steps')} ${o.config.steps}: nothing to train (raise ${n.of('steps')} to go on)`,
      );
  }
  const superseded = (await listCheckpoints(o.out)).filter((c) => c.step > step || !ckpt);
  for (const c of superseded) {
    o.signal?.throwIfAborted();
    await o.out.delete(c.key);
  }
  if (!o.resume && superseded.length > 0)
    o.log(
      `${n.set('resume', false)}: deleted ${superseded.length} checkpoint(s) of the earlier run (steps ${superseded.map((c) => c.step).join(', ')})`,
    );
  o.signal?.throwIfAborted();
  if (ckpt) {
    await dropMetricsAfter(o.out, step); // this run's own parts beyond the restored step: rewritten as it passes them
  } else {
    const archive = await archiveMetrics(o.out, new Date());
    if (archive) o.log(`starting at step 0: the earlier run's metrics are kept under ${archive}`);
  }
  return { step, cursor: ckpt?.header.cursor ?? null, resumedFrom: ckpt?.key ?? null, checkpoint: ckpt };
}

/**
 * Refuses a checkpoint of another dataset (as VISSL and mosaicml-streaming do: the stream cursor, its epoch,
 * offset and unit list, belongs to the dataset it was taken on). The same dataset is the same dataset.json
 * `id` when both have one (a moved or copied dataset keeps it; one made again at the same place gets another),
 * else the same location. A checkpoint that records no dataset, or a run given no identity, is not checked.
 */
export function checkSameDataset(
  c: Checkpoint,
  wanted: DatasetIdentity | undefined,
  names: OptionNames = FLAG_NAMES,
): void {
  const saved = c.header.dataset;
  if (!saved || !wanted) return;
  const same = saved.id !== undefined && wanted.id !== undefined ? saved.id === wanted.id : saved.url === wanted.url;
  if (same) return;
  const what = (d: DatasetIdentity) => `${d.url}${d.id ? ` (dataset id ${d.id})` : ''}`;
  throw new ConfigError(
    `checkpoint ${c.key} was trained on ${names.of('data')} ${what(saved)}, this run asks for ${what(wanted)}; ` +
      `its data stream's position belongs to that dataset: use the same ${names.of('data')}, ${names.set('resume', false)} to start over, or another ${names.of('out')}`,
  );
}

/**
 * The line that says a resumed run draws its crops with another colour-jitter strength or blur probability
 * than its checkpoint's (allowed, as the schedule's settings are: augmentation strength is often changed
 * mid-run), or null.
 */
export function augmentChange(
  saved: TrainConfig,
  wanted: TrainConfig,
  step: number,
  names: OptionNames = FLAG_NAMES,
): string | null {
  const changes = [
    changed(names, 'jitterStrength', saved.jitterStrength, wanted.jitterStrength),
    changed(names, 'blur', saved.blurP, wanted.blurP),
  ].filter((c) => c !== null);
  if (changes.length === 0) return null;
  return `resuming at step ${step} with ${changes.join(', ')}: the crops from step ${step} on are drawn with the new augmentation`;
}

/**
 * The line that says a resumed run updates the weights with other LARS settings than its checkpoint's
 * (allowed, as the schedule's are, but every step from here on differs from an uninterrupted run's), or null.
 */
export function larsChange(
  saved: TrainConfig,
  wanted: TrainConfig,
  step: number,
  names: OptionNames = FLAG_NAMES,
): string | null {
  const [a, b] = [saved.lars, wanted.lars];
  // Flags without a --no- form: said as on and off.
  const flag = (option: string, old: boolean, now: boolean) =>
    old === now ? null : now ? `${names.set(option, true)} (was off)` : `${names.of(option)} off (was on)`;
  const changes = [
    changed(names, 'weightDecay', a.weightDecay, b.weightDecay),
    changed(names, 'larsTrust', a.trust, b.trust),
    flag('larsAll', !a.excludeBnBias, !b.excludeBnBias),
    flag('larsClip', Boolean(a.clip), Boolean(b.clip)),
  ].filter((c) => c !== null);
  if (changes.length === 0) return null;
  return `resuming at step ${step} with ${changes.join(', ')}: the updates from step ${step} on follow the new optimiser settings`;
}

/** Refuses a resume past newer-format checkpoints, or when every checkpoint is damaged: nothing is changed. */
function refuseDamaged(o: ResumeOptions, damaged: InvalidCheckpointError[], ckpt: Checkpoint | null): void {
  const noResume = (o.names ?? FLAG_NAMES).set('resume', false);
  const newer = damaged.filter((e) => e instanceof NewerCheckpointError);
  if (newer.length > 0) {
    // Resuming from an older one would delete the newer-format checkpoints (or overwrite them on reaching their step).
    throw new NewerCheckpointError(
      `${newer.map((e) => e.message).join('; ')}. Nothing was changed: resume with that wildstream, ` +
        `or rerun with ${noResume} to start over (this deletes every checkpoint there; the metrics are archived)`,
      { key: newer[0]!.key, damage: newer[0]!.damage },
    );
  }
  if (o.resume && !ckpt && damaged.length > 0) {
    throw everyDamaged(
      o.out,
      damaged,
      `Nothing was changed: restore a good copy, or rerun with ${noResume} to start over (this deletes them; the metrics are archived)`,
    );
  }
}

const fmt = (x: number) => Number(x.toPrecision(3)).toString();

/** `--option new (was old)` for a real-valued setting a resume changes, or null where it does not. */
const changed = (names: OptionNames, option: string, old: number, now: number): string | null =>
  old === now ? null : `${names.set(option, fmt(now))} (was ${fmt(old)})`;

/**
 * The line that says how a resumed run's learning-rate schedule differs from its checkpoint's, or null; `names`
 * names the settings (the command's flags by default).
 */
export function scheduleChange(
  saved: TrainConfig,
  wanted: TrainConfig,
  step: number,
  names: OptionNames = FLAG_NAMES,
): string | null {
  const changes: string[] = [];
  if (saved.steps !== wanted.steps) changes.push(`${names.set('steps', wanted.steps)} (was ${saved.steps})`);
  const fields = [
    ['lr', 'baseLr'],
    ['finalLr', 'finalLr'],
    ['warmupSteps', 'warmupSteps'],
  ] as const;
  for (const [option, key] of fields) {
    const change = changed(names, option, saved.schedule[key], wanted.schedule[key]);
    if (change) changes.push(change);
  }
  if (changes.length === 0) return null;
  const lr = (c: TrainConfig) => learningRate(step, { ...c.schedule, totalSteps: c.steps });
  const [before, after] = [lr(saved), lr(wanted)];
  const shape =
    saved.steps === wanted.steps
      ? 'the schedule follows the new settings'
      : `the cosine schedule is ${wanted.steps > saved.steps ? 'stretched' : 'shortened'} to end at step ${wanted.steps} (the rate is a function of step and ${names.of('steps')})`;
  const jump =
    before === after
      ? `lr stays ${fmt(after)}`
      : `lr ${after > before ? 'jumps' : 'drops'} from ${fmt(before)} to ${fmt(after)}`;
  return `resuming at step ${step} with ${changes.join(', ')}: ${shape}; ${jump} at step ${step}`;
}

/**
 * A warning for each setting that places a step of the run at --steps or beyond (--warmup-steps,
 * --freeze-prototypes, --queue-start): steps count from 0, so that step never comes and the phase it ends or
 * starts runs past the end; no one asks for that on purpose (the run's length is every schedule's horizon). A
 * setting that does nothing anyway (a warmup from the base rate to itself, a queue start without a queue) is
 * left out. `names` names the settings (the flags by default); empty when every setting falls within the run.
 */
export function stepWarnings(config: TrainConfig, names: OptionNames = FLAG_NAMES): string[] {
  const { schedule, steps, swav, queue } = config;
  const last = fmt(learningRate(steps - 1, { ...schedule, totalSteps: steps }));
  const settings = [
    {
      option: 'warmupSteps',
      step: schedule.warmupSteps,
      applies: schedule.baseLr !== schedule.startWarmupLr,
      effect: `the rate climbs all run and never reaches ${names.of('lr')} ${fmt(schedule.baseLr)} (the last step trains at ${last})`,
    },
    {
      option: 'freezePrototypes',
      step: swav.freezePrototypesSteps,
      applies: true,
      effect: 'the prototypes stay frozen all run and never train',
    },
    {
      option: 'queueStart',
      step: queue.startStep,
      applies: queue.length > 0,
      effect: `the queue is filled all run but never joins the assignment (${names.set('queueLength', queue.length)} costs memory for nothing)`,
    },
  ];
  const warnings = settings
    .filter((s) => s.applies && s.step >= steps)
    .map(
      (s) =>
        `warning: ${names.set(s.option, s.step)} is not shorter than ${names.of('steps')} ${steps}: ${s.effect}; ` +
        `lower ${names.of(s.option)} or raise ${names.of('steps')}`,
    );
  // The queue joins once full (SwavModel.queuedScores): each step pushes a batch, so a long queue may fill too late.
  const fills = Math.ceil(queue.length / config.batchSize);
  if (queue.length > 0 && queue.startStep < steps && fills >= steps)
    warnings.push(
      `warning: ${names.set('queueLength', queue.length)} fills after ${fills} steps of ${names.of('batch')} ` +
        `${config.batchSize}, not fewer than ${names.of('steps')} ${steps}: the queue never joins the assignment; ` +
        `lower ${names.of('queueLength')} or raise ${names.of('steps')}`,
    );
  return warnings;
}

/**
 * A warning when a batch holds more images than the dataset: the stream then runs into the next epoch within
 * one batch, so every batch repeats images. Null otherwise (also for an empty dataset, which is not this case).
 */
export async function batchWarning(
  data: Store,
  config: TrainConfig,
  follow: boolean,
  names: OptionNames = FLAG_NAMES,
): Promise<string | null> {
  const records = (await listUnits(data)).reduce((n, u) => n + u.records, 0);
  if (records === 0 || config.batchSize <= records) return null;
  const [fewest, most] = [Math.floor(config.batchSize / records), Math.ceil(config.batchSize / records)];
  return (
    `warning: ${names.of('batch')} ${config.batchSize} is larger than the ${records} committed record(s) in ${data.url}` +
    `${follow ? ' (so far)' : ''}: each batch holds every image ${fewest === most ? most : `${fewest} or ${most}`} times ` +
    `(as different crops); use ${names.set('batch', records)} or less, or more data`
  );
}

/** The newest checkpoint known to hold finite state, and whether the run that diverged wrote it. */
export interface LastGood {
  step: number;
  key: string | null;
  writtenByThisRun: boolean;
}

/**
 * What to do after a run diverged, with a learning rate to rerun at (the recipe's rate when this one was
 * above it, else a tenth). A checkpoint the diverging run wrote itself may already carry the blow-up (a
 * rate 1e6 takes BatchNorm variances from 1e15 to infinity in two steps; resuming from such a state at a sane
 * rate diverges again), so that case starts over; a checkpoint from before the run is resumed from. `names`
 * names the settings (the command's flags by default).
 */
export function divergenceAdvice(config: TrainConfig, last: LastGood, names: OptionNames = FLAG_NAMES): string {
  const recipe = defaultTrainConfig({ batchSize: config.batchSize }).schedule.baseLr;
  const lower = roundDown(config.schedule.baseLr > recipe ? recipe : config.schedule.baseLr / 10);
  const rate =
    outlier(config, names) ?? `${names.set('lr', lower)} or lower (this run: base lr ${fmt(config.schedule.baseLr)})`;
  if (!last.key) return `there is no finite checkpoint to resume from; rerun with ${rate}`;
  if (!last.writtenByThisRun)
    return `the last finite checkpoint, ${last.key} (step ${last.step}), predates this run and is kept: rerun with ${rate} to resume from it`;
  return (
    `the last finite checkpoint, ${last.key} (step ${last.step}), is kept, but this run wrote it on its way to diverging: ` +
    `rerun with ${names.set('resume', false)} ${rate} to start over`
  );
}

/**
 * A setting far outside SwAV's range that scales every update as the rate does: lowering --lr would not help
 * while it stays (weight decay 1e30 diverges at any rate). Bounds: 10^4 x the defaults, a final rate above the
 * base rate.
 */
function outlier(config: TrainConfig, names: OptionNames): string | null {
  const { lars, schedule } = config;
  if (lars.weightDecay > 1e4 * DEFAULT_LARS.weightDecay)
    return `${names.set('weightDecay', DEFAULT_LARS.weightDecay)} (this run: ${fmt(lars.weightDecay)})`;
  if (lars.trust > 1e4 * DEFAULT_LARS.trust)
    return `${names.set('larsTrust', DEFAULT_LARS.trust)} (this run: ${fmt(lars.trust)})`;
  if (schedule.finalLr > schedule.baseLr)
    return `${names.set('finalLr', fmt(schedule.baseLr * 0.001))} or at most ${names.of('lr')} (this run: final lr ${fmt(schedule.finalLr)} above base lr ${fmt(schedule.baseLr)})`;
  return null;
}

/** Two significant digits, rounded down (advice to lower a rate must not round it up). */
function roundDown(x: number): number {
  const unit = 10 ** (Math.floor(Math.log10(x)) - 1);
  return Number((Math.floor(x / unit) * unit).toPrecision(2));
}
