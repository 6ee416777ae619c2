/**
 * The options of `train`, `export` and `plot`, declared once: flags, pipeline keys and types derive from these.
 * Settings left unset where the description says "chosen" are picked for the dataset and run (auto-config.ts).
 * The augmentation options `train` also takes (crops, jitter strength, blur) are augment's (augment/options.ts).
 */
import { choice, flag, int, negatable, num, text, type OptionValues } from '../options/declare.js';
import { BACKENDS } from './backend.js';
import { RECOMPUTE_MODES } from './memory.js';
import { PRECISIONS } from './webgpu/precision.js';
import { DEFAULT_LARS } from './optim.js';
import { regnetSpec } from './regnet-spec.js';
import { DEFAULT_SWAV } from './swav.js';

const STORE_URL = 'a path, file:///abs/path or s3://bucket/prefix';

/** Steps when neither --steps nor --epochs is given. */
export const DEFAULT_STEPS = 10_000;

/**
 * The most steps a run may have: checkpoint and metrics names hold the step in 9 digits
 * (`step-000000500.ckpt`), and a step past them would name a file the resume never finds.
 */
export const MAX_STEPS = 999_999_999;

const checkModel = (name: string): string => {
  regnetSpec(name); // throws, naming the known models, on an unknown one
  return name;
};

export const BACKEND_OPTION = choice(BACKENDS, { default: 'auto', placeholder: 'name', description: 'tfjs backend' });

/** `train`'s own options: what to train, how, and where the checkpoints go. */
export const TRAIN_OPTIONS = {
  data: text({ required: true, minLength: 1, placeholder: 'store', description: `dataset location: ${STORE_URL}` }),
  out: text({
    required: true,
    minLength: 1,
    placeholder: 'store',
    description: 'checkpoint store (checkpoints/, metrics/)',
  }),
  model: text({
    default: 'regnety_400mf',
    placeholder: 'name',
    description: 'regnetx_200mf..regnety_256gf, or custom:depth,w0,wa,wm,groupWidth[,se]',
    check: checkModel,
  }),
  batch: int({ min: 1, max: 65536, default: 64, description: 'images per step' }),
  steps: int({
    min: 1,
    max: MAX_STEPS,
    description: 'total optimisation steps',
    defaultText: `${DEFAULT_STEPS}, or from --epochs`,
  }),
  epochs: int({ min: 1, description: 'passes over the committed records (sets --steps)' }),
  backend: BACKEND_OPTION,
  seed: int({ min: 0, max: 2 ** 32 - 1, default: 0, description: 'initialisation, order and augmentation seed' }),
  lr: num({ min: 0, description: 'base learning rate', defaultText: 'chosen from batch and LARS, printed as auto:' }),
  finalLr: num({
    min: 0,
    description: 'learning rate at the end of the cosine',
    defaultText: 'lr for runs of up to 2000 steps, else lr/1000',
  }),
  warmupSteps: int({ min: 0, default: 0, description: 'linear warmup steps' }),
  prototypes: int({
    min: 2,
    max: 1_000_000,
    description: 'SwAV prototypes',
    defaultText: 'chosen from the dataset size and batch, printed as auto:',
  }),
  hidden: int({ min: 1, max: 65536, default: DEFAULT_SWAV.hidden, description: 'projection MLP hidden width' }),
  dim: int({ min: 1, max: 65536, default: DEFAULT_SWAV.dim, description: 'embedding dimension' }),
  freezePrototypes: int({
    min: 0,
    description: 'steps with frozen prototypes',
    defaultText: 'one epoch, at most 10 % of the run',
  }),
  epsilon: num({ min: 1e-6, description: 'Sinkhorn regularisation', defaultText: 'chosen from the batch size' }),
  temperature: num({ min: 1e-6, default: DEFAULT_SWAV.temperature, description: 'softmax temperature' }),
  queueLength: int({
    min: 0,
    max: 1_000_000,
    default: 0,
    description: 'SwAV queue per assignment crop (multiple of --batch; 0 off)',
  }),
  queueStart: int({ min: 0, default: 0, description: 'first step that uses the queue' }),
  weightDecay: num({ min: 0, default: DEFAULT_LARS.weightDecay, description: 'weight decay' }),
  larsTrust: num({ min: 1e-9, default: DEFAULT_LARS.trust, description: 'LARS trust coefficient' }),
  larsAll: flag({ description: "LARS-scale BatchNorm parameters and biases too (facebookresearch/swav's LARC)" }),
  larsClip: flag({
    description: "LARC clip mode: a layer's rate never exceeds the learning rate (solo-learn's recipe)",
  }),
  checkpointEvery: int({ min: 1, default: 500, description: 'steps between checkpoints' }),
  keep: int({ min: 1, default: 3, description: 'checkpoints kept' }),
  logEvery: int({ min: 1, default: 10, description: 'steps between progress lines' }),
  threads: int({ min: 1, max: 256, description: 'augmentation worker threads', defaultText: 'cores' }),
  trainThreads: int({
    min: 1,
    max: 256,
    default: 1,
    description:
      'data-parallel training threads (wasm or cpu backend), each with its own backend and a share of every batch (at most --batch); ' +
      'the same weights as one thread with that split. 1 by default: the augmentation threads decode and crop on the same cores, ' +
      'so on a small machine more training threads compete with them',
  }),
  recompute: choice(RECOMPUTE_MODES, {
    default: 'auto',
    placeholder: 'mode',
    description:
      "activation recomputation per RegNet stage (one more forward pass, a fraction of the memory); auto: on when the memory estimate without it exceeds the backend's (the 4 GiB wasm heap)",
  }),
  precision: choice(PRECISIONS, {
    placeholder: 'mode',
    description:
      'WebGPU engine precision (--backend webgpu): f32, or mixed (f16 weight copies and activations, f32 master weights, optimiser state and BatchNorm statistics, dynamic loss scaling)',
    defaultText: 'mixed where the device offers shader-f16, else f32',
  }),
  follow: flag({ description: 'keep reading units committed while training runs' }),
  resume: negatable({
    description:
      'start from scratch: deletes the checkpoints in --out (the only way past damaged ones) and archives its metrics',
  }),
} as const;

export type TrainValues = OptionValues<typeof TRAIN_OPTIONS>;

/** `export`'s options (the checkpoint store is positional; a pipeline takes it from train.out). */
export const EXPORT_OPTIONS = {
  out: text({
    required: true,
    minLength: 1,
    placeholder: 'dir',
    description: 'where to write model.json and its weights-<hash>.bin (a path or store URL)',
  }),
  step: int({ min: 0, description: 'which checkpoint', defaultText: 'the newest that verifies' }),
  init: flag({ description: "export the run's initial weights instead (a random-init baseline for evaluation)" }),
} as const;

export type ExportValues = OptionValues<typeof EXPORT_OPTIONS>;

/** `plot`'s options (the checkpoint store is positional). */
export const PLOT_OPTIONS = {
  out: text({
    required: true,
    minLength: 1,
    placeholder: 'file',
    description: 'PNG file to write: a path, file:///abs/path or s3://bucket/key',
  }),
} as const;

export type PlotValues = OptionValues<typeof PLOT_OPTIONS>;
