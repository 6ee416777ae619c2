import { describe, expect, it } from 'vitest';
import {
  dealShards,
  epochGroups,
  epochShards,
  inRanges,
  rankQuota,
  shuffleGroup,
  toRanges,
  windowGroups,
} from '../../src/augment/order.js';
import { prng, seedOf, shuffle } from '../../src/rng.js';
import type { UnitRecord } from '../../src/shards/dataset.js';

/** A unit as order.ts sees it: its id, and rows per record batch (what the shard footer says). */
interface Unit {
  unit: number;
  batches: number[];
}

const units = (n: number, batches = [5, 5, 3]): Unit[] => Array.from({ length: n }, (_, unit) => ({ unit, batches }));

interface Layout {
  seed: number;
  epoch: number;
  rank?: number;
  worldSize?: number;
  windowShards?: number;
  groupBatches?: number;
}

/**
 * An epoch's records (`unit:batch:row`) in stream order, composed from order.ts as the stream composes it,
 * starting at (group, offset): groups before the cursor's are never shuffled, so a resumed order can only
 * match if each group's permutation depends on nothing but its own indices.
 */
function epochOrder(
  all: Unit[],
  o: Layout,
  from = { group: 0, offset: 0 },
): { records: string[]; groupSizes: number[] } {
  const [windowShards, groupBatches] = [o.windowShards ?? 3, o.groupBatches ?? 2];
  const shards = epochShards(
    all as unknown as UnitRecord[],
    o.seed,
    o.epoch,
    o.rank ?? 0,
    o.worldSize ?? 1,
  ) as unknown as Unit[];
  const records: string[] = [];
  const groupSizes: number[] = [];
  let index = 0;
  for (let w = 0; w * windowShards < shards.length; w++) {
    const window = shards.slice(w * windowShards, (w + 1) * windowShards);
    for (const group of windowGroups(
      window.map((u) => u.batches.length),
      groupBatches,
      o.seed,
      o.epoch,
      w,
    )) {
      const rows = group.flatMap(({ shard, batch }) =>
        Array.from({ length: window[shard]!.batches[batch]! }, (_, r) => `${window[shard]!.unit}:${batch}:${r}`),
      );
      groupSizes.push(rows.length);
      if (index >= from.group) {
        const shuffled = shuffleGroup(rows, o.seed, o.epoch, index);
        records.push(...shuffled.slice(index === from.group ? from.offset : 0));
      }
      index++;
    }
  }
  return { records, groupSizes };
}

const everyRecord = (all: Unit[]) =>
  all.flatMap((u) => u.batches.flatMap((n, b) => Array.from({ length: n }, (_, r) => `${u.unit}:${b}:${r}`))).sort();

