/**
 * SwAV settings chosen from the dataset and the run when the user leaves them out. SwAV's published values
 * (3000 prototypes, epsilon 0.05, prototypes frozen for 313 steps, lr 0.6 x batch/256 decayed by a cosine)
 * are tuned for ImageNet-sized runs; on a few thousand images and a few hundred steps they leave the loss on
 * the ln K plateau (in PyTorch too: bench/RESULTS.md, "Learning"). Each rule below keeps what SwAV's configs
 * have in common and takes its small-scale value from what was measured to learn here.
 *
 * - Prototypes: SwAV's configs always give Sinkhorn at least as many samples as prototypes (4096 per step at
 *   batch 4096, or batch 256 + a queue of 3840, for K = 3000), since the codes split those samples equally
 *   among the prototypes; its ablation finds more prototypes harmless. So K = batch + queue, at most 3000 and
 *   at most the number of images. Measured here: K = 32 at batch 32 learned on 512 images (the learning
 *   test) and on the demo's 121 (k-NN 0.39 vs 0.29 at init), K = 8 on the demo did not (0.31 vs 0.29).
 * - Epsilon: SwAV uses 0.05 at batch 4096 and 0.03 at batch 256; at batch 32 only 0.02 left the plateau here
 *   (0.05 and 0.03 stayed at ln K in both implementations).
 * - Freeze period: SwAV freezes the prototypes for the first epoch (313 steps = 1.28 M images / 4096; 5005 at
 *   batch 256); a short run freezes at most 10 % of its steps, so the prototypes learn for most of it.
 * - Learning rate: SwAV's 0.6 x batch/256 (0.075 at batch 32, which collapsed here); with LARS on every
 *   parameter (SwAV's LARC) and a batch of at most 64, 2: at batch 32 on the pattern images 0.5 learned by
 *   step 700-900 (both implementations), 2 by step 250-450 (two seeds, two crop sets), 4 stayed at ln K.
 *   Larger batches keep SwAV's rule, with 0.5 as the floor (nothing larger was measured here). A run
 *   of at most 2000 steps keeps it constant: the features arrive in a jump late in a short run, which a
 *   cosine decay reaches with too small a rate (bench/RESULTS.md, "Learning").
 *
 * The functions are pure: the same dataset size and run give the same choice, and a resumed run takes the
 * values of its checkpoint instead (`fromCheckpoint`), so more committed units never change a run midway.
 */
import { FLAG_NAMES, type OptionNames } from '../options/declare.js';
import type { Store } from '../shards/store.js';
import { InvalidCheckpointError, listCheckpoints, readCheckpointHeader } from './checkpoint.js';

export interface RunShape {
  /** Records committed before the first step; null when unknown (following a dataset still empty). */
  records: number | null;
  steps: number;
  batchSize: number;
  /** SwAV queue per assignment crop (0: none). @default 0 */
  queueLength?: number;
  /** LARS scales BatchNorm parameters and biases too (`--lars-all`). @default false */
  larsAll?: boolean;
}

/** The settings auto-configuration fills in; absent ones are chosen. */
export interface SwavSettings {
  prototypes?: number;
  epsilon?: number;
  freezePrototypes?: number;
  lr?: number;
  finalLr?: number;
}

/** The settings in the order the `auto:` line names them. */
const SETTINGS = ['prototypes', 'epsilon', 'freezePrototypes', 'lr', 'finalLr'] as const satisfies ReadonlyArray<
  keyof SwavSettings
>;

export interface Choice<T> {
  value: T;
  /** Why, in words, for the `auto:` line. */
  why: string;
}

/** At most this many steps keep the learning rate constant (the longest runs measured here were 900-1200). */
export const CONSTANT_LR_MAX_STEPS = 2000;
const MAX_PROTOTYPES = 3000;

/** The images a choice is sized for: the committed records, or the run's images when none are known yet. */
function imagesOf(s: RunShape): { n: number; what: string } {
  if (s.records && s.records > 0) return { n: s.records, what: `${s.records} images` };
  const n = s.steps * s.batchSize;
  return { n, what: `${n} images seen by the run (no records committed yet)` };
}

export function autoPrototypes(s: RunShape): Choice<number> {
  const pool = s.batchSize + (s.queueLength ?? 0);
  const records = s.records && s.records > 0 ? s.records : Infinity;
  const value = Math.max(2, Math.min(pool, MAX_PROTOTYPES, records));
  if (value === MAX_PROTOTYPES) return { value, why: `SwAV's value; Sinkhorn has ${pool} samples per step` };
  if (value > Math.min(pool, records)) return { value, why: 'the fewest a swapped prediction can tell apart' };
  if (value === records) return { value, why: `one per image of ${records}` };
  return { value, why: `as many as the ${pool} samples Sinkhorn splits among them per step` };
}

export function autoEpsilon(s: RunShape): Choice<number> {
  if (s.batchSize >= 1024) return { value: 0.05, why: `SwAV's value at large batches (batch ${s.batchSize})` };
  if (s.batchSize >= 256) return { value: 0.03, why: `SwAV's value at batch 256 (batch ${s.batchSize})` };
  return { value: 0.02, why: `sharper codes than SwAV's 0.05 at batch ${s.batchSize}` };
}

