/**
 * The order of an epoch, a pure function of (seed, epoch, the epoch's units, rank, worldSize):
 *
 *   1. shards (units) are permuted, then dealt round-robin to ranks;
 *   2. a rank's shards are taken in windows of `windowShards`; the record batches of a window are permuted
 *      and cut into groups of `groupBatches` batches;
 *   3. the records of a group are permuted.
 *
 * So records mix across several shards while memory holds only a few groups, and a position is addressable
 * as (group, offset): resuming opens shard footers up to the cursor's group, and reads nothing else before it.
 */
import { prng, seedOf, shuffle } from '../rng.js';
import type { UnitRecord } from '../shards/dataset.js';

/** Salts keep the permutations of one (seed, epoch) independent of each other. */
const SHARD_SALT = 1;
const WINDOW_SALT = 2;
const GROUP_SALT = 3;

export function epochShards(
  units: readonly UnitRecord[],
  seed: number,
  epoch: number,
  rank: number,
  worldSize: number,
): UnitRecord[] {
  const order = shuffle(
    [...units].sort((a, b) => a.unit - b.unit),
    prng(seedOf(seed, epoch, SHARD_SALT)),
  );
  return order.filter((_, i) => i % worldSize === rank);
}

export interface BatchRef {
  /** Index of the shard within its window. */
  shard: number;
  batch: number;
}

/** Permutes a window's batches and cuts them into groups. `batchCounts[i]` = batches in shard i. */
export function windowGroups(
  batchCounts: readonly number[],
  groupBatches: number,
  seed: number,
  epoch: number,
  window: number,
): BatchRef[][] {
  const refs: BatchRef[] = batchCounts.flatMap((n, shard) =>
    Array.from({ length: n }, (_, batch) => ({ shard, batch })),
  );
  shuffle(refs, prng(seedOf(seed, epoch, WINDOW_SALT, window)));
  const groups: BatchRef[][] = [];
  for (let i = 0; i < refs.length; i += groupBatches) groups.push(refs.slice(i, i + groupBatches));
  return groups;
}

/** Permutes the records of group `group` (its global index within the epoch). */
export function shuffleGroup<T>(records: T[], seed: number, epoch: number, group: number): T[] {
  return shuffle(records, prng(seedOf(seed, epoch, GROUP_SALT, group)));
}

/** Unit ids as sorted inclusive ranges, [[0, 99], [101, 150]]: compact enough to keep in every cursor. */
export function toRanges(ids: readonly number[]): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (const id of [...ids].sort((a, b) => a - b)) {
    const last = ranges[ranges.length - 1];
    if (last && id === last[1] + 1) last[1] = id;
    else ranges.push([id, id]);
  }
  return ranges;
}

export function inRanges(ranges: ReadonlyArray<readonly [number, number]>, id: number): boolean {
  return ranges.some(([lo, hi]) => id >= lo && id <= hi);
}
