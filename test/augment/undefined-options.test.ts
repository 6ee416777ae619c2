/**
 * An option present but `undefined` (an unset flag passed on as `{ cursor: o.cursor }`) means "the default":
 * every public entry point of augment behaves as if the key were absent.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { augmentConfig, DEFAULT_AUGMENT, type AugmentOptions } from '../../src/augment/config.js';
import { MultiCropLoader, type LoaderOptions } from '../../src/augment/loader.js';
import { DatasetStream, type StreamOptions } from '../../src/augment/stream.js';
import { photoJpeg } from '../../src/fixtures/images.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { writeDataset } from '../helpers/dataset.js';

let dir: string;
let store: Store;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-undef-'));
  store = await openStore(join(dir, 'ds'));
  const images = await Promise.all(Array.from({ length: 8 }, (_, i) => photoJpeg(i, { width: 64, height: 48 })));
  await writeDataset(store, { units: 2, perUnit: 4, batchRows: 2, image: (i) => images[i]! });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Every optional stream option, present and undefined. */
const unsetStream: StreamOptions = {
  seed: undefined,
  rank: undefined,
  worldSize: undefined,
  windowShards: undefined,
  groupBatches: undefined,
  prefetchBytes: undefined,
  follow: undefined,
  pollMs: undefined,
  cursor: undefined,
  sharedMemory: undefined,
  signal: undefined,
  onWait: undefined,
  onSkip: undefined,
};

async function keys(stream: DatasetStream): Promise<string[]> {
  const out: string[] = [];
  for await (const item of stream) out.push(item.record.key);
  return out;
}

describe('explicit undefined options take the defaults', () => {
  it('DatasetStream', async () => {
    const got = await keys(new DatasetStream(store, { ...unsetStream, epochs: 1 }));
    expect(got).toEqual(await keys(new DatasetStream(store, { epochs: 1 })));
    expect(got).toHaveLength(8);
  });

  it('MultiCropLoader (its stream and its augmentation)', async () => {
    const unsetAugment: AugmentOptions = Object.fromEntries(Object.keys(DEFAULT_AUGMENT).map((k) => [k, undefined]));
    const options: LoaderOptions = {
      ...unsetStream,
      batchSize: 4,
      epochs: 1,
      threads: 1,
      inflight: undefined,
      cropDtype: undefined,
      augment: { ...unsetAugment, crops: '2x16@0.3-1' },
    };
    const loader = new MultiCropLoader(store, options);
    const rows: number[] = [];
    for await (const batch of loader) {
      rows.push(batch.keys.length);
      expect(batch.crops.every((c) => c.data instanceof Float32Array)).toBe(true);
    }
    expect(rows.reduce((a, b) => a + b, 0)).toBe(8);
  });

  it('augmentConfig', () => {
    const unset: AugmentOptions = Object.fromEntries(Object.keys(DEFAULT_AUGMENT).map((k) => [k, undefined]));
    expect(augmentConfig(unset)).toEqual(DEFAULT_AUGMENT);
    expect(augmentConfig({ ...unset, blurP: 0 }).blurP).toBe(0);
  });
});
