/**
 * The commands of a training run: `train` (options -> a validated TrainConfig -> the loop, with SIGINT/SIGTERM
 * checkpoints), `export` (a checkpoint's backbone as a tfjs graph model) and `plot` (its curves).
 */
import { Command, Option } from 'commander';
import { abortable, isAbort } from '../abort.js';
import { parseCrops, SWAV_CROPS } from '../augment/config.js';
import { intArg, numArg, storeOptions, withStoreOptions } from '../cli-options.js';
import { ConfigError, InterruptedError } from '../errors.js';
import { listUnits } from '../shards/dataset.js';
import { putFile } from '../shards/output.js';
import { openStore, type Store } from '../shards/store.js';
import { BACKENDS, startBackend } from './backend.js';
import { checkpointAt, checkTensors, latestCheckpoint, paramTensors, restoreParams, type Checkpoint, type InvalidCheckpointError } from './checkpoint.js';
import { everyDamaged } from './checkpoint-format.js';
import { exportBackbone } from './export.js';
import { readMetrics } from './metrics.js';
import { ParamSet } from './params.js';
import { plotCurves } from './plot.js';
import { trainProgress, type TrainProgress } from './progress.js';
import { buildRegnet } from './regnet.js';
import { regnetSpec } from './regnet-spec.js';
import { autoConfig, checkpointSettings, fromCheckpoint, type SwavSettings } from './auto-config.js';
import { defaultTrainConfig, type TrainConfig } from './config.js';
import { DEFAULT_SWAV } from './swav.js';
import { StopSignals } from './signals.js';
import { trainOnStore as train } from '../jobs/train.js';

