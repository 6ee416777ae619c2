// Shards dealt whole and round-robin gave ranks very unequal epochs: units of 50,13,37,1,64,20,45 records
// gave two ranks 160 and 70, so a DDP rank iterating one epoch finished early and the others hung on a
// collective, and with unbounded epochs the small rank's records were seen ~2.3x as often.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dealShards, rankQuota } from '../../src/augment/order.js';
import { CursorError, DatasetStream, START, type StreamCursor, type StreamOptions } from '../../src/augment/stream.js';
import { NoDataError } from '../../src/errors.js';
import { listUnits, type UnitRecord } from '../../src/shards/dataset.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { writeDataset } from '../helpers/dataset.js';

const SIZES = [50, 13, 37, 1, 64, 20, 45];
const TOTAL = 230;

let dir: string;
let store: Store;
let keys: string[];
let units: UnitRecord[];

/** A dataset at `dir/name` of one unit per entry of `sizes` (records), 6 rows per record batch. */
async function unitsOf(name: string, sizes: number[]): Promise<{ store: Store; keys: string[] }> {
  const at = await openStore(join(dir, name));
  const all: string[] = [];
  for (const [unit, perUnit] of sizes.entries())
    all.push(...(await writeDataset(at, { units: 1, perUnit, batchRows: 6, firstUnit: unit })));
  return { store: at, keys: all };
}

interface Item {
  key: string;
  epoch: number;
  position: number;
  cursor: StreamCursor;
}