describe('epoch order', () => {
  const data = units(10);

  it('is the same for the same seed and epoch, whatever order the units are listed in', () => {
    const a = epochOrder(data, { seed: 3, epoch: 1 }).records;
    expect(epochOrder(data, { seed: 3, epoch: 1 }).records).toEqual(a);
    expect(epochOrder([...data].reverse(), { seed: 3, epoch: 1 }).records).toEqual(a);
  });

  it('holds every record exactly once per epoch', () => {
    for (const epoch of [0, 1, 7])
      expect([...epochOrder(data, { seed: 3, epoch }).records].sort()).toEqual(everyRecord(data));
  });

  it('differs between epochs and between seeds, at every level: shards, groups and records', () => {
    const orders = [
      epochOrder(data, { seed: 3, epoch: 0 }).records,
      epochOrder(data, { seed: 3, epoch: 1 }).records,
      epochOrder(data, { seed: 4, epoch: 0 }).records,
    ];
    for (const [i, j] of [
      [0, 1],
      [0, 2],
      [1, 2],
    ] as const) {
      const same = orders[i]!.filter((r, p) => orders[j]![p] === r).length;
      expect(same, `orders ${i} and ${j}`).toBeLessThan(orders[0]!.length / 4);
    }
    const ids = (epoch: number) => epochShards(data as unknown as UnitRecord[], 3, epoch, 0, 1).map((u) => u.unit);
    expect(ids(0)).not.toEqual(ids(1));
    expect(windowGroups([3, 3, 3], 2, 3, 0, 0)).not.toEqual(windowGroups([3, 3, 3], 2, 3, 1, 0));
    const rows = Array.from({ length: 20 }, (_, i) => i);
    expect(shuffleGroup([...rows], 3, 0, 5)).not.toEqual(shuffleGroup([...rows], 3, 1, 5));
    expect(shuffleGroup([...rows], 3, 0, 5)).not.toEqual(shuffleGroup([...rows], 3, 0, 6));
  });

  it('mixes records of several shards within a group', () => {
    const { records } = epochOrder(data, { seed: 3, epoch: 0, groupBatches: 4 });
    const firstGroupUnits = new Set(records.slice(0, 16).map((r) => r.split(':')[0]));
    expect(firstGroupUnits.size).toBeGreaterThan(1);
  });

  it('resumed from any cursor (group, offset), continues exactly where the uninterrupted order goes on', () => {
    for (const layout of [
      { seed: 3, epoch: 2 },
      { seed: 9, epoch: 0, windowShards: 4, groupBatches: 3 },
    ]) {
      const full = epochOrder(data, layout);
      let position = 0;
      full.groupSizes.forEach((size, group) => {
        for (const offset of [0, 1, size - 1]) {
          const resumed = epochOrder(data, layout, { group, offset }).records;
          expect(resumed, `group ${group} offset ${offset}`).toEqual(full.records.slice(position + offset));
        }
        position += size;
      });
    }
  });

  it('deals shards to ranks without overlap; together the ranks read every record once', () => {
    const orders = [0, 1, 2].map((rank) => epochOrder(data, { seed: 3, epoch: 1, rank, worldSize: 3 }).records);
    expect(orders.map((o) => o.length)).toEqual([52, 39, 39]); // 4, 3 and 3 shards of 13 records
    expect(orders.flat().sort()).toEqual(everyRecord(data));
  });
});

