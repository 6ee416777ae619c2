// What a plain JavaScript caller of the train stage may pass: each bad value a ConfigError naming it, before
// any backend starts or store is read (not a TypeError from deep inside, nor another option's name).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { trainOnStore, type TrainOnStoreOptions } from '../../src/jobs/train.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { defaultTrainConfig, type TrainConfig } from '../../src/train/config.js';

let dir: string;
let data: Store;
let out: Store;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-train-hostile-'));
  data = await openStore(join(dir, 'data'));
  out = await openStore(join(dir, 'out'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** trainOnStore's rejection for these options, which must be a ConfigError. */
async function refusal(options: unknown): Promise<string> {
  const err = await trainOnStore(options as TrainOnStoreOptions).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  return (err as Error).message;
}

describe('trainOnStore from JavaScript', () => {
  it('names a missing or partial config and points to defaultTrainConfig', async () => {
    expect(await refusal({ data, out })).toMatch(/^config: .*defaultTrainConfig/);
    const partial = { model: 'custom:2,8,8,2,8', batchSize: 4, steps: 10, crops: '2x16,2x8' };
    expect(await refusal({ data, out, config: partial })).toMatch(/^config\.jitterStrength: .*defaultTrainConfig/);
    const noSwav: Partial<TrainConfig> = { ...defaultTrainConfig(), swav: undefined };
    expect(await refusal({ data, out, config: noSwav })).toMatch(/^config\.swav: /);
    const badField = { ...defaultTrainConfig(), queue: { length: '0', startStep: 0 } };
    expect(await refusal({ data, out, config: badField })).toMatch(/^config\.queue\.length: /);
    // Values are checked as defaultTrainConfig checks them.
    expect(await refusal({ data, out, config: { ...defaultTrainConfig(), batchSize: 0 } })).toMatch(/^batch size/);
  });

  it('names the option that is no function, and an out that is no store', async () => {
    const config = defaultTrainConfig({ model: 'custom:2,8,8,2,8', batchSize: 4, steps: 1 });
    expect(await refusal({ data, out, config, log: 'x' })).toBe('log must be a function, got "x"');
    expect(await refusal({ data, out, config, onStep: 3 })).toBe('onStep must be a function, got 3');
    expect(await refusal({ data, out: '/tmp/x', config })).toMatch(/^out \(the checkpoint store\) must be a Store/);
    expect(await refusal(null)).toMatch(/^train options must be an object/);
  });
});

describe('defaultTrainConfig', () => {
  it('refuses a field that TrainConfig does not have, naming it and the fields', () => {
    const misspelt = { bacth: 3 } as unknown as Partial<TrainConfig>;
    expect(() => defaultTrainConfig(misspelt)).toThrow(/^unknown train config field "bacth": the fields are model, /);
    expect(() => defaultTrainConfig('x' as unknown as Partial<TrainConfig>)).toThrow(ConfigError);
    expect(defaultTrainConfig({ recompute: 'on' }).recompute).toBe('on');
  });
});
