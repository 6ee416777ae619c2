/**
 * The order of an epoch, a pure function of (seed, epoch, the epoch's unit records, rank, worldSize,
 * windowShards, groupBatches). It reads the committed unit records alone (`records`, `batches`), never what a
 * shard turned out to hold, so a shard that cannot be read moves no other shard's records:
 *
 *   1. shards (units) are permuted, then dealt to ranks whole, each in turn to the rank holding the fewest
 *      records so far (ties: the round-robin rank `i % worldSize`, then the next ranks in rotation), so units of
 *      equal size are dealt round-robin. With worldSize > 1 each rank yields only its `quota`, the fewest
 *      records any rank holds (drop-last, as torch's DistributedSampler(drop_last=True)): every rank's epoch is
 *      the same length, and a rank cuts at most the records of the last unit dealt to it (it was the rank
 *      with the fewest when that unit came);
 *   2. a rank's shards are taken in windows of `windowShards`; the record batches of a window are permuted
 *      and cut into groups of `groupBatches` batches;
 *   3. the records of a group are permuted.
 *
 * So records mix across several shards while memory holds only a few groups, and a position is addressable
 * as (group, offset): resuming opens the shard footers of the cursor's window on, and reads nothing before it.
 */
import { createHash } from 'node:crypto';
import { prng, seedOf, shuffle } from '../rng.js';
import type { UnitRecord } from '../shards/dataset.js';

/** Salts keep the permutations of one (seed, epoch) independent of each other. */
const SHARD_SALT = 1;
const WINDOW_SALT = 2;
const GROUP_SALT = 3;

/** An epoch's shards dealt to ranks: `shards[rank]` in reading order, `records[rank]` their committed records. */
export interface Deal {
  shards: UnitRecord[][];
  records: number[];
}

/** Permutes the units and deals them to `worldSize` ranks, balanced by committed records (see the header). */
export function dealShards(units: readonly UnitRecord[], seed: number, epoch: number, worldSize: number): Deal {
  const order = shuffle(
    [...units].sort((a, b) => a.unit - b.unit),
    prng(seedOf(seed, epoch, SHARD_SALT)),
  );
  const shards: UnitRecord[][] = Array.from({ length: worldSize }, () => []);
  const fewest = new FewestRecords(worldSize);
  order.forEach((unit, i) => {
    const rank = fewest.firstFrom(i % worldSize);
    shards[rank]!.push(unit);
    fewest.add(rank, unit.records);
  });
  return { shards, records: fewest.totals() };
}

/** Rank `rank`'s shards of the epoch, in reading order. */
export function epochShards(
  units: readonly UnitRecord[],
  seed: number,
  epoch: number,
  rank: number,
  worldSize: number,
): UnitRecord[] {
  return dealShards(units, seed, epoch, worldSize).shards[rank]!;
}

/**
 * Records each rank yields in the epoch: the fewest any rank holds, so every rank's epoch is as long (a DDP
 * collective never waits on a rank that finished early). Infinity for a single rank, which yields all it reads.
 */
export function rankQuota(deal: Deal): number {
  if (deal.records.length === 1) return Infinity;
  return deal.records.reduce((a, b) => Math.min(a, b), Infinity);
}

/** Record batches a unit committed: what orders its batches, whatever its shard holds when read. */
export function committedBatches(unit: UnitRecord): number {
  return unit.records === 0 ? 0 : unit.batches;
}

/** Groups of an epoch whose rank reads `shards`: windowGroups' count over the windows, from the unit records. */
export function epochGroups(shards: readonly UnitRecord[], windowShards: number, groupBatches: number): number {
  let groups = 0;
  for (let w = 0; w * windowShards < shards.length; w++) {
    const batches = shards.slice(w * windowShards, (w + 1) * windowShards).reduce((n, u) => n + committedBatches(u), 0);
    groups += Math.ceil(batches / groupBatches);
  }
  return groups;
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

/**
 * Ranks' record totals in a min segment tree: the rank to deal to in O(log worldSize), not a scan of every
 * rank per shard (65536 ranks by 100k shards would be 6.5e9 steps).
 */
class FewestRecords {
  private readonly size: number;
  /** tree[1] is the root; node i has children 2i and 2i+1; leaves from `size` on, padded with Infinity. */
  private readonly tree: number[];

  constructor(private readonly ranks: number) {
    this.size = 2 ** Math.ceil(Math.log2(Math.max(1, ranks)));
    this.tree = new Array<number>(2 * this.size).fill(Infinity);
    for (let i = 0; i < ranks; i++) this.tree[this.size + i] = 0;
    for (let i = this.size - 1; i >= 1; i--) this.tree[i] = Math.min(this.tree[2 * i]!, this.tree[2 * i + 1]!);
  }

  add(rank: number, records: number): void {
    let i = this.size + rank;
    this.tree[i] = this.tree[i]! + records;
    for (i >>= 1; i >= 1; i >>= 1) this.tree[i] = Math.min(this.tree[2 * i]!, this.tree[2 * i + 1]!);
  }

  /** The first rank holding the fewest records, looking from `from` on and then from 0 (rotation). */
  firstFrom(from: number): number {
    const fewest = this.tree[1]!;
    const at = this.find(1, 0, this.size - 1, from, fewest);
    return at >= 0 ? at : this.find(1, 0, this.size - 1, 0, fewest);
  }

  totals(): number[] {
    return this.tree.slice(this.size, this.size + this.ranks);
  }

  /** The first leaf >= `from` in node's span [lo, hi] holding at most `most`, or -1. */
  private find(node: number, lo: number, hi: number, from: number, most: number): number {
    if (hi < from || this.tree[node]! > most) return -1;
    if (lo === hi) return lo;
    const mid = (lo + hi) >> 1;
    const left = this.find(2 * node, lo, mid, from, most);
    return left >= 0 ? left : this.find(2 * node + 1, mid + 1, hi, from, most);
  }
}

/**
 * What an epoch's order is computed from, as 16 hex digits: each unit's id and committed records and batches.
 * A cursor carries it, so a resume on units recommitted since with other counts (a unit redone after damage)
 * is known, where the unit ids alone look the same.
 */
export function unitsDigest(units: readonly UnitRecord[]): string {
  const counts = [...units].sort((a, b) => a.unit - b.unit).map((u) => `${u.unit}:${u.records}:${u.batches}`);
  return createHash('sha256').update(counts.join(',')).digest('hex').slice(0, 16);
}
