import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUGMENT_LIMITS, augmentConfig, cropGroups, parseCrops, type CropSpec } from '../../src/augment/config.js';
import { AUGMENT_OPTIONS } from '../../src/augment/options.js';
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
    ['a scale in exponent notation', '2x224@1e-3-1', /MIN and MAX plain decimals \(0\.001, not 1e-3/],
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
    [
      'a 2-channel std',
      { std: [0.2, 0.2] },
      /^std must be 3 finite positive numbers \(R, G, B\), each from 1\/255 to 1, got 0.2,0.2$/,
    ],
    ['an infinite std', { std: [Infinity, 1, 1] }, /^std must be 3 finite positive numbers .* got Infinity,1,1$/],
    ['a zero std', { std: [1, 0, 1] }, /^std must be 3 finite positive/],
    ['a NaN mean', { mean: [NaN, 0, 0] }, /^mean must be 3 finite numbers \(R, G, B\), each from 0 to 1, got NaN,0,0$/],
    ['a 1-channel mean', { mean: [0.5] }, /^mean must be 3 finite numbers/],
  ])('refuses %s', (_what, augment, message) => {
    const make = () => new MultiCropLoader(store, { batchSize: 2, threads: 1, augment: augment as object });
    expect(make).toThrow(ConfigError);
    expect(make).toThrow(message);
  });
});

// Options were checked for a lower bound only: brightness Infinity made NaN crops, ratio [1, Infinity] was taken.
describe('augment options: every number finite and in its range', () => {
  const refused: Array<[string, object, RegExp]> = [
    [
      'an infinite brightness',
      { brightness: Infinity, jitterP: 1 },
      /^brightness must be a number from 0 to 10, got Infinity$/,
    ],
    ['a huge contrast', { contrast: 1e30 }, /^contrast must be a number from 0 to 10, got 1e\+30$/],
    ['a NaN saturation', { saturation: NaN }, /^saturation must be a number from 0 to 10, got NaN$/],
    ['a hue past half a turn', { hue: 0.6 }, /^hue must be a number from 0 to 0.5, got 0.6$/],
    ['a NaN flip probability', { flipP: NaN }, /^flipP must be a number from 0 to 1, got NaN$/],
    ['a probability as text', { jitterP: '0.5' }, /^jitterP must be a number from 0 to 1, got "0.5"$/],
    [
      'an infinite ratio',
      { ratio: [1, Infinity] },
      /^ratio must be \[min, max\] with min <= max, each from 0.01 to 100, got 1,Infinity$/,
    ],
    ['a ratio of 1e-300', { ratio: [1e-300, 1e-300] }, /^ratio must be/],
    ['a ratio out of order', { ratio: [2, 1] }, /^ratio must be/],
    ['a ratio of one number', { ratio: [1] }, /^ratio must be/],
    [
      'a blur sigma that squares to 0',
      { blurSigma: [1e-200, 1] },
      /^blurSigma must be .* from 0.01 to 32, got 1e-200,1$/,
    ],
    ['an infinite blur sigma', { blurSigma: [1, Infinity] }, /^blurSigma must be/],
    [
      'a std below one level',
      { std: [1e-30, 1e-30, 1e-30] },
      /^std must be .* from 1\/255 to 1, got 1e-30,1e-30,1e-30$/,
    ],
    ['a mean off the 0-1 scale', { mean: [1e30, 0, 0] }, /^mean must be .* from 0 to 1, got 1e\+30,0,0$/],
  ];
  it.each(refused)('refuses %s with a ConfigError naming the option', (_what, augment, message) => {
    expect(() => augmentConfig(augment)).toThrow(ConfigError);
    expect(() => augmentConfig(augment)).toThrow(message);
    expect(() => new MultiCropLoader(store, { batchSize: 2, threads: 1, augment })).toThrow(message);
  });

  it('takes the ends of every range', () => {
    const ends = {
      flipP: 1,
      jitterP: 0,
      greyP: 1,
      blurP: 0,
      brightness: 10,
      contrast: 0,
      saturation: 10,
      hue: 0.5,
      ratio: [0.01, 100] as [number, number],
      blurSigma: [0.01, 32] as [number, number],
      mean: [0, 1, 0.5] as [number, number, number],
      std: [1 / 255, 1, 0.5] as [number, number, number],
    };
    expect(augmentConfig(ends)).toMatchObject(ends);
  });

  it('gives the CLI and pipeline blur option the bounds of blurP', () => {
    expect(AUGMENT_OPTIONS.blur.bounds).toBe(`number ${AUGMENT_LIMITS.blurP[0]} to ${AUGMENT_LIMITS.blurP[1]}`);
  });
});
