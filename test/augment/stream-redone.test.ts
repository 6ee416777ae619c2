// A unit redone (its record deleted and the job rerun, as inspect advises for damage) may commit other counts,
// and an epoch's order follows the counts: a cursor taken before then places records by an order that no longer
// holds (a resume by it would repeat and skip records of other shards). The cursor's digest of the counts
// tells the stream, which restarts the epoch instead.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetStream, type StreamCursor, type StreamOptions } from '../../src/augment/stream.js';
import { ConfigError } from '../../src/errors.js';
import { commitUnit, listUnits } from '../../src/shards/dataset.js';
import { unitKey } from '../../src/shards/keys.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { writeDataset } from '../helpers/dataset.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-stream-redone-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function keys(store: Store, options: StreamOptions): Promise<{ keys: string[]; cursors: StreamCursor[] }> {
  const stream = new DatasetStream(store, options);
  const out = { keys: [] as string[], cursors: [] as StreamCursor[] };
  for await (const item of stream) {
    out.keys.push(item.record.key);
    out.cursors.push(item.cursor);
  }
  return out;
}

describe('DatasetStream: units recommitted since a cursor was taken', () => {
  const options = { seed: 3, windowShards: 2, groupBatches: 2, epochs: 1 };

  it('restarts the epoch, saying so, rather than repeat and skip records of other shards', async () => {
    const store = await openStore(join(dir, 'redone'));
    await writeDataset(store, { units: 6, perUnit: 20, batchRows: 4 });
    const before = await keys(store, options);
    const cursor = JSON.parse(JSON.stringify(before.cursors[69])) as StreamCursor; // as a checkpoint keeps it
    expect(cursor.digest).toMatch(/^[0-9a-f]{16}$/);
    // Unit 2 redone: 15 records now, in other batches.
    await store.delete(unitKey(2));
    await writeDataset(store, { units: 1, perUnit: 15, batchRows: 5, firstUnit: 2 });
    const now = await keys(store, options);
    const warnings: string[] = [];
    const stream = new DatasetStream(store, { ...options, cursor, onSkip: (m) => warnings.push(m) });
    const resumed: string[] = [];
    for await (const item of stream) resumed.push(item.record.key);
    expect(resumed).toEqual(now.keys); // the whole epoch by the new counts: nothing skipped
    expect(stream.stats.restarts).toBe(1);
    expect(warnings).toEqual([expect.stringMatching(/epoch 0 restarts from its beginning/)]);

    // Unchanged counts: the resume goes on where it was, as before.
    const again = new DatasetStream(store, { ...options, cursor: now.cursors[69] });
    const rest: string[] = [];
    for await (const item of again) rest.push(item.record.key);
    expect(rest).toEqual(now.keys.slice(70));
    expect(again.stats.restarts).toBe(0);
  });

  it('takes a cursor without a digest (older checkpoints) as before, and refuses a malformed one', async () => {
    const store = await openStore(join(dir, 'old'));
    await writeDataset(store, { units: 3, perUnit: 10, batchRows: 4 });
    const all = await keys(store, options);
    const { digest: _, ...old } = all.cursors[9]!;
    const rest: string[] = [];
    for await (const item of new DatasetStream(store, { ...options, cursor: old })) rest.push(item.record.key);
    expect(rest).toEqual(all.keys.slice(10));
    expect(() => new DatasetStream(store, { ...options, cursor: { ...old, digest: 'x' } })).toThrow(
      /digest must be 16 hex digits/,
    );
  });
});

describe('DatasetStream: follow', () => {
  it('takes one rank: ranks listing units each on their own would overlap', async () => {
    const store = await openStore(join(dir, 'follow'));
    const make = () => new DatasetStream(store, { follow: true, worldSize: 2, rank: 1 });
    expect(make).toThrow(ConfigError);
    expect(make).toThrow(/follow takes one rank, got worldSize 2/);
  });
});

describe('unit records', () => {
  it('refuse counts no shard can hold: negative, or records without batches', async () => {
    const store = await openStore(join(dir, 'counts'));
    await writeDataset(store, { units: 1, perUnit: 5 });
    const [unit] = await listUnits(store);
    for (const bad of [{ records: -5 }, { batches: 0 }, { records: 0 }, { bytes: -1 }]) {
      await commitUnit(store, { ...unit!, ...bad });
      await expect(listUnits(store), JSON.stringify(bad)).rejects.toThrow(/unit record counts .*redo unit 0/);
    }
  });
});
