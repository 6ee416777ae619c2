import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetStream, type StreamCursor, type StreamOptions } from '../../src/augment/stream.js';
import { NotFoundError } from '../../src/errors.js';
import { CachedStore } from '../../src/shards/store-cache.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { writeDataset } from '../helpers/dataset.js';

let dir: string;
let store: Store;
let allKeys: string[];

async function take(options: StreamOptions, n = Infinity, on: Store = store) {
  const items: Array<{ key: string; epoch: number; position: number; cursor: StreamCursor }> = [];
  if (n <= 0) return items;
  for await (const item of new DatasetStream(on, options)) {
    items.push({ key: item.record.key, epoch: item.epoch, position: item.position, cursor: item.cursor });
    if (items.length >= n) break;
  }
  return items;
}
const keysOf = (items: Array<{ key: string }>) => items.map((i) => i.key);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-stream-'));
  store = await openStore(join(dir, 'ds'));
  allKeys = await writeDataset(store, { units: 6, perUnit: 25, batchRows: 7 });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('DatasetStream', () => {
  const base = { seed: 5, windowShards: 3, groupBatches: 2 };

  it('yields every record once per epoch, shuffled across shards, the same for the same seed', async () => {
    const a = await take({ ...base, epochs: 1 });
    expect(new Set(keysOf(a))).toEqual(new Set(allKeys));
    expect(a).toHaveLength(allKeys.length);
    expect(keysOf(await take({ ...base, epochs: 1 }))).toEqual(keysOf(a));
    expect(keysOf(a)).not.toEqual([...allKeys]);
    // The first 14 records (one group of two batches) already come from more than one shard.
    expect(new Set(keysOf(a).slice(0, 14).map((k) => k.slice(0, 6))).size).toBeGreaterThan(1);
    expect(a.map((i) => i.position)).toEqual(a.map((_, i) => i));
  });

  it('gives different orders for different epochs and seeds', async () => {
    const two = await take({ ...base, epochs: 2 });
    const e0 = keysOf(two.filter((i) => i.epoch === 0));
    const e1 = keysOf(two.filter((i) => i.epoch === 1));
    expect(new Set(e1)).toEqual(new Set(e0));
    expect(e1).not.toEqual(e0);
    expect(keysOf(await take({ ...base, seed: 6, epochs: 1 }))).not.toEqual(e0);
  });

  it('splits shards between ranks without overlap', async () => {
    const ranks = await Promise.all([0, 1, 2].map((rank) => take({ ...base, rank, worldSize: 3, epochs: 1 })));
    const union = ranks.flatMap(keysOf);
    expect(union).toHaveLength(allKeys.length);
    expect(new Set(union)).toEqual(new Set(allKeys));
    for (const r of ranks) expect(r.length).toBe(50); // 6 shards of 25 dealt to 3 ranks
  });

  it('resumes from a cursor exactly where an uninterrupted stream goes on, across groups and epochs', async () => {
    const straight = await take({ ...base, epochs: 2 });
    for (const k of [1, 13, 14, 15, 75, 149, 150, 151, 230]) {
      const resumed = await take({ ...base, epochs: 2, cursor: straight[k - 1]!.cursor });
      expect(keysOf(resumed), `after ${k}`).toEqual(keysOf(straight.slice(k)));
      expect(resumed[0]?.position).toBe(straight[k]?.position);
    }
    // A cursor survives JSON (it is stored in checkpoints).
    const json = JSON.parse(JSON.stringify(straight[99]!.cursor)) as StreamCursor;
    expect(keysOf(await take({ ...base, epochs: 2, cursor: json }))).toEqual(keysOf(straight.slice(100)));
  });

  it('keeps an epoch on its own units when new ones are committed mid-epoch', async () => {
    const local = await openStore(join(dir, 'grow'));
    await writeDataset(local, { units: 2, perUnit: 10 });
    const first = await take({ ...base, epochs: 1 }, 5, local);
    await writeDataset(local, { units: 1, perUnit: 10, firstUnit: 2 });
    const rest = await take({ ...base, epochs: 2, cursor: first[4]!.cursor }, Infinity, local);
    const epoch0 = [...keysOf(first), ...keysOf(rest.filter((i) => i.epoch === 0))];
    expect(epoch0).toHaveLength(20);
    expect(rest.filter((i) => i.epoch === 1)).toHaveLength(30); // the next epoch sees the new unit
  });

  it('skips a corrupt shard with a counted reason', async () => {
    const bad = await openStore(join(dir, 'bad'));
    await writeDataset(bad, { units: 3, perUnit: 10 });
    await writeFile(join(dir, 'bad', 'shards', '000001.arrow'), Buffer.alloc(500, 7));
    const stream = new DatasetStream(bad, { ...base, epochs: 1 });
    const keys: string[] = [];
    for await (const item of stream) keys.push(item.record.key);
    expect(keys).toHaveLength(20);
    expect(keys.some((k) => k.startsWith('000001'))).toBe(false);
    expect(stream.stats.skipped).toEqual({ bad_shard: 1 });
  });

  it('refuses an empty store, and with follow waits for the first unit', async () => {
    const empty = await openStore(join(dir, 'empty'));
    await expect(take({ epochs: 1 }, 1, empty)).rejects.toThrow(NotFoundError);
    const waiting = take({ epochs: 1, follow: true, pollMs: 20 }, 3, empty);
    await new Promise((r) => setTimeout(r, 100));
    await writeDataset(empty, { units: 1, perUnit: 5 });
    expect(await waiting).toHaveLength(3);
  });

  it('reads through a local shard cache', async () => {
    const cached = new CachedStore(store, join(dir, 'cache'));
    expect(keysOf(await take({ ...base, epochs: 1 }, Infinity, cached))).toEqual(keysOf(await take({ ...base, epochs: 1 })));
    const local = await openStore(join(dir, 'cache'));
    const cachedKeys: string[] = [];
    for await (const info of local.list('shards/')) cachedKeys.push(info.key);
    expect(cachedKeys).toHaveLength(6);
  });

  it('validates options at the boundary', () => {
    expect(() => new DatasetStream(store, { rank: 2, worldSize: 2 })).toThrow(/rank/);
    expect(() => new DatasetStream(store, { groupBatches: 0 })).toThrow(/groupBatches/);
    expect(() => new DatasetStream(store, { cursor: { epoch: -1 } as StreamCursor })).toThrow(/cursor/);
  });
});
