// Advice after a divergence names the setting that caused it: lowering --lr does not help against a weight
// decay of 1e30.
import { describe, expect, it } from 'vitest';
import { checkCompatible, defaultTrainConfig } from '../../src/train/config.js';
import { pipelineNames } from '../../src/options/declare.js';
import { DEFAULT_LARS } from '../../src/train/optim.js';
import { divergenceAdvice } from '../../src/train/resume.js';

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