export function autoFreeze(s: RunShape): Choice<number> {
  const { n, what } = imagesOf(s);
  const epoch = Math.ceil(n / s.batchSize);
  const cap = Math.floor(0.1 * s.steps);
  if (epoch <= cap) return { value: epoch, why: `one epoch of ${what}, as SwAV` };
  return { value: cap, why: `10 % of ${s.steps} steps` };
}

/** Batches up to this size take SMALL_BATCH_LR with LARS on every parameter (measured at 32). */
export const SMALL_BATCH = 64;
const SMALL_BATCH_LR = 2;

export function autoLr(s: RunShape): Choice<number> {
  const linear = 0.6 * (s.batchSize / 256);
  const collapses = `SwAV's 0.6 x batch/256 = ${fmt(linear)} collapses small runs`;
  if (s.larsAll && s.batchSize <= SMALL_BATCH)
    return { value: SMALL_BATCH_LR, why: `LARS on every parameter at batch ${s.batchSize}; ${collapses}` };
  if (s.larsAll && linear < 0.5) return { value: 0.5, why: `LARS on every parameter; ${collapses}` };
  return { value: linear, why: `SwAV's 0.6 x batch/256` };
}

export function autoFinalLr(s: RunShape, lr: number): Choice<number> {
  if (s.steps <= CONSTANT_LR_MAX_STEPS) return { value: lr, why: `constant over a run of ${s.steps} steps` };
  return { value: lr / 1000, why: `cosine to lr/1000 over ${s.steps} steps, as SwAV` };
}

export interface AutoConfig {
  prototypes: number;
  epsilon: number;
  freezePrototypes: number;
  lr: number;
  finalLr: number;
  /** The `auto: ...` line naming each value chosen here and why; null when the user set them all. */
  line: string | null;
}

/** The user's settings, with every absent one chosen for `shape`. Given settings are never changed. */
export function autoConfig(user: SwavSettings, shape: RunShape, names: OptionNames = FLAG_NAMES): AutoConfig {
  const parts: string[] = [];
  const pick = <T>(given: T | undefined, choose: () => Choice<T>, say: (v: T) => string): T => {
    if (given !== undefined) return given;
    const c = choose();
    parts.push(`${say(c.value)} (${c.why})`);
    return c.value;
  };
  const prototypes = pick(
    user.prototypes,
    () => autoPrototypes(shape),
    (v) => `${v} prototypes`,
  );
  const epsilon = pick(
    user.epsilon,
    () => autoEpsilon(shape),
    (v) => `epsilon ${v}`,
  );
  const freezePrototypes = pick(
    user.freezePrototypes,
    () => autoFreeze(shape),
    (v) => `prototypes frozen ${v} steps`,
  );
  const lr = pick(
    user.lr,
    () => autoLr(shape),
    (v) => `lr ${fmt(v)}`,
  );
  const finalLr = pick(
    user.finalLr,
    () => autoFinalLr(shape, lr),
    (v) => `final lr ${fmt(v)}`,
  );
  const line =
    parts.length === 0
      ? null
      : `auto: ${parts.join(', ')}; set ${SETTINGS.slice(0, -1)
          .map((k) => names.of(k))
          .join(', ')} or ${names.of('finalLr')} to choose otherwise`;
  return { prototypes, epsilon, freezePrototypes, lr, finalLr, line };
}

/** What a resumed run keeps: the checkpoint's values for the settings the user left out. */
export function fromCheckpoint(
  user: SwavSettings,
  saved: { prototypes: number; epsilon: number; freezePrototypes: number; lr: number; finalLr: number },
): AutoConfig {
  const kept = (Object.keys(saved) as Array<keyof typeof saved>).filter((k) => user[k] === undefined);
  const merged = { ...saved, ...Object.fromEntries(Object.entries(user).filter(([, v]) => v !== undefined)) };
  const line =
    kept.length === 0
      ? null
      : `auto: resuming with the checkpoint's ${kept.map((k) => `${NAMES[k]} ${fmt(saved[k])}`).join(', ')}`;
  return { ...merged, line };
}

const NAMES: Record<keyof SwavSettings, string> = {
  prototypes: 'prototypes',
  epsilon: 'epsilon',
  freezePrototypes: 'freeze',
  lr: 'lr',
  finalLr: 'final lr',
};

const fmt = (x: number) => Number(x.toPrecision(3)).toString();

export type SavedSettings = Required<SwavSettings>;

/**
 * The settings of the newest checkpoint in `out` whose header reads, or null when there is none. Only the
 * header is read and validated (readCheckpointHeader); the resume itself verifies the whole file and says
 * what is wrong with a damaged one.
 */
export async function checkpointSettings(out: Store): Promise<SavedSettings | null> {
  for (const { key } of await listCheckpoints(out)) {
    try {
      const { swav, schedule } = (await readCheckpointHeader(out, key)).config;
      return {
        prototypes: swav.prototypes,
        epsilon: swav.epsilon,
        freezePrototypes: swav.freezePrototypesSteps,
        lr: schedule.baseLr,
        finalLr: schedule.finalLr,
      };
    } catch (err) {
      if (!(err instanceof InvalidCheckpointError)) throw err;
      // damaged: the resume names it and falls back to an older checkpoint, as this does
    }
  }
  return null;
}
