import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { augmentConfig, cropGroups, parseCrops, type CropSpec } from '../../src/augment/config.js';
import { MultiCropLoader } from '../../src/augment/loader.js';
import { ConfigError } from '../../src/errors.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { writePhotoDataset } from '../helpers/dataset.js';

let dir: string;
let store: Store;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-augment-config-'));
  store = await openStore(join(dir, 'data'));
  await writePhotoDataset(store, { units: 1, perUnit: 4 });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('crop specs at the public boundary', () => {
  it('takes the spec string and the parsed groups alike', () => {
    const spec = '1x32@0.3-1,2x16';
    const groups = [
      { count: 1, size: 32, scale: [0.3, 1] },
      { count: 2, size: 16, scale: [0.08, 1] },
    ];
    expect(parseCrops(spec)).toEqual(groups);
    expect(cropGroups(spec)).toEqual(groups);
    expect(augmentConfig({ crops: spec }).crops).toEqual(groups);
    expect(augmentConfig({ crops: parseCrops(spec) }).crops).toEqual(groups);
  });

  it('streams batches from a loader given the spec as a string', async () => {
    const loader = new MultiCropLoader(store, {
      batchSize: 2,
      epochs: 1,
      threads: 1,
      augment: { crops: '1x32@0.3-1,2x16@0.05-0.3' },
    });
    const sizes: number[][] = [];
    for await (const batch of loader) {
      sizes.push(batch.crops.map((c) => c.size));
      expect(batch.crops[0]!.data).toHaveLength(2 * 32 * 32 * 3);
      batch.release();
    }
    expect(sizes).toEqual([
      [32, 16, 16],
      [32, 16, 16],
    ]);
  });

  const invalid: Array<[string, unknown, RegExp]> = [
    ['a number', 42, /crops must be a spec string .* got number 42/],
    ['null', null, /crops must be a spec string .* got null/],
    ['an object', { count: 2, size: 96 }, /crops must be a spec string .* got object/],
    ['an empty array', [], /no crop groups/],
    ['a group without scale', [{ count: 2, size: 96 }], /crop group 0 needs scale/],
    [
      'a fractional count',
      [{ count: 1.5, size: 96, scale: [0.1, 1] }],
      /crop count must be 1-64 in crop group 0, got number 1.5/,
    ],
    [
      'a size as text',
      [{ count: 1, size: '96', scale: [0.1, 1] }],
      /crop size must be 8-1024 in crop group 0, got string 96/,
    ],
    ['scales out of order', [{ count: 1, size: 96, scale: [0.5, 0.1] }], /crop scale must satisfy/],
    ['a bad spec string', '2x', /crop group "2x" is not COUNTxSIZE/],
  ];
  for (const [what, crops, message] of invalid) {
    it(`refuses ${what} with a ConfigError, before any worker starts`, () => {
      const make = () =>
        new MultiCropLoader(store, { batchSize: 2, threads: 1, augment: { crops: crops as CropSpec } });
      expect(make).toThrow(ConfigError);
      expect(make).toThrow(message);
    });
  }

  // 8-bit crops carry mean and std to the trainer, which normalises with them: each must be three finite
  // numbers (std positive), or a GPU kernel fails to compile and the CPU trains on infinities.
  it.each([
    ['a 2-channel std', { std: [0.2, 0.2] }, /^std must be 3 finite positive numbers \(R, G, B\), got 0.2,0.2$/],
    ['an infinite std', { std: [Infinity, 1, 1] }, /^std must be 3 finite positive numbers .* got Infinity,1,1$/],
    ['a zero std', { std: [1, 0, 1] }, /^std must be 3 finite positive/],
    ['a NaN mean', { mean: [NaN, 0, 0] }, /^mean must be 3 finite numbers \(R, G, B\), got NaN,0,0$/],
    ['a 1-channel mean', { mean: [0.5] }, /^mean must be 3 finite numbers/],
  ])('refuses %s', (_what, augment, message) => {
    const make = () => new MultiCropLoader(store, { batchSize: 2, threads: 1, augment: augment as object });
    expect(make).toThrow(ConfigError);
    expect(make).toThrow(message);
  });
});