async function run(options: StreamOptions, on: Store = store): Promise<{ items: Item[]; stream: DatasetStream }> {
  const stream = new DatasetStream(on, options);
  const items: Item[] = [];
  for await (const { record, epoch, position, cursor } of stream)
    items.push({ key: record.key, epoch, position, cursor });
  return { items, stream };
}
const keysOf = (items: Item[]) => items.map((i) => i.key);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-stream-ranks-'));
  ({ store, keys } = await unitsOf('seven', SIZES));
  units = await listUnits(store);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('DatasetStream: ranks', () => {
  const base = { seed: 0, windowShards: 2, groupBatches: 2 };

  it.each([2, 3, 7])('with worldSize %i, gives every rank an epoch of the same length, disjoint', async (worldSize) => {
    for (const epoch of [0, 1]) {
      const cursor = { ...START, epoch };
      const ranks = await Promise.all(
        Array.from({ length: worldSize }, (_, rank) => run({ ...base, rank, worldSize, cursor, epochs: epoch + 1 })),
      );
      const lengths = ranks.map(({ items }) => items.length);
      expect(new Set(lengths).size, `epoch ${epoch}: ${lengths.join(', ')}`).toBe(1);
      expect(lengths[0]).toBeGreaterThan(0);
      const union = ranks.flatMap(({ items }) => keysOf(items));
      expect(new Set(union).size).toBe(union.length);
      expect(union.every((k) => keys.includes(k))).toBe(true);
      // What no rank yielded is what the ranks counted as trimmed, each less than the largest unit (64).
      const trimmed = ranks.map(({ stream }) => stream.stats.trimmed);
      expect(union.length + trimmed.reduce((a, b) => a + b, 0)).toBe(TOTAL);
      for (const t of trimmed) expect(t).toBeLessThan(64);
      for (const { stream } of ranks) expect(stream.stats.records).toBe(lengths[0]);
    }
  });

  it('cuts at most the last unit of a rank, here fewer than the largest unit, and nothing for one rank', async () => {
    const two = await Promise.all([0, 1].map((rank) => run({ ...base, rank, worldSize: 2, epochs: 1 })));
    expect(two.map(({ items }) => items.length)).toEqual([115, 115]); // round-robin dealing gave 160 and 70
    expect(two.map(({ stream }) => stream.stats.trimmed)).toEqual([0, 0]);
    const three = await Promise.all([0, 1, 2].map((rank) => run({ ...base, rank, worldSize: 3, epochs: 1 })));
    const lengths = three.map(({ items }) => items.length);
    expect(lengths).toEqual([65, 65, 65]); // dealt 83, 82, 65
    expect(three.map(({ stream }) => stream.stats.trimmed)).toEqual([18, 17, 0]);
    const one = await run({ ...base, epochs: 1 });
    expect(one.items).toHaveLength(TOTAL);
    expect(one.stream.stats.trimmed).toBe(0);
  });

  it('resumed mid-epoch on a rank, yields exactly the rest, up to the cut and on into the next epoch', async () => {
    const options = { ...base, rank: 1, worldSize: 3, epochs: 2 };
    const straight = (await run(options)).items;
    // What rank 1 holds past the quota in each epoch (dealt anew per epoch): 17 of 82, then 28 of 87.
    const past = [0, 1].map((e) => {
      const deal = dealShards(units, base.seed, e, 3);
      return deal.records[1]! - rankQuota(deal);
    });
    expect(past).toEqual([17, 28]);
    const first = straight.filter((i) => i.epoch === 0).length;
    expect(first).toBe(65);
    expect(straight).toHaveLength(65 + 59);
    for (const k of [1, 7, 12, 40, first - 2, first - 1, first, first + 1, 100, straight.length - 1]) {
      const { items, stream } = await run({ ...options, cursor: straight[k - 1]!.cursor });
      expect(keysOf(items), `after ${k}`).toEqual(keysOf(straight.slice(k)));
      expect(items[0]?.position).toBe(straight[k]?.position);
      // A stream that reaches an epoch's cut counts what it cuts, once, even resumed right at the cut.
      expect(stream.stats.trimmed, `after ${k}`).toBe(k <= first ? past[0]! + past[1]! : past[1]);
    }
    // The cursor after the last record before the cut is at the quota: epoch 0 has nothing more.
    expect(straight[first - 1]!.cursor).toMatchObject({ epoch: 0, position: first });
    expect(straight[first]).toMatchObject({ epoch: 1, position: 0 });
  });

  it('refuses a cursor whose position is past the quota (as one of unbalanced dealing could be)', async () => {
    const { items } = await run({ ...base, rank: 0, worldSize: 3, epochs: 1 });
    const cursor = { ...items[10]!.cursor, position: 70 };
    const resumed = run({ ...base, rank: 0, worldSize: 3, epochs: 1, cursor });
    await expect(resumed).rejects.toThrow(CursorError);
    await expect(resumed).rejects.toThrow(
      /^the stream cursor's position 70 is past the end of epoch 0: each of its 3 ranks yields 65 records/,
    );
  });

  it('deals units of equal size round-robin, so a cursor of that dealing resumes as it did', async () => {
    const equal = await openStore(join(dir, 'equal'));
    await writeDataset(equal, { units: 6, perUnit: 25, batchRows: 7 });
    // Taken from the stream as it dealt before balancing: rank 1 of 3 after record 20, and the next records.
    const cursor: StreamCursor = {
      epoch: 0,
      group: 1,
      offset: 6,
      position: 20,
      units: [[0, 5]],
      order: { seed: 5, rank: 1, worldSize: 3, windowShards: 3, groupBatches: 2 },
    };
    const { items, stream } = await run({ ...cursor.order!, epochs: 1, cursor }, equal);
    expect(keysOf(items).slice(0, 6)).toEqual([
      '000000-00022',
      '000002-00021',
      '000000-00006',
      '000002-00005',
      '000002-00006',
      '000000-00003',
    ]);
    expect(items).toHaveLength(30);
    expect(stream.stats.trimmed).toBe(0);
  });
});

describe('DatasetStream: more ranks than units holding records', () => {
  it('is a NoDataError on every rank, saying to lower worldSize', async () => {
    const { store: two } = await unitsOf('two', [10, 5]);
    const first = async (rank: number) => {
      for await (const item of new DatasetStream(two, { rank, worldSize: 3 })) return item;
    };
    for (const rank of [0, 1, 2]) {
      await expect(first(rank)).rejects.toThrow(NoDataError);
      await expect(first(rank)).rejects.toThrow(/use a worldSize of at most 2, or more units\)$/);
    }
    await expect(first(0)).rejects.toThrow(
      /\(rank 0 of 3: every rank yields as many records per epoch as the rank with the fewest, and shards are dealt to ranks whole: 2 units holding records leave some of 3 ranks none, so every rank yields 0; /,
    );
    await expect(first(2)).rejects.toThrow(/\(rank 2 of 3: shards are dealt to ranks whole, and the 2 shards went/);
  });
});
