/**
 * Issue 5's learning criterion, shared by the CI test and bench/learn.ts: a tiny RegNet trained with SwAV on
 * procedural pattern images (hidden class = pattern structure; every region has its own random colour)
 * ingested as shards, then k-NN top-1 of the trained backbone vs the same network at initialisation on
 * held-out images, and the loss against the ln(K) plateau. All through the real CLI (train, export, eval knn).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { patternJpeg } from '../../src/fixtures/images.js';
import { openStore } from '../../src/shards/store.js';
import { runCli } from './cli.js';
import { writeDataset } from './dataset.js';

export interface LearningOptions {
  steps: number;
  model: string;
  batch: number;
  crops: string;
  /** Training images (64x64); k-NN uses 400 other train and 400 test images of the 4 classes. */
  images: number;
  prototypes: number;
  /** Further `train` options. */
  extra: string[];
  /** k-NN input side (`eval knn --size`); the training crop size when absent. */
  evalSize?: number;
}

/**
 * What makes this tiny run learn rather than collapse (bench/RESULTS.md, "Learning"): Sinkhorn epsilon 0.02
 * (facebookresearch/swav's first remedy for a loss stuck at ln K) and a constant learning rate of 2 with LARS on
 * every parameter: the features appear in a jump (loss 3.2 -> 2.8 over steps 275-325 here, seed 0), which a
 * cosine decay or a rate of 0.5 (the jump at steps 600-900) reaches too late; four local crops bring it sooner.
 * 450 steps leave 125 after the jump: 400 reached k-NN 0.752, 450 0.770, 600 0.905 (bench/RESULTS.md).
 */
export const LEARNING_DEFAULTS: LearningOptions = {
  steps: 450,
  model: 'custom:4,16,8,2,16',
  batch: 32,
  crops: '2x32@0.3-1,4x16@0.1-0.3',
  images: 512,
  prototypes: 32,
  extra: [
    '--lr',
    '2',
    '--final-lr',
    '2',
    '--warmup-steps',
    '10',
    '--lars-all',
    '--jitter-strength',
    '0.5',
    '--blur',
    '0',
    '--epsilon',
    '0.02',
  ],
};

export interface LearningResult {
  /** The train command's progress lines. */
  lines: string[];
  /** Mean loss of the last three log intervals. */
  finalLoss: number;
  lnK: number;
  knnTrained: number;
  knnInit: number;
}

export async function learningRun(over: Partial<LearningOptions> = {}): Promise<LearningResult> {
  const o = { ...LEARNING_DEFAULTS, ...over };
  const dir = await mkdtemp(join(tmpdir(), 'ws-learn-'));
  const cli = async (args: string[]) => {
    const r = await runCli(args, {}, 60 * 60_000);
    if (r.code !== 0)
      throw new Error(`wildstream ${args.slice(0, 2).join(' ')} exited ${r.code}: ${r.stderr.slice(-2000)}`);
    return r.stdout;
  };
  try {
    await writeImages(dir, o.images);
    const log = await cli([
      'train',
      '--data',
      join(dir, 'data'),
      '--out',
      join(dir, 'ck'),
      '--model',
      o.model,
      '--batch',
      String(o.batch),
      '--crops',
      o.crops,
      '--steps',
      String(o.steps),
      '--prototypes',
      String(o.prototypes),
      '--hidden',
      '64',
      '--dim',
      '32',
      '--backend',
      'wasm',
      '--freeze-prototypes',
      '20',
      '--log-every',
      '25',
      '--checkpoint-every',
      '100000',
      ...o.extra,
    ]);
    const lines = log.split('\n').filter((l) => l.startsWith('step '));
    const losses = lines.map((l) => Number(/loss ([\d.]+)/.exec(l)?.[1]));
    const knn: Record<string, number> = {};
    for (const which of ['trained', 'init']) {
      await cli(['export', join(dir, 'ck'), '--out', join(dir, which), ...(which === 'init' ? ['--init'] : [])]);
      const r = JSON.parse(
        await cli([
          'eval',
          'knn',
          '--model',
          join(dir, which),
          '--train',
          join(dir, 'train'),
          '--test',
          join(dir, 'test'),
          '--backend',
          'wasm',
          ...(o.evalSize ? ['--size', String(o.evalSize)] : []),
        ]),
      );
      knn[which] = r.top1;
    }
    const tail = losses.slice(-3);
    return {
      lines,
      finalLoss: tail.reduce((a, b) => a + b, 0) / tail.length,
      lnK: Math.log(o.prototypes),
      knnTrained: knn.trained!,
      knnInit: knn.init!,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Shards of `n` training images, and class folders of 400 + 400 other images for k-NN. */
async function writeImages(dir: string, n: number): Promise<void> {
  await writePatternShards(join(dir, 'data'), n);
  await writePatternFolders(dir, [
    ['train', 100_000, 400],
    ['test', 200_000, 400],
  ]);
}

/** The first `n` pattern images (64x64) as a shard dataset of 4 units at `path`. */
export async function writePatternShards(path: string, n: number): Promise<void> {
  const images = await Promise.all(Array.from({ length: n }, (_, i) => patternJpeg(i, { width: 64, height: 64 })));
  await writeDataset(await openStore(path), { units: 4, perUnit: n / 4, batchRows: 16, image: (i) => images[i]! });
}

/** Pattern images as class folders `dir/split/c<class>/<seed>.jpg`, one [split, first seed, count] each. */
export async function writePatternFolders(
  dir: string,
  splits: ReadonlyArray<readonly [string, number, number]>,
  side = 64,
): Promise<void> {
  for (const [split, first, count] of splits) {
    for (let i = first; i < first + count; i++) {
      await mkdir(join(dir, split, `c${i % 4}`), { recursive: true });
      await writeFile(join(dir, split, `c${i % 4}`, `${i}.jpg`), await patternJpeg(i, { width: side, height: side }));
    }
  }
}
