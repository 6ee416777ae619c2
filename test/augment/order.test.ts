import { describe, expect, it } from 'vitest';
import { epochShards, inRanges, shuffleGroup, toRanges, windowGroups } from '../../src/augment/order.js';
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

describe('windowGroups', () => {
  it('cuts every batch of the window, once, into groups of at most groupBatches', () => {
    const counts = [3, 0, 4, 1];
    const groups = windowGroups(counts, 3, 1, 0, 2);
    expect(groups.map((g) => g.length)).toEqual([3, 3, 2]);
    const refs = groups.flat().map(({ shard, batch }) => `${shard}:${batch}`);
    expect(refs.sort()).toEqual(['0:0', '0:1', '0:2', '2:0', '2:1', '2:2', '2:3', '3:0']);
    expect(windowGroups([0, 0], 3, 1, 0, 0)).toEqual([]);
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
