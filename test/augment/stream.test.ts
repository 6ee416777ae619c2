import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CursorError, DatasetStream, START, type StreamCursor, type StreamOptions } from '../../src/augment/stream.js';
import { ConfigError, InvalidShardError, NoDataError, NotFoundError } from '../../src/errors.js';
import { commitUnit, listUnits } from '../../src/shards/dataset.js';
import { CachedStore } from '../../src/shards/store-cache.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { writeDataset } from '../helpers/dataset.js';
import { faultyStore } from '../helpers/faulty-store.js';

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
    expect(
      new Set(
        keysOf(a)
          .slice(0, 14)
          .map((k) => k.slice(0, 6)),
      ).size,
    ).toBeGreaterThan(1);
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

  it('skips a corrupt shard with a counted reason, and says so once per reason', async () => {
    const bad = await openStore(join(dir, 'bad'));
    await writeDataset(bad, { units: 3, perUnit: 10 });
    await writeFile(join(dir, 'bad', 'shards', '000001.arrow'), Buffer.alloc(500, 7));
    const warnings: string[] = [];
    const stream = new DatasetStream(bad, { ...base, epochs: 2, onSkip: (m) => warnings.push(m) });
    const keys: string[] = [];
    for await (const item of stream) keys.push(item.record.key);
    expect(keys).toHaveLength(40);
    expect(keys.some((k) => k.startsWith('000001'))).toBe(false);
    expect(stream.stats.skipped).toEqual({ bad_shard: 2 });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^warning: skipping unreadable data \(bad_shard\): .*000001\.arrow/);
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
    expect(keysOf(await take({ ...base, epochs: 1 }, Infinity, cached))).toEqual(
      keysOf(await take({ ...base, epochs: 1 })),
    );
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

// A cursor taken with seed 5 and resumed with seed 6 silently repeated and skipped records; one at group 999
// or offset 99999 skipped the rest of its epoch unseen.
describe('DatasetStream: what a cursor means', () => {
  const base = { seed: 5, windowShards: 3, groupBatches: 2 };
  let straight: Awaited<ReturnType<typeof take>>;
  beforeAll(async () => {
    straight = await take({ ...base, epochs: 1 });
  });

  it('records the settings that order the stream in every cursor it yields', () => {
    expect(straight[20]!.cursor.order).toEqual({ seed: 5, rank: 0, worldSize: 1, windowShards: 3, groupBatches: 2 });
    const json = JSON.parse(JSON.stringify(straight[20]!.cursor)) as StreamCursor;
    expect(json).toEqual(straight[20]!.cursor);
  });

  it.each([
    ['seed', 6],
    ['rank', 1],
    ['worldSize', 2],
    ['windowShards', 2],
    ['groupBatches', 3],
  ] as const)('refuses a cursor taken with another %s, naming it', (field, value) => {
    const at = straight[20]!.cursor;
    const cursor = { ...at, order: { ...at.order!, [field]: value, ...(field === 'rank' && { worldSize: 2 }) } };
    const open = () => new DatasetStream(store, { ...base, cursor });
    expect(open).toThrow(ConfigError);
    expect(thrown(open)).toMatchObject({
      name: 'CursorError',
      code: 'WS_ERR_CURSOR',
      field: `order.${field}`,
      message: expect.stringMatching(
        new RegExp(`^the stream cursor was taken with ${field} ${value}, but this stream has ${field} \\d+: `),
      ),
    });
  });

  it('refuses, at construction, a loader-style resume with another seed (a cursor as JSON)', () => {
    const json = JSON.parse(JSON.stringify(straight[20]!.cursor)) as StreamCursor;
    expect(() => new DatasetStream(store, { ...base, seed: 6, cursor: json })).toThrow(
      /^the stream cursor was taken with seed 5, but this stream has seed 6: .* resume with seed 5, or start the stream afresh$/,
    );
  });

  it('takes a cursor without order (as this version wrote them, and START) as before, under its own settings', async () => {
    const { order: _order, ...old } = straight[40]!.cursor;
    expect(keysOf(await take({ ...base, epochs: 1, cursor: old }))).toEqual(keysOf(straight.slice(41)));
    expect(keysOf(await take({ ...base, epochs: 1, cursor: START }))).toEqual(keysOf(straight));
  });

  it('refuses a group or offset past the end of its epoch instead of skipping the rest of it', async () => {
    const at = straight[20]!.cursor;
    const past = async (cursor: StreamCursor) => {
      const run = take({ ...base, epochs: 2, cursor });
      await expect(run).rejects.toThrow(CursorError);
      return run.catch((err: CursorError) => err);
    };
    expect(await past({ ...at, group: 999, offset: 0 })).toMatchObject({
      field: 'group',
      message: expect.stringMatching(/^the stream cursor's group 999 is past the end of epoch 0: it has 12 groups/),
    });
    expect(await past({ ...at, offset: 99999 })).toMatchObject({
      field: 'offset',
      message: expect.stringMatching(
        /^the stream cursor's offset 99999 is past the end of epoch 0: group \d+ holds \d+ records/,
      ),
    });
    // The last record of a group is a cursor at its end, and the last group of the epoch is in range.
    const lastOfGroup = straight.findIndex((item, i) => straight[i + 1]?.cursor.group !== item.cursor.group);
    const resumed = await take({ ...base, epochs: 1, cursor: straight[lastOfGroup]!.cursor });
    expect(keysOf(resumed)).toEqual(keysOf(straight.slice(lastOfGroup + 1)));
    const last = straight[straight.length - 2]!.cursor;
    expect(keysOf(await take({ ...base, epochs: 1, cursor: last }))).toEqual(keysOf(straight.slice(-1)));
  });

  it.each([
    ['units out of order', { units: [[2, 0]] }, 'units'],
    ['units that are not numbers', { units: [['a', 'b']] }, 'units'],
    [
      'units twice',
      {
        units: [
          [0, 0],
          [0, 0],
        ],
      },
      'units',
    ],
    ['a fractional epoch', { epoch: 1.5 }, 'epoch'],
    ['no units field', { units: undefined }, 'units'],
    [
      'an order with a seed as text',
      { order: { seed: '5', rank: 0, worldSize: 1, windowShards: 3, groupBatches: 2 } },
      'order.seed',
    ],
  ])('refuses a malformed cursor: %s', (_what, change, field) => {
    const cursor = { ...START, units: [[0, 5]], ...change } as unknown as StreamCursor;
    const open = () => new DatasetStream(store, { ...base, cursor });
    expect(open).toThrow(/^malformed stream cursor /);
    expect(thrown(open)).toBeInstanceOf(CursorError);
    expect(thrown(open)).toMatchObject({ field });
  });
});

/** What `f` throws (failing the test when it returns). */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

/** A dataset of `units` committed units of 0 records each, as ingest commits when every input of a unit failed. */
async function emptyUnits(at: string, units: number, firstUnit = 0): Promise<Store> {
  const empty = await openStore(join(dir, at));
  await writeDataset(empty, { units, perUnit: 0, firstUnit });
  for (const unit of await listUnits(empty))
    if (unit.unit >= firstUnit) await commitUnit(empty, { ...unit, inputs: 5, failed: { http_404: 4, timeout: 1 } });
  return empty;
}

/** Rejects within `ms` or fails the test (a stream that never ends would otherwise hang it). */
async function settlesWithin<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>(
    (_, reject) => (timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms)),
  );
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('DatasetStream: a dataset that gives nothing', () => {
  it('is a NoDataError saying what the dataset holds: units of 0 records, a truncated only shard, every batch unreadable', async () => {
    const empty = await emptyUnits('zero', 2);
    const zero = settlesWithin(5000, take({}, 1, empty));
    await expect(zero).rejects.toThrow(NoDataError);
    await expect(zero).rejects.toThrow(
      /holds 2 committed units with 0 records; its inputs failed: http_404 8, timeout 2$/,
    );

    const cut = await openStore(join(dir, 'truncated'));
    await writeDataset(cut, { units: 1, perUnit: 20 });
    await truncate(join(dir, 'truncated', 'shards', '000000.arrow'), 3000);
    await expect(settlesWithin(5000, take({}, 1, cut))).rejects.toThrow(
      /holds 1 committed unit with 20 records; unreadable: bad_shard 1 \(.*000000\.arrow: .*truncated\?\)/,
    );

    // Footers read, but every record batch is unreadable: each is skipped, and the epoch yields nothing.
    const size = new Map((await listUnits(store)).map((u) => [u.shard, u.bytes]));
    const batchRead = (args: unknown[]) => args[2] !== size.get(args[0] as string)! - 1; // a footer read ends the file
    const broken = faultyStore(store, (method, args) =>
      method === 'getRange' && batchRead(args) ? new InvalidShardError('garbled batch') : undefined,
    );
    await expect(settlesWithin(5000, take({}, 1, broken))).rejects.toThrow(
      /holds 6 committed units with 150 records; unreadable: bad_batch 24 \(garbled batch\)$/,
    );
  });

  it('following, waits for new units (saying so once), then reads them', async () => {
    const empty = await emptyUnits('follow-zero', 1);
    const said: string[] = [];
    const waiting = settlesWithin(10_000, take({ follow: true, pollMs: 20, onWait: (m) => said.push(m) }, 3, empty));
    await new Promise((r) => setTimeout(r, 200));
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(
      /^following: no record could be read: .* holds 1 committed unit with 0 records; .*waiting for new units/,
    );
    await writeDataset(empty, { units: 1, perUnit: 5, firstUnit: 1 });
    expect(await waiting).toHaveLength(3);
  });

  it('ends on the signal while a read stalls, and while following an empty dataset', async () => {
    const stalled = faultyStore(store, (method) => (method === 'getRange' ? 'stall' : undefined));
    for (const [options, on] of [
      [{}, stalled],
      [{ follow: true, pollMs: 3_600_000 }, await openStore(join(dir, 'never'))],
    ] as const) {
      const controller = new AbortController();
      const t0 = performance.now();
      setTimeout(() => controller.abort(), 100);
      await expect(settlesWithin(3000, take({ ...options, signal: controller.signal }, 1, on))).rejects.toThrow(
        /aborted/,
      );
      expect(performance.now() - t0).toBeLessThan(2000);
    }
  });
});