describe('the shard permutation', () => {
  it('is uniform: over many seeds, each of the 24 orders of 4 shards appears equally often', () => {
    const four = units(4) as unknown as UnitRecord[];
    const counts = new Map<string, number>();
    const n = 24_000;
    for (let seed = 0; seed < n; seed++) {
      const key = epochShards(four, seed, 0, 0, 1)
        .map((u) => u.unit)
        .join('');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    expect(counts.size).toBe(24);
    // Each count is binomial(24000, 1/24): mean 1000, sd 31; 850-1150 is beyond 4.8 sd.
    for (const [order, count] of counts) expect(count, order).toBeGreaterThan(850);
    for (const [order, count] of counts) expect(count, order).toBeLessThan(1150);
  });
});

// Dealt whole and round-robin, units of 50,13,37,1,64,20,45 records gave one of two ranks 160 and the other 70.
describe('dealing shards to ranks', () => {
  const sized = (records: number[]) =>
    records.map((n, unit) => ({ unit, records: n, batches: Math.ceil(n / 8) })) as unknown as UnitRecord[];
  const seven = sized([50, 13, 37, 1, 64, 20, 45]);

  it('balances committed records: a rank holds at most the fewest plus the records of its last unit', () => {
    for (const worldSize of [2, 3, 4, 7])
      for (let seed = 0; seed < 50; seed++) {
        const deal = dealShards(seven, seed, 3, worldSize);
        const ids = deal.shards.flat().map((u) => u.unit);
        expect(ids.sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
        deal.shards.forEach((s, rank) => expect(deal.records[rank]).toBe(s.reduce((n, u) => n + u.records, 0)));
        // When its last unit came, the rank held the fewest: what it holds past the quota is at most that unit.
        deal.shards.forEach((s, rank) =>
          expect(
            deal.records[rank]! - rankQuota(deal),
            `seed ${seed} rank ${rank} of ${worldSize}`,
          ).toBeLessThanOrEqual(s[s.length - 1]?.records ?? 0),
        );
        expect(rankQuota(deal)).toBe(Math.min(...deal.records));
      }
    // Round-robin dealing of seed 0's permutation gave 160 and 70.
    expect(dealShards(seven, 0, 0, 2).records).toEqual([115, 115]);
  });

  it('deals units of equal records exactly round-robin, as before balancing (cursors taken then stay valid)', () => {
    const roundRobin = (all: UnitRecord[], seed: number, epoch: number, rank: number, worldSize: number) =>
      shuffle(
        [...all].sort((a, b) => a.unit - b.unit),
        prng(seedOf(seed, epoch, 1)),
      ).filter((_, i) => i % worldSize === rank);
    for (const n of [1, 5, 12, 13])
      for (const worldSize of [1, 2, 3, 5, 16])
        for (const seed of [0, 7, 123]) {
          const all = sized(Array<number>(n).fill(25));
          for (let rank = 0; rank < worldSize; rank++)
            expect(epochShards(all, seed, 2, rank, worldSize), `${n} units, rank ${rank} of ${worldSize}`).toEqual(
              roundRobin(all, seed, 2, rank, worldSize),
            );
        }
  });

  it('breaks a tie by the round-robin rank, then the next ones in rotation', () => {
    // Permuted [A 10, B 0, C 10] to 3 ranks: A to 0; B to 1 (0 is not the fewest); C to 2, and a fourth to 1.
    const units = sized([10, 0, 10, 10]);
    for (let seed = 0; seed < 20; seed++) {
      const deal = dealShards(units, seed, 0, 3);
      const order = shuffle([...units], prng(seedOf(seed, 0, 1)));
      const want: number[][] = [[], [], []];
      const totals = [0, 0, 0];
      order.forEach((u, i) => {
        const rank = [0, 1, 2].map((k) => (i + k) % 3).reduce((a, b) => (totals[b]! < totals[a]! ? b : a));
        want[rank]!.push(u.unit);
        totals[rank]! += u.records;
      });
      expect(deal.shards.map((s) => s.map((u) => u.unit))).toEqual(want);
    }
  });

  it('is quick for many ranks and shards', () => {
    const many = sized(Array.from({ length: 100_000 }, (_, i) => 10 + (i % 37)));
    const t0 = performance.now();
    const deal = dealShards(many, 1, 0, 65536);
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(deal.shards.flat()).toHaveLength(100_000);
    expect(Math.max(...deal.records) - rankQuota(deal)).toBeLessThan(47);
  });

  it('gives a single rank no quota (it yields all it reads)', () => {
    expect(rankQuota(dealShards(seven, 0, 0, 1))).toBe(Infinity);
  });
});

describe('windowGroups', () => {
  it('cuts every batch of the window, once, into groups of at most groupBatches', () => {
    const counts = [3, 0, 4, 1];
    const groups = windowGroups(counts, 3, 1, 0, 2);
    expect(groups.map((g) => g.length)).toEqual([3, 3, 2]);
    const refs = groups.flat().map(({ shard, batch }) => `${shard}:${batch}`);
    expect(refs.sort()).toEqual(['0:0', '0:1', '0:2', '2:0', '2:1', '2:2', '2:3', '3:0']);
    expect(windowGroups([0, 0], 3, 1, 0, 0)).toEqual([]);
  });

  it('counts the groups of an epoch from the unit records, as the windows cut them', () => {
    const shards = [5, 0, 3, 2, 7].map((batches, unit) => ({ unit, records: batches * 4, batches }));
    const all = shards as unknown as UnitRecord[];
    const windows = [windowGroups([5, 0, 3], 3, 0, 0, 0), windowGroups([2, 7], 3, 0, 0, 1)];
    expect(epochGroups(all, 3, 3)).toBe(windows[0]!.length + windows[1]!.length);
    // A unit of 0 records has no batch to read, whatever its record says.
    expect(epochGroups([{ unit: 0, records: 0, batches: 3 }] as unknown as UnitRecord[], 3, 1)).toBe(0);
  });
});

describe('unit ranges', () => {
  it('compacts unit ids into sorted inclusive ranges and tests membership', () => {
    const ranges = toRanges([9, 1, 2, 3, 5, 10, 7]);
    expect(ranges).toEqual([
      [1, 3],
      [5, 5],
      [7, 7],
      [9, 10],
    ]);
    expect(toRanges([])).toEqual([]);
    const members = Array.from({ length: 12 }, (_, id) => id).filter((id) => inRanges(ranges, id));
    expect(members).toEqual([1, 2, 3, 5, 7, 9, 10]);
  });
});