export function trainCommand(): Command {
  return withStoreOptions(
    new Command('train')
      .description('pretrain a RegNet with SwAV on a shard dataset (resumes from the newest checkpoint in --out)')
      .requiredOption('--data <store>', 'dataset location: a path, file:///abs/path or s3://bucket/prefix')
      .requiredOption('--out <store>', 'checkpoint store (checkpoints/, metrics/)')
      .option('--model <name>', 'regnetx_200mf..regnety_256gf, or custom:depth,w0,wa,wm,groupWidth[,se]', 'regnety_400mf')
      .option('--batch <n>', 'images per step', intArg(1, 65536), 64)
      .option('--steps <n>', 'total optimisation steps', intArg(1))
      .option('--epochs <n>', 'passes over the committed records (sets --steps)', intArg(1))
      .option('--crops <spec>', 'crop groups COUNTxSIZE@MIN-MAX,...', SWAV_CROPS)
      .option('--jitter-strength <s>', 'colour distortion strength (1: SwAV; 0.5 suits tiny models)', numArg(0, 2.5), 1)
      .option('--blur <p>', 'Gaussian blur probability (SwAV 0.5; 0 for crops of about 32 px)', numArg(0, 1), 0.5)
      .addOption(new Option('--backend <name>', 'tfjs backend').choices([...BACKENDS]).default('auto'))
      .option('--seed <n>', 'initialisation, order and augmentation seed', intArg(0, 2 ** 32 - 1), 0)
      .option('--lr <x>', 'base learning rate (default: chosen from batch and LARS, printed as auto:)', numArg(0))
      .option('--final-lr <x>', 'learning rate at the end of the cosine (default: lr for runs of up to 2000 steps, else lr/1000)', numArg(0))
      .option('--warmup-steps <n>', 'linear warmup steps', intArg(0), 0)
      .option('--prototypes <n>', 'SwAV prototypes (default: chosen from the dataset size and batch, printed as auto:)', intArg(2))
      .option('--hidden <n>', 'projection MLP hidden width', intArg(1), DEFAULT_SWAV.hidden)
      .option('--dim <n>', 'embedding dimension', intArg(1), DEFAULT_SWAV.dim)
      .option('--freeze-prototypes <n>', 'steps with frozen prototypes (default: one epoch, at most 10 % of the run)', intArg(0))
      .option('--epsilon <x>', 'Sinkhorn regularisation (default: chosen from the batch size)', numArg(1e-6))
      .option('--temperature <x>', 'softmax temperature', numArg(1e-6), DEFAULT_SWAV.temperature)
      .option('--queue-length <n>', 'SwAV queue per assignment crop (multiple of --batch; 0 off)', intArg(0), 0)
      .option('--queue-start <n>', 'first step that uses the queue', intArg(0), 0)
      .option('--weight-decay <x>', 'weight decay', numArg(0), 1e-6)
      .option('--lars-trust <x>', 'LARS trust coefficient', numArg(1e-9), 0.001)
      .option('--lars-all', "LARS-scale BatchNorm parameters and biases too (facebookresearch/swav's LARC)")
      .option('--lars-clip', "LARC clip mode: a layer's rate never exceeds the learning rate (solo-learn's recipe)")
      .option('--checkpoint-every <n>', 'steps between checkpoints', intArg(1), 500)
      .option('--keep <n>', 'checkpoints kept', intArg(1), 3)
      .option('--log-every <n>', 'steps between progress lines', intArg(1), 10)
      .option('--threads <n>', 'augmentation worker threads (default: cores)', intArg(1, 256))
      .option('--follow', 'keep reading units committed while training runs')
      .option('--no-resume', 'start from scratch: deletes the checkpoints in --out (the only way past damaged ones) and archives its metrics'),
  ).action(async (opts) => {
    let progress: TrainProgress | undefined;
    const stop = (signal: NodeJS.Signals) => {
      const line = `wildstream train: ${signal}: finishing the step and writing a checkpoint (a second signal exits at once)`;
      if (progress) progress.note(line);
      else process.stderr.write(`${line}\n`);
    };
    const signals = new StopSignals('train', stop);
    try {
      // The stores are read before training starts (records for the settings, the checkpoint's settings): a
      // stalled read there must not outlast a stop either.
      const startup = async () => {
        const [data, out] = [await openStore(opts.data, storeOptions(opts)), await openStore(opts.out, storeOptions(opts))];
        return { data, out, ...(await configFrom(opts, data, out)) };
      };
      const { data, out, config: given, auto } = await abortable(startup(), signals.signal).catch((err: unknown) => {
        if (!isAbort(err, signals.signal)) throw err;
        throw new InterruptedError(`stopped by ${signals.stoppedBy} before training started; nothing was changed`, signals.exitCode);
      });
      const config = defaultTrainConfig(given);
      progress = trainProgress();
      if (auto) progress.log(auto);
      const summary = await train({
        data, out, config, backend: opts.backend, resume: opts.resume, follow: Boolean(opts.follow),
        checkpointEvery: opts.checkpointEvery, keep: opts.keep, logEvery: opts.logEvery, threads: opts.threads,
        signal: signals.signal, log: progress.log, onStep: progress.step,
      }).finally(() => progress?.stop());
      process.stdout.write(`${JSON.stringify({ event: 'train_done', ...summary })}\n`);
      if (summary.stopped === 'signal') {
        const saved = summary.step > summary.startStep ? `${summary.checkpoint} written`
          : `no step completed, so no checkpoint was written${summary.resumedFrom ? ` (${summary.resumedFrom} is kept)` : ''}`;
        throw new InterruptedError(`stopped by ${signals.stoppedBy} at step ${summary.step}; ${saved}; rerun to resume`, signals.exitCode);
      }
    } finally {
      signals.finish();
    }
  });
}

/**
 * The run's config from the options; SwAV settings left out are chosen for the dataset and run (see
 * auto-config.ts), or on a resume taken from the checkpoint. `auto` is the line saying what was chosen.
 */
async function configFrom(opts: Record<string, any>, data: Store, out: Store): Promise<{ config: Partial<TrainConfig>; auto: string | null }> {
  const crops = parseCrops(opts.crops).reduce((n, g) => n + g.count, 0);
  const records = (await listUnits(data)).reduce((n, u) => n + u.records, 0);
  const steps: number = opts.steps ?? (opts.epochs ? stepsFor(data, records, opts.epochs, opts.batch) : 10_000);
  const user: SwavSettings = { prototypes: opts.prototypes, epsilon: opts.epsilon, freezePrototypes: opts.freezePrototypes, lr: opts.lr, finalLr: opts.finalLr };
  const saved = opts.resume ? await checkpointSettings(out) : null;
  const s = saved ? fromCheckpoint(user, saved)
    : autoConfig(user, { records, steps, batchSize: opts.batch, queueLength: opts.queueLength, larsAll: Boolean(opts.larsAll) });
  const config: Partial<TrainConfig> = {
    model: opts.model, batchSize: opts.batch, crops: opts.crops, jitterStrength: opts.jitterStrength, blurP: opts.blur, seed: opts.seed, steps,
    swav: {
      ...DEFAULT_SWAV, prototypes: s.prototypes, hidden: opts.hidden, dim: opts.dim, epsilon: s.epsilon,
      temperature: opts.temperature, freezePrototypesSteps: s.freezePrototypes, cropsForAssign: crops >= 2 ? [0, 1] : [0],
    },
    queue: { length: opts.queueLength, startStep: opts.queueStart },
    lars: { ...defaultTrainConfig().lars, weightDecay: opts.weightDecay, trust: opts.larsTrust, excludeBnBias: !opts.larsAll, clip: Boolean(opts.larsClip) },
    schedule: { baseLr: s.lr, finalLr: s.finalLr, warmupSteps: opts.warmupSteps, startWarmupLr: 0 },
  };
  return { config, auto: s.line };
}

