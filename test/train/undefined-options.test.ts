/** An option present but `undefined` means "the default" in train's entry points, as if the key were absent. */
import { describe, expect, it } from 'vitest';
import { CollapseWatch } from '../../src/train/collapse.js';
import { defaultTrainConfig, type TrainConfig } from '../../src/train/config.js';
import { loopOptions, type LoopOptions } from '../../src/train/trainer.js';

describe('explicit undefined options take the defaults', () => {
  it('defaultTrainConfig', () => {
    const unset = Object.fromEntries(
      Object.keys(defaultTrainConfig()).map((k) => [k, undefined]),
    ) as Partial<TrainConfig>;
    expect(defaultTrainConfig(unset)).toEqual(defaultTrainConfig());
    expect(defaultTrainConfig({ ...unset, blurP: 0 }).blurP).toBe(0);
  });

  it('loopOptions', () => {
    const out = { list: () => {}, getRange: () => {} }; // what checkStore asks of a store; nothing is read
    const required = { out, config: defaultTrainConfig(), batches: {} } as unknown as LoopOptions;
    // Every optional key, present and undefined.
    const optional = [
      'backend',
      'resume',
      'checkpointEvery',
      'keep',
      'logEvery',
      'signal',
      'log',
      'trainThreads',
      'onStep',
    ];
    const unset = { ...required, ...Object.fromEntries(optional.map((k) => [k, undefined])) } as LoopOptions;
    const { log, ...got } = loopOptions(unset);
    const { log: defaultLog, ...want } = loopOptions(required);
    expect(got).toEqual(want);
    expect(typeof log).toBe(typeof defaultLog);
  });

  it('CollapseWatch', () => {
    const watch = new CollapseWatch({
      prototypes: 100,
      tolerance: undefined,
      intervals: undefined,
      minFall: undefined,
    });
    const lnK = Math.log(100);
    expect([1, 2, 3].map((step) => watch.observe(step, lnK))).toEqual([null, null, expect.any(String)]);
  });
});
