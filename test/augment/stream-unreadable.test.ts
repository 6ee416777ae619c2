// A shard unreadable on resume (or in one run and not another) must not move the other shards' records: were
// its batches counted as it reads (0) rather than as committed, its whole window's batch permutation would
// change, and a resume would repeat and lose records of the intact shards.
import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { epochShards } from '../../src/augment/order.js';
import { DatasetStream, type StreamCursor, type StreamOptions } from '../../src/augment/stream.js';
import { commitUnit, listUnits } from '../../src/shards/dataset.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { writeDataset } from '../helpers/dataset.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-stream-unreadable-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A dataset at `dir/name` of one unit per entry of `sizes` (records), `batchRows` rows per record batch. */
async function unitsOf(name: string, sizes: number[], batchRows: number): Promise<Store> {
  const store = await openStore(join(dir, name));
  for (const [unit, perUnit] of sizes.entries())
    await writeDataset(store, { units: 1, perUnit, batchRows, firstUnit: unit });
  return store;
}

interface Item {
  key: string;
  cursor: StreamCursor;
}

async function run(store: Store, options: StreamOptions): Promise<{ items: Item[]; stream: DatasetStream }> {
  const stream = new DatasetStream(store, options);
  const items: Item[] = [];
  for await (const item of stream) items.push({ key: item.record.key, cursor: item.cursor });
  return { items, stream };
}

/**
 * Record keys with their group, in stream order, except within the groups of `shuffled` (those that held the
 * lost shard's batches: their records are permuted over fewer rows), where they are sorted.
 */
function inOrder(items: Item[], shuffled: Set<number>): string[] {
  const at = items.map((item, i) => ({ group: item.cursor.group, key: item.key, i }));
  at.sort((a, b) => a.group - b.group || (shuffled.has(a.group) ? a.key.localeCompare(b.key) : a.i - b.i));
  return at.map(({ group, key }) => `${group}:${key}`);
}

/** The unit a record key belongs to (keys are `UUUUUU-RRRRR`). */
const unitOf = (key: string) => Number(key.slice(0, 6));

describe('DatasetStream: a shard that becomes unreadable', () => {
  // Two windows of three shards, groups of three batches of 4 rows: groups mix batches of several shards.
  const options = { seed: 11, windowShards: 3, groupBatches: 3, epochs: 1 };
  const sizes = [30, 17, 41, 9, 23, 26];

  it('resumed from any cursor outside the group holding its batches, yields the rest minus exactly its records', async () => {
    const store = await unitsOf('deleted', sizes, 4);
    const intact = (await run(store, options)).items;
    expect(intact).toHaveLength(146);
    // The first record's shard: in window 0, whose batch permutation its loss must leave as it was.
    const victim = unitOf(intact[0]!.key);
    const holds = new Set(intact.filter((i) => unitOf(i.key) === victim).map((i) => i.cursor.group));
    const groupSize = new Map<number, number>();
    for (const i of intact) groupSize.set(i.cursor.group, i.cursor.offset);
    const units = await listUnits(store);
    const firstWindow = new Set(
      epochShards(units, options.seed, 0, 0, 1)
        .slice(0, 3)
        .map((u) => u.unit),
    );
    expect(firstWindow.has(victim)).toBe(true);
    const secondWindow =
      1 + Math.max(...intact.filter((i) => firstWindow.has(unitOf(i.key))).map((i) => i.cursor.group));
    await unlink(join(dir, 'deleted', units.find((u) => u.unit === victim)!.shard));

    let checked = 0;
    for (let k = 0; k <= intact.length; k++) {
      const at = k === 0 ? undefined : intact[k - 1]!.cursor;
      // Inside a group holding the lost shard's batches, that group's records are shuffled over fewer rows
      // (the residual stream.ts states); at its end, or anywhere else, nothing may repeat or go missing, and
      // every other group is the same records in the same order.
      if (at && holds.has(at.group) && at.offset < groupSize.get(at.group)!) continue;
      const { items, stream } = await run(store, { ...options, cursor: at });
      const want = intact.slice(k).filter((i) => unitOf(i.key) !== victim);
      expect(inOrder(items, holds), `resumed after record ${k}`).toEqual(inOrder(want, holds));
      // The positions go on from the cursor's, one per record yielded.
      if (items.length > 0) expect(items[0]!.cursor.position).toBe((at?.position ?? 0) + 1);
      // A cursor in the second window reads no footer of the first, the lost shard's.
      expect(stream.stats.skipped.bad_shard ?? 0, `after record ${k}`).toBe(at && at.group >= secondWindow ? 0 : 1);
      checked++;
    }
    expect(checked).toBeGreaterThan(intact.length / 2);
  });

  it('read from the start with the shard missing, keeps every other record where the intact order has it', async () => {
    const store = await unitsOf('missing-from-start', sizes, 4);
    const intact = (await run(store, options)).items;
    const victim = unitOf(intact[intact.length - 1]!.key);
    const shard = (await listUnits(store)).find((u) => u.unit === victim)!.shard;
    await unlink(join(dir, 'missing-from-start', shard));
    const { items, stream } = await run(store, options);
    // Groups not holding its batches are the same records in the same order; its groups lose only its records.
    const holds = new Set(intact.filter((i) => unitOf(i.key) === victim).map((i) => i.cursor.group));
    const byGroup = (list: Item[], group: number) => list.filter((i) => i.cursor.group === group).map((i) => i.key);
    for (const group of new Set(intact.map((i) => i.cursor.group))) {
      const want = byGroup(intact, group).filter((key) => unitOf(key) !== victim);
      if (holds.has(group)) expect(byGroup(items, group).sort(), `group ${group}`).toEqual(want.sort());
      else expect(byGroup(items, group), `group ${group}`).toEqual(want);
    }
    expect(stream.stats.skipped).toEqual({ bad_shard: 1 });
    expect(stream.stats.examples.bad_shard).toMatch(/missing or shorter/);
  });

  it('skips a shard holding other record batches than its unit record committed, naming both counts', async () => {
    const store = await unitsOf('lying', [12, 20], 4);
    const [, lying] = await listUnits(store);
    await commitUnit(store, { ...lying!, batches: 7 }); // the shard holds 5
    const warnings: string[] = [];
    const { items, stream } = await run(store, { epochs: 1, onSkip: (m) => warnings.push(m) });
    expect(items.map((i) => unitOf(i.key))).toEqual(Array(12).fill(0));
    expect(stream.stats.skipped).toEqual({ bad_shard: 1 });
    expect(stream.stats.examples.bad_shard).toMatch(
      /000001\.arrow: the shard holds 5 record batches, but unit 1's record committed 7$/,
    );
    expect(warnings).toHaveLength(1);
  });
});