function stepsFor(data: Store, records: number, epochs: number, batch: number): number {
  if (records === 0) throw new ConfigError(`--epochs needs committed records in ${data.url}; it has none (use --steps with --follow)`);
  return Math.max(1, Math.ceil((records * epochs) / batch));
}

export function exportCommand(): Command {
  return withStoreOptions(
    new Command('export')
      .description("write a checkpoint's backbone as a TensorFlow.js graph model (model.json + weights.bin)")
      .argument('<ckpt-store>', 'checkpoint store of a training run (its --out)')
      .requiredOption('--out <dir>', 'where to write model.json and weights.bin (a path or store URL)')
      .option('--step <n>', 'which checkpoint (default: the newest that verifies)', intArg(0))
      .option('--init', "export the run's initial weights instead (a random-init baseline for evaluation)"),
  ).action(async (url: string, opts) => {
    const store = await openStore(url, storeOptions(opts));
    await startBackend('cpu');
    const ckpt = await exportedCheckpoint(store, opts.step);
    const { config } = ckpt.header;
    const ps = new ParamSet(config.seed);
    const spec = regnetSpec(config.model);
    buildRegnet(ps, spec);
    if (!opts.init) restoreParams(ps, ckpt);
    const inputSize = Math.max(...parseCrops(config.crops).map((g) => g.size));
    const meta = await exportBackbone(await openStore(opts.out, storeOptions(opts)), ps, spec, { model: config.model, step: opts.init ? 0 : ckpt.header.step, inputSize });
    ps.dispose();
    process.stdout.write(`${JSON.stringify({ event: 'export', out: opts.out, ...meta })}\n`);
  });
}

/**
 * The checkpoint export reads: `step`'s, or the newest one that verifies and holds a whole backbone. No
 * checkpoint at all is a usage error; every one damaged is an InvalidCheckpointError naming each damage.
 */
async function exportedCheckpoint(store: Store, step: number | undefined): Promise<Checkpoint> {
  if (step !== undefined) return checkpointAt(store, step);
  const damaged: InvalidCheckpointError[] = [];
  const ckpt = await latestCheckpoint(store, (err) => {
    damaged.push(err);
    process.stderr.write(`warning: ${err.message}\n`);
  }, (c) => {
    const ps = new ParamSet(c.header.config.seed);
    try {
      buildRegnet(ps, regnetSpec(c.header.config.model));
      checkTensors(c, paramTensors(ps));
    } finally {
      ps.dispose();
    }
  });
  if (ckpt) return ckpt;
  if (damaged.length > 0) throw everyDamaged(store, damaged, 'Nothing to export: restore a good copy of one');
  throw new ConfigError(`no checkpoint in ${store.url}`);
}

export function plotCommand(): Command {
  return withStoreOptions(
    new Command('plot')
      .description("draw a run's loss and learning-rate curves as a PNG")
      .argument('<ckpt-store>', 'checkpoint store of a training run')
      .requiredOption('--out <file>', 'PNG file to write: a path, file:///abs/path or s3://bucket/key'),
  ).action(async (url: string, opts) => {
    const store = await openStore(url, storeOptions(opts));
    const [lines, saved] = [await readMetrics(store), await checkpointSettings(store)];
    await putFile(opts.out, await plotCurves(lines, { prototypes: saved?.prototypes, freezeSteps: saved?.freezePrototypes }), storeOptions(opts));
    process.stdout.write(`${JSON.stringify({ event: 'plot', out: opts.out, points: lines.length })}\n`);
  });
}
