// The library's readers given what a plain JavaScript caller may pass by mistake: a URL string where a Store is
// wanted, a shard size or a batch number out of range. Each is a ConfigError saying what to pass: a TypeError
// from inside a read says nothing, and an InvalidShardError would call a good shard damaged (readers skip those).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, inspectDataset, listUnits, loadBackbone, ShardReader } from '../../src/index.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { writePhotoDataset } from '../helpers/dataset.js';

let dir: string;
let store: Store;
let shard: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-store-args-'));
  store = await openStore(join(dir, 'ds'));
  await writePhotoDataset(store, { units: 1, perUnit: 3 });
  shard = (await listUnits(store))[0]!.shard;
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('a Store wanted, something else given', () => {
  it.each([
    ['listUnits', (s: unknown) => listUnits(s as Store)],
    ['inspectDataset', (s: unknown) => inspectDataset(s as Store)],
    ['ShardReader.open', (s: unknown) => ShardReader.open(s as Store, 'shards/000000.arrow')],
    ['loadBackbone', (s: unknown) => loadBackbone(s as Store)],
  ])('%s refuses a URL string naming openStore, and null', async (_name, call) => {
    await expect(call('./data/dataset')).rejects.toThrow(
      /must be a Store from openStore\(url\), got "\.\/data\/dataset": open it with `await openStore\("\.\/data\/dataset"\)`/,
    );
    await expect(call(null)).rejects.toThrow(ConfigError);
  });
});

describe('ShardReader', () => {
  it('refuses a size that is no whole number of bytes, before any read', async () => {
    for (const size of [-5, Number.NaN, 2.5])
      await expect(ShardReader.open(store, shard, { size })).rejects.toThrow(
        /^size \(the shard's bytes\) must be an integer >= 0, got /,
      );
  });

  it('refuses a batch number outside the shard as the caller error it is, not a damaged shard', async () => {
    const reader = await ShardReader.open(store, shard);
    expect(reader.numBatches).toBeGreaterThan(0);
    for (const i of [-1, Number.NaN, 0.5, reader.numBatches])
      await expect(reader.readRecords(i)).rejects.toThrow(
        new ConfigError(`record batch must be an integer from 0 to ${reader.numBatches - 1}, got ${i}`),
      );
    expect((await reader.readRecords(0)).length).toBeGreaterThan(0);
  });
});
