/**
 * Settings chosen from the dataset and run (auto-config.ts), and the collapse warning (collapse.ts): the pure
 * rules at the scales the repo measured, a forced collapse that warns (with the prototypes frozen too), a
 * normal run that does not, and the CLI's `auto:` line and resume.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaults, pipelineNames } from '../../src/options/declare.js';
import { openStore, type Store } from '../../src/shards/store.js';
import {
  autoConfig,
  autoEpsilon,
  autoFinalLr,
  autoFreeze,
  autoLr,
  autoPrototypes,
  checkpointSettings,
  fromCheckpoint,
} from '../../src/train/auto-config.js';
import { startBackend } from '../../src/train/backend.js';
import { atLnK, CollapseWatch } from '../../src/train/collapse.js';
import { defaultTrainConfig } from '../../src/train/config.js';
import { TRAIN_OPTIONS, type TrainValues } from '../../src/train/options.js';
import { resolveTrainConfig } from '../../src/train/resolve.js';
import { readMetrics } from '../../src/train/metrics.js';
import { DEFAULT_SWAV } from '../../src/train/swav.js';
import { trainOnStore as train } from '../../src/jobs/train.js';
import { runCli } from '../helpers/cli.js';
import { photoJpeg } from '../../src/fixtures/images.js';
import { writeDataset, writePhotoDataset } from '../helpers/dataset.js';

describe('auto-config: rules', () => {
  it("SwAV's own shapes give SwAV's values", () => {
    // ImageNet at batch 4096 for 100 epochs: 3000 prototypes, epsilon 0.05, one epoch (313 steps) frozen.
    const imagenet = { records: 1_281_167, steps: 31_300, batchSize: 4096 };
    expect(autoPrototypes(imagenet).value).toBe(3000);
    expect(autoEpsilon(imagenet).value).toBe(0.05);
    expect(autoFreeze(imagenet).value).toBe(313);
    expect(autoLr(imagenet).value).toBeCloseTo(9.6, 6); // the linear rule; SwAV's large-batch 4.8 is set by hand
    expect(autoFinalLr(imagenet, 9.6).value).toBeCloseTo(0.0096, 9);
    // Batch 256 with a 3840 queue: epsilon 0.03, and the queue lets Sinkhorn feed 3000 prototypes.
    const small = { records: 1_281_167, steps: 500_000, batchSize: 256, queueLength: 3840 };
    expect([autoPrototypes(small).value, autoEpsilon(small).value, autoFreeze(small).value]).toEqual([
      3000, 0.03, 5005,
    ]);
  });

  it("the learning test's shape gives the settings that learned there", () => {
    const learning = { records: 512, steps: 600, batchSize: 32, larsAll: true };
    expect(autoPrototypes(learning).value).toBe(32);
    expect(autoEpsilon(learning).value).toBe(0.02);
    expect(autoFreeze(learning).value).toBe(16); // one epoch; the test freezes 20
    expect(autoLr(learning).value).toBe(2);
    expect(autoFinalLr(learning, 2).value).toBe(2);
    // Above SMALL_BATCH the linear rule again, with 0.5 as the floor.
    expect(autoLr({ ...learning, batchSize: 128 }).value).toBe(0.5);
    expect(autoLr({ ...learning, batchSize: 1024 }).value).toBeCloseTo(2.4, 9);
  });

  it("a few thousand images at batch 32 and 300 steps (the run that collapsed with SwAV's defaults)", () => {
    const c = autoConfig({}, { records: 3000, steps: 300, batchSize: 32 });
    expect(c).toMatchObject({ prototypes: 32, epsilon: 0.02, freezePrototypes: 30, finalLr: c.lr });
    expect(c.lr).toBeCloseTo(0.075, 9);
    expect(c.line).toMatch(
      /^auto: 32 prototypes \(as many as the 32 samples Sinkhorn splits among them per step\), epsilon 0.02 .*prototypes frozen 30 steps \(10 % of 300 steps\), lr 0.075 .*final lr 0.075 \(constant over a run of 300 steps\)/,
    );
  });

  it('as many prototypes as Sinkhorn has samples, at most 3000 and at most one per image', () => {
    expect(autoPrototypes({ records: 3000, steps: 100, batchSize: 512 }).value).toBe(512);
    expect(autoPrototypes({ records: 3000, steps: 100, batchSize: 512, queueLength: 1024 }).value).toBe(1536);
    expect(autoPrototypes({ records: 40, steps: 100, batchSize: 512 })).toEqual({
      value: 40,
      why: 'one per image of 40',
    });
    expect(autoPrototypes({ records: 1e8, steps: 100, batchSize: 65536 }).value).toBe(3000);
    // One image or a batch of 1: two prototypes, said as the floor, not as "as many as the 1 samples".
    for (const shape of [
      { records: 1, steps: 2, batchSize: 8 },
      { records: 100, steps: 2, batchSize: 1 },
    ])
      expect(autoPrototypes(shape)).toEqual({ value: 2, why: 'the fewest a swapped prediction can tell apart' });
    // Nothing committed yet (following): the batch decides, and the freeze is sized for the images the run sees.
    expect(autoPrototypes({ records: null, steps: 100, batchSize: 64 }).value).toBe(64);
    expect(autoFreeze({ records: 0, steps: 100, batchSize: 64 }).why).toMatch(/10 % of 100 steps/);
  });

  it('never changes what the user gave, and says nothing when everything was given', () => {
    const user = { prototypes: 3000, epsilon: 0.05, freezePrototypes: 313, lr: 0.3, finalLr: 0.0003 };
    expect(autoConfig(user, { records: 100, steps: 10, batchSize: 8 })).toEqual({ ...user, line: null });
    const some = autoConfig({ prototypes: 100, lr: 2 }, { records: 100, steps: 10, batchSize: 8 });
    expect(some).toMatchObject({ prototypes: 100, lr: 2, finalLr: 2 });
    expect(some.line).toMatch(
      /^auto: epsilon 0.02 \([^)]*\), prototypes frozen 1 steps \([^)]*\), final lr 2 \(constant/,
    );
  });

  it("names a pipeline's stage keys in its line when asked", () => {
    const shape = { records: 100, steps: 10, batchSize: 8 };
    expect(autoConfig({}, shape).line).toMatch(
      /; set --prototypes, --epsilon, --freeze-prototypes, --lr or --final-lr to choose otherwise$/,
    );
    expect(autoConfig({}, shape, pipelineNames('train')).line).toMatch(
      /; set train\.prototypes, train\.epsilon, train\.freeze_prototypes, train\.lr or train\.final_lr to choose otherwise$/,
    );
  });

  it('a run by epochs on a dataset without records, or a queue of part of a batch, names the option in the names given', async () => {
    const root = await mkdtemp(join(tmpdir(), 'ws-resolve-'));
    try {
      const empty = await openStore(root);
      const o = { ...defaults(TRAIN_OPTIONS), epochs: 1 } as TrainValues;
      const aug = { crops: '2x32', cropCount: 2, jitterStrength: 1, blur: 0.5 };
      await expect(resolveTrainConfig(o, aug, empty, empty)).rejects.toThrow(
        /^--epochs needs committed records in .*; it has none \(use --steps with --follow\)$/,
      );
      await expect(resolveTrainConfig(o, aug, empty, empty, pipelineNames('train'))).rejects.toThrow(
        /^train\.epochs needs committed records in .*; it has none \(use train\.steps with train\.follow\)$/,
      );
      // More epochs than checkpoint names can count steps for: named as --epochs, not as the steps they make.
      const data = await openStore(join(root, 'data'));
      await writeDataset(data, { units: 1, perUnit: 12 });
      const endless = { ...defaults(TRAIN_OPTIONS), batch: 8, epochs: 2 ** 40 } as TrainValues;
      await expect(resolveTrainConfig(endless, aug, data, empty)).rejects.toThrow(
        /^--epochs 1099511627776 over 12 records at --batch 8 is 1649267441664 steps, more than the 999999999 a run can have: use fewer --epochs$/,
      );
      expect(() => defaultTrainConfig({ steps: 1e9 })).toThrow(
        /^steps must be an integer from 1 to 999999999, got 1000000000$/,
      );
      // One crop per image, named as the option that sets it.
      const one = { ...aug, crops: '1x32', cropCount: 1 };
      await expect(
        resolveTrainConfig({ ...defaults(TRAIN_OPTIONS) } as TrainValues, one, empty, empty),
      ).rejects.toThrow(/^--crops 1x32 gives 1 crop per image; SwAV needs at least two/);
      // A queue of part of a batch, in the option's own name.
      const queued = { ...defaults(TRAIN_OPTIONS), batch: 4, queueLength: 6 } as TrainValues;
      await expect(resolveTrainConfig(queued, aug, empty, empty)).rejects.toThrow(
        /^--queue-length 6 must be a multiple of --batch \(4\): the queue holds whole batches$/,
      );
      await expect(resolveTrainConfig(queued, aug, empty, empty, pipelineNames('train'))).rejects.toThrow(
        /^train\.queue_length=6 must be a multiple of train\.batch \(4\)/,
      );
      // A start step for a queue that is not there would pass without a word.
      const unqueued = { ...defaults(TRAIN_OPTIONS), queueStart: 100 } as TrainValues;
      await expect(resolveTrainConfig(unqueued, aug, empty, empty)).rejects.toThrow(
        /^--queue-start 100 needs a queue, and --queue-length is 0 \(no queue\): set it to a multiple of --batch, or leave out --queue-start$/,
      );
      await expect(resolveTrainConfig(unqueued, aug, empty, empty, pipelineNames('train'))).rejects.toThrow(
        /^train\.queue_start=100 needs a queue, and train\.queue_length is 0 \(no queue\)/,
      );
      // And where the library builds its config directly.
      expect(() => defaultTrainConfig({ batchSize: 8, queue: { length: 0, startStep: 5 } })).toThrow(
        /^queue\.startStep \(5\) needs a queue, and queue\.length is 0 \(no queue\)$/,
      );
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('a long run decays the rate as SwAV does', () => {
    expect(autoFinalLr({ records: 1000, steps: 2001, batchSize: 32 }, 0.5).value).toBeCloseTo(0.0005, 12);
  });

  it("a resume keeps the checkpoint's values for what the user left out", () => {
    const saved = { prototypes: 32, epsilon: 0.02, freezePrototypes: 16, lr: 0.5, finalLr: 0.5 };
    const r = fromCheckpoint({ lr: 0.25 }, saved);
    expect(r).toMatchObject({ ...saved, lr: 0.25 });
    expect(r.line).toBe("auto: resuming with the checkpoint's prototypes 32, epsilon 0.02, freeze 16, final lr 0.5");
  });
});

describe('collapse watch', () => {
  it('warns once per stay at ln K, not while the loss is still falling through the band', () => {
    const lnK = Math.log(32);
    const w = new CollapseWatch({ prototypes: 32 });
    // The demo's losses on the way down (3.4507, 3.4011 are within 2 % of ln 32 = 3.4657): no warning.
    expect([4.2169, 3.6546, 3.4507, 3.4011, 3.365].map((l, i) => w.observe(25 * (i + 1), l))).toEqual([
      null,
      null,
      null,
      null,
      null,
    ]);
    // A flat stay: the third interval warns, the fourth does not repeat it.
    const flat = [lnK + 0.001, lnK, lnK + 0.0005, lnK].map((l, i) => w.observe(200 + i, l));
    expect(flat.map((x) => x !== null)).toEqual([false, false, true, false]);
    expect(flat[2]).toMatch(/^warning: collapse\? .*ln 32 = 3\.4657 for 3 log intervals/);
    // Leaving and coming back warns again; frozen prototypes are named.
    w.observe(300, 2.9);
    const again = [1, 2, 3].map((i) => w.observe(300 + i, 1.01 * lnK, true));
    expect(again[2]).toMatch(/prototypes still frozen/);
    expect(w.warnings).toBe(2);
  });

  it('continues from its state as one watch would: a stay at ln K split by resumes still warns, once', () => {
    const lnK = Math.log(32);
    const whole = new CollapseWatch({ prototypes: 32 });
    const wholeSaid = [1, 2, 3, 4].map((i) => whole.observe(i, lnK));
    // The same intervals, the watch rebuilt from its state after each (a run resumed after every interval).
    let state = new CollapseWatch({ prototypes: 32 }).state();
    const pieceSaid = [1, 2, 3, 4].map((i) => {
      const w = new CollapseWatch({ prototypes: 32, state });
      const said = w.observe(i, lnK);
      state = JSON.parse(JSON.stringify(w.state())) as typeof state; // as a checkpoint header carries it
      return said;
    });
    expect(pieceSaid).toEqual(wholeSaid);
    expect(pieceSaid.map((x) => x !== null)).toEqual([false, false, true, false]);
    expect(state).toMatchObject({ warned: true, warnings: 1 });
    // A fresh watch at each resume (what an older checkpoint gives) never sees three intervals in a row.
    expect([1, 2, 3, 4].map((i) => new CollapseWatch({ prototypes: 32 }).observe(i, lnK))).toEqual([
      null,
      null,
      null,
      null,
    ]);
  });

  it('sees the frozen-prototype plateau just above ln K (8.09 vs ln 3000 = 8.006)', () => {
    expect(atLnK(8.09, 3000)).toBe(true);
    expect(atLnK(8.006 * 1.021, 3000)).toBe(false);
    const w = new CollapseWatch({ prototypes: 3000 });
    expect([8.1, 8.09, 8.09].map((l, i) => w.observe(i, l, true))[2]).toMatch(/warning/);
  });
});

describe('collapse warning in a run', () => {
  let dir: string;
  let data: Store;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-auto-'));
    data = await openStore(join(dir, 'data'));
    await writePhotoDataset(data, { units: 2, perUnit: 16, width: 48, height: 40 });
    await startBackend('wasm');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const run = async (name: string, swav: Partial<typeof DEFAULT_SWAV>, lr: number, steps = 8) => {
    const lines: string[] = [];
    const config = defaultTrainConfig({
      model: 'custom:3,16,8,2,16',
      batchSize: 8,
      crops: '2x24@0.3-1,2x16@0.1-0.3',
      steps,
      swav: { ...DEFAULT_SWAV, prototypes: 16, hidden: 32, dim: 16, ...swav },
      schedule: { baseLr: lr, finalLr: lr, warmupSteps: 0, startWarmupLr: 0 },
    });
    const out = await openStore(join(dir, name));
    const summary = await train({
      data,
      out,
      config,
      backend: 'wasm',
      threads: 1,
      logEvery: 2,
      checkpointEvery: 100,
      log: (l) => lines.push(l),
    });
    return { lines, summary, metrics: await readMetrics(out) };
  };

  it('a forced collapse (uniform predictions) warns, with the prototypes frozen for the whole run', async () => {
    // Temperature 1000 flattens every prediction: the loss is ln K from the first step.
    const r = await run('forced', { temperature: 1000, freezePrototypesSteps: 100 }, 0.1);
    const warnings = r.lines.filter((l) => l.startsWith('warning: collapse?'));
    expect(warnings, r.lines.join('\n')).toHaveLength(1);
    expect(warnings[0]).toMatch(/prototypes still frozen/);
    expect(r.summary.collapseWarnings).toBe(1);
    expect(r.metrics.map((m) => m.collapseWarnings)).toEqual([0, 0, 1, 1]);
    expect(new Set(r.metrics.map((m) => m.run)).size).toBe(1);
  }, 120_000);

  it('a forced collapse interrupted before its third interval still warns once resumed: the count is in the checkpoint', async () => {
    // Two intervals (steps 2 and 4) in the first process, two more (6 and 8) after the resume: three in a row
    // only when the checkpoint carries the first two.
    const first = await run('forced-resumed', { temperature: 1000, freezePrototypesSteps: 100 }, 0.1, 4);
    expect(first.lines.filter((l) => l.startsWith('warning: collapse?'))).toEqual([]);
    const r = await run('forced-resumed', { temperature: 1000, freezePrototypesSteps: 100 }, 0.1, 8);
    expect(r.summary.resumedFrom).toMatch(/step-000000004\.ckpt$/);
    const warnings = r.lines.filter((l) => l.startsWith('warning: collapse?'));
    expect(warnings, r.lines.join('\n')).toHaveLength(1);
    expect(warnings[0]).toMatch(/for 3 log intervals \([\d., ]+ up to step 6, prototypes still frozen\)/);
    expect(r.summary.collapseWarnings).toBe(1);
    // The metrics count the run's warnings across the resume, so a plot marks the one at step 6.
    expect(r.metrics.map((m) => [m.step, m.collapseWarnings])).toEqual([
      [2, 0],
      [4, 0],
      [6, 1],
      [8, 1],
    ]);
    expect(new Set(r.metrics.map((m) => m.run)).size).toBe(2);
  }, 120_000);

  it('a normal run does not warn', async () => {
    const r = await run('normal', { freezePrototypesSteps: 2, epsilon: 0.02 }, 0.5);
    expect(
      r.lines.filter((l) => l.startsWith('warning')),
      r.lines.join('\n'),
    ).toEqual([]);
    expect(r.summary.collapseWarnings).toBe(0);
  }, 120_000);

  it('the CLI prints what it chose, stores it, and a resume on more data keeps it', async () => {
    const [cliData, out] = [join(dir, 'cli-data'), join(dir, 'cli')];
    await writePhotoDataset(await openStore(cliData), { units: 2, perUnit: 16, width: 48, height: 40 });
    const args = [
      'train',
      '--data',
      cliData,
      '--out',
      out,
      '--model',
      'custom:3,16,8,2,16',
      '--batch',
      '8',
      '--crops',
      '2x24@0.3-1,2x16@0.1-0.3',
      '--hidden',
      '32',
      '--dim',
      '16',
      '--backend',
      'wasm',
      '--threads',
      '1',
      '--log-every',
      '2',
    ];
    const first = await runCli([...args, '--steps', '4', '--epsilon', '0.03']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(
      /^auto: 8 prototypes \(as many as the 8 samples .*\), prototypes frozen 0 steps \(10 % of 4 steps\), lr 0\.018[78] .*final lr 0\.018[78] /m,
    );
    expect(first.stdout).not.toMatch(/auto: .*epsilon 0/);
    expect(await checkpointSettings(await openStore(out))).toEqual({
      prototypes: 8,
      epsilon: 0.03,
      freezePrototypes: 0,
      lr: 0.01875,
      finalLr: 0.01875,
    });
    // 32 more records would choose other values; the resumed run keeps the checkpoint's.
    const more = await Promise.all(Array.from({ length: 32 }, (_, i) => photoJpeg(100 + i, { width: 48, height: 40 })));
    await writeDataset(await openStore(cliData), { units: 2, perUnit: 16, firstUnit: 2, image: (i) => more[i - 32]! });
    const second = await runCli([...args, '--steps', '6', '--epsilon', '0.03']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(
      /^auto: resuming with the checkpoint's prototypes 8, freeze 0, lr 0\.018[78], final lr 0\.018[78]$/m,
    );
  }, 240_000);
});
