// Advice after a divergence names the setting that caused it: lowering --lr does not help against a weight
// decay of 1e30.
import { describe, expect, it } from 'vitest';
import { checkCompatible, defaultTrainConfig } from '../../src/train/config.js';
import { pipelineNames } from '../../src/options/declare.js';
import { DEFAULT_LARS } from '../../src/train/optim.js';
import type { Checkpoint } from '../../src/train/checkpoint.js';
import { augmentChange, checkSameDataset, divergenceAdvice, larsChange, stepWarnings } from '../../src/train/resume.js';

const none = { step: 0, key: null, writtenByThisRun: false };

describe('divergenceAdvice', () => {
  it('asks for a lower rate when the rate is the outlier', () => {
    const config = defaultTrainConfig({
      batchSize: 32,
      schedule: { baseLr: 1e6, finalLr: 1e3, warmupSteps: 0, startWarmupLr: 0 },
    });
    expect(divergenceAdvice(config, none)).toMatch(/rerun with --lr 0\.075 or lower \(this run: base lr 1000000\)$/);
  });

  it('names weight decay, LARS trust or a final rate above the base rate instead', () => {
    const base = defaultTrainConfig({ batchSize: 32 });
    const cases = [
      [{ lars: { ...DEFAULT_LARS, weightDecay: 1e30 } }, /rerun with --weight-decay 0\.000001 \(this run: 1e\+30\)$/],
      [{ lars: { ...DEFAULT_LARS, trust: 1e30 } }, /rerun with --lars-trust 0\.001 \(this run: 1e\+30\)$/],
      [
        { schedule: { ...base.schedule, finalLr: 1e30 } },
        /rerun with --final-lr .* or at most --lr \(this run: final lr 1e\+30 above base lr/,
      ],
    ] as const;
    for (const [over, want] of cases)
      expect(divergenceAdvice(defaultTrainConfig({ batchSize: 32, ...over }), none)).toMatch(want);
  });
});

describe('checkCompatible', () => {
  it("names the option that differs, as the command's flag or the pipeline's key", () => {
    const [saved, wanted] = [defaultTrainConfig({ batchSize: 4 }), defaultTrainConfig({ batchSize: 8 })];
    expect(() => checkCompatible(saved, wanted, 'checkpoint c')).toThrow(
      /^checkpoint c was trained with --batch 4, this run asks for 8; use the same settings, --no-resume, or another --out$/,
    );
    expect(() => checkCompatible(saved, wanted, 'checkpoint c', pipelineNames('train'))).toThrow(
      /^checkpoint c was trained with train\.batch=4, this run asks for 8; use the same settings, train\.resume=false, or another train\.out$/,
    );
  });
});

describe('checkCompatible on the SwAV head', () => {
  it('names the head option that differs, not the whole head as JSON', () => {
    const saved = defaultTrainConfig({ batchSize: 4 });
    const cases = [
      [{ epsilon: 0.02 }, /^c was trained with --epsilon 0\.05, this run asks for 0\.02;/],
      [{ hidden: 64 }, /^c was trained with --hidden 2048, this run asks for 64;/],
      [{ prototypes: 16 }, /^c was trained with --prototypes 3000, this run asks for 16;/],
      [{ temperature: 0.2 }, /^c was trained with --temperature 0\.1, this run asks for 0\.2;/],
      [{ freezePrototypesSteps: 7 }, /^c was trained with --freeze-prototypes 313, this run asks for 7;/],
    ] as const;
    for (const [over, want] of cases) {
      const wanted = defaultTrainConfig({ batchSize: 4, swav: { ...saved.swav, ...over } });
      expect(() => checkCompatible(saved, wanted, 'c')).toThrow(want);
    }
    expect(() => checkCompatible(saved, { ...saved, swav: { ...saved.swav, sinkhornIters: 5 } }, 'c')).toThrow(
      /^c was trained with swav\.sinkhornIters=3, this run asks for 5;/,
    );
  });
});

describe('checkCompatible compares parsed settings', () => {
  const at = (o: Parameters<typeof defaultTrainConfig>[0]) => defaultTrainConfig({ batchSize: 4, ...o });

  it('resumes a model or crops written another way (default SE ratio or scale range written out, spaces)', () => {
    const saved = at({ model: 'custom:4,16,8,2,16', crops: '2x32,4x16' });
    for (const wanted of [
      at({ model: 'custom:4,16,8,2,16,0.25', crops: '2x32,4x16' }),
      at({ model: 'custom:4,16,8,2,16', crops: '2x32, 4x16' }),
      at({ model: 'custom:4,16,8,2,16', crops: '2x32@0.08-1,4x16@0.08-1' }),
      at({ model: 'custom:4,16,8,2,16,0.25', crops: ' 2x32@0.08-1.0 , 4x16 ' }),
    ])
      expect(() => checkCompatible(saved, wanted, 'checkpoint c')).not.toThrow();
  });

  it('still refuses a different model or crops, naming the field as it was written', () => {
    const saved = at({ model: 'custom:4,16,8,2,16', crops: '2x32,4x16' });
    expect(() => checkCompatible(saved, at({ model: 'custom:4,16,8,2,16,0', crops: '2x32,4x16' }), 'c')).toThrow(
      /^c was trained with --model "custom:4,16,8,2,16", this run asks for "custom:4,16,8,2,16,0";/,
    );
    expect(() =>
      checkCompatible(saved, at({ model: 'custom:4,16,8,2,16', crops: '2x32,4x16@0.05-0.14' }), 'c'),
    ).toThrow(/^c was trained with --crops "2x32,4x16", this run asks for "2x32,4x16@0.05-0.14";/);
    expect(() => checkCompatible(saved, at({ model: 'custom:4,16,8,2,16', crops: '2x32,4x24' }), 'c')).toThrow(
      /--crops "2x32,4x16", this run asks for "2x32,4x24"/,
    );
  });
});

describe('checkSameDataset', () => {
  const ckpt = (dataset?: { url: string; id?: string }) =>
    ({ key: 'checkpoints/step-1.ckpt', header: { dataset } }) as unknown as Checkpoint;

  it('is the same dataset by its dataset.json id when both have one, else by location', () => {
    const a = { url: 'file:///d/a', id: 'A' };
    expect(() => checkSameDataset(ckpt(a), { url: 'file:///moved/a', id: 'A' })).not.toThrow(); // moved: same id
    expect(() => checkSameDataset(ckpt(a), { url: 'file:///d/a', id: 'B' })).toThrow(
      /^checkpoint checkpoints\/step-1\.ckpt was trained on --data file:\/\/\/d\/a \(dataset id A\), this run asks for file:\/\/\/d\/a \(dataset id B\);/,
    ); // made again at the same place
    expect(() => checkSameDataset(ckpt({ url: 'file:///d/a' }), { url: 'file:///d/a', id: 'B' })).not.toThrow();
    expect(() =>
      checkSameDataset(ckpt({ url: 'file:///d/a' }), { url: 'file:///d/b' }, pipelineNames('train')),
    ).toThrow(
      /trained on train\.data file:\/\/\/d\/a, this run asks for file:\/\/\/d\/b; .*train\.resume=false to start over, or another train\.out$/,
    );
  });

  it('does not check a checkpoint written before datasets were recorded, or a run given only batches', () => {
    expect(() => checkSameDataset(ckpt(undefined), { url: 'file:///d/b' })).not.toThrow();
    expect(() => checkSameDataset(ckpt({ url: 'file:///d/a' }), undefined)).not.toThrow();
  });
});

describe('augmentChange', () => {
  it('states a changed jitter strength or blur in one line, and nothing when they are the same', () => {
    const saved = defaultTrainConfig({ batchSize: 4 });
    expect(augmentChange(saved, defaultTrainConfig({ batchSize: 4 }), 30)).toBeNull();
    expect(augmentChange(saved, defaultTrainConfig({ batchSize: 4, jitterStrength: 0.5, blurP: 0 }), 30)).toBe(
      'resuming at step 30 with --jitter-strength 0.5 (was 1), --blur 0 (was 0.5): the crops from step 30 on are drawn with the new augmentation',
    );
    expect(augmentChange(saved, defaultTrainConfig({ batchSize: 4, blurP: 0 }), 3, pipelineNames('train'))).toMatch(
      /with train\.blur=0 \(was 0\.5\)/,
    );
  });
});

describe('larsChange', () => {
  it('states changed LARS settings in one line, and nothing when they are the same', () => {
    const saved = defaultTrainConfig({ batchSize: 4 });
    expect(larsChange(saved, defaultTrainConfig({ batchSize: 4 }), 30)).toBeNull();
    const lars = { ...DEFAULT_LARS, weightDecay: 0.1, excludeBnBias: false, clip: true };
    expect(larsChange(saved, defaultTrainConfig({ batchSize: 4, lars }), 30)).toBe(
      'resuming at step 30 with --weight-decay 0.1 (was 0.000001), --lars-all (was off), --lars-clip (was off): the updates from step 30 on follow the new optimiser settings',
    );
    expect(larsChange(defaultTrainConfig({ batchSize: 4, lars }), saved, 3, pipelineNames('train'))).toMatch(
      /with train\.weight_decay=0\.000001 \(was 0\.1\), train\.lars_all off \(was on\), train\.lars_clip off \(was on\):/,
    );
  });
});

describe('stepWarnings', () => {
  // A run of 10 steps (0..9) at a constant rate 0.1 after its warmup, with a queue of two batches.
  const base = defaultTrainConfig({
    batchSize: 32,
    steps: 10,
    schedule: { baseLr: 0.1, finalLr: 0.1, warmupSteps: 0, startWarmupLr: 0 },
    swav: { ...defaultTrainConfig().swav, freezePrototypesSteps: 0 },
    queue: { length: 64, startStep: 0 },
  });
  const at = (warmupSteps: number, freezePrototypesSteps: number, startStep: number) =>
    stepWarnings({
      ...base,
      schedule: { ...base.schedule, warmupSteps },
      swav: { ...base.swav, freezePrototypesSteps },
      queue: { ...base.queue, startStep },
    });

  it('says nothing while every step-valued setting falls within the run (the last step is --steps - 1)', () => {
    expect(at(9, 9, 9)).toEqual([]);
    expect(at(0, 0, 0)).toEqual([]);
  });

  it('warns for each of --warmup-steps, --freeze-prototypes and --queue-start at --steps or beyond, in one form', () => {
    expect(at(10, 0, 0)).toEqual([
      'warning: --warmup-steps 10 is not shorter than --steps 10: the rate climbs all run and never reaches --lr 0.1 (the last step trains at 0.09); lower --warmup-steps or raise --steps',
    ]);
    expect(at(0, 10, 0)).toEqual([
      'warning: --freeze-prototypes 10 is not shorter than --steps 10: the prototypes stay frozen all run and never train; lower --freeze-prototypes or raise --steps',
    ]);
    expect(at(0, 0, 25)).toEqual([
      'warning: --queue-start 25 is not shorter than --steps 10: the queue is filled all run but never joins the assignment (--queue-length 64 costs memory for nothing); lower --queue-start or raise --steps',
    ]);
    expect(at(10, 11, 12).map((w) => /^warning: (--[a-z-]+)/.exec(w)![1])).toEqual([
      '--warmup-steps',
      '--freeze-prototypes',
      '--queue-start',
    ]);
  });

  it('warns when the queue fills (a batch a step) only at --steps or after, whatever --queue-start', () => {
    const queue = (length: number) => stepWarnings({ ...base, queue: { length, startStep: 0 } });
    expect(queue(288)).toEqual([]); // 9 steps of 32 fill it: the last step (9) uses it
    expect(queue(289)).toEqual([
      'warning: --queue-length 289 fills after 10 steps of --batch 32, not fewer than --steps 10: the queue never joins the assignment; lower --queue-length or raise --steps',
    ]);
    // A --queue-start past the run says so on its own, once.
    expect(stepWarnings({ ...base, queue: { length: 3200, startStep: 10 } })).toHaveLength(1);
  });

  it("names a pipeline's train keys; a warmup that changes no rate is no warning", () => {
    const config = { ...base, swav: { ...base.swav, freezePrototypesSteps: 40 } };
    expect(stepWarnings(config, pipelineNames('train'))).toEqual([
      'warning: train.freeze_prototypes=40 is not shorter than train.steps 10: the prototypes stay frozen all run and never train; lower train.freeze_prototypes or raise train.steps',
    ]);
    const flat = { ...base, schedule: { ...base.schedule, warmupSteps: 20, startWarmupLr: 0.1 } };
    expect(stepWarnings(flat)).toEqual([]);
  });
});
