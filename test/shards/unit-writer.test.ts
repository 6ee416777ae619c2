import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listUnits } from '../../src/shards/dataset.js';
import { readFailures } from '../../src/shards/failures.js';
import { RECORD_KEY, recordKey } from '../../src/shards/keys.js';
import { ShardReader } from '../../src/shards/reader.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { closeStaging, openStaging } from '../../src/shards/staging.js';
import { UnitWriter } from '../../src/shards/unit-writer.js';
import { makeRecord } from '../helpers/records.js';

let dir: string;
beforeAll(async () => (dir = await mkdtemp(join(tmpdir(), 'ws-unit-writer-'))));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** The store, with the keys it was asked to put, in order. */
async function recording(name: string): Promise<{ store: Store; puts: string[] }> {
  const store = await openStore(join(dir, name));
  const puts: string[] = [];
  const put = store.put.bind(store);
  store.put = async (key, body) => {
    puts.push(key);
    return put(key, body);
  };
  return { store, puts };
}

describe('UnitWriter', () => {
  it('commits the shard, then the failure file, then the unit record; keys are recordKey(unit, position)', async () => {
    const { store, puts } = await recording('ordered');
    const writer = await UnitWriter.open(store, 12, {});
    const { key: _, ...input } = makeRecord(1);
    await writer.add(3, input);
    writer.fail(40, 'http://example.test/x.jpg', 'http_404');
    writer.duplicate('near');
    const record = await writer.commit({ inputs: 5, timings: { fetch: 1 } });
    expect(puts.filter((k) => !k.startsWith('.staging'))).toEqual([
      'shards/000012.arrow',
      'failures/000012.jsonl',
      'units/000012.json',
    ]);
    expect(record).toMatchObject({
      unit: 12,
      records: 1,
      inputs: 5,
      failed: { http_404: 1 },
      failures: 'failures/000012.jsonl',
      duplicates: { exact: 0, near: 1 },
    });
    expect(await listUnits(store)).toEqual([record]);
    const keys: string[] = [];
    for await (const r of (await ShardReader.open(store, record.shard, { size: record.bytes })).records())
      keys.push(r.key);
    expect(keys).toEqual([recordKey(12, 3)]);
    expect(keys[0]).toBe('000012-00003'); // the form schema.ts documents
    expect(keys[0]).toMatch(RECORD_KEY);
    expect(await readFailures(store, record.failures!)).toEqual([
      { row: 40, url: 'http://example.test/x.jpg', reason: 'http_404', status: 404 },
    ]);
  });

  it('a stopped run commits nothing: no unit record, so readers and reruns never see the unit', async () => {
    const { store, puts } = await recording('stopped');
    const writer = await UnitWriter.open(store, 0, {});
    const { key: _, ...input } = makeRecord(2);
    await writer.add(0, input);
    const controller = new AbortController();
    controller.abort('SIGINT');
    await expect(writer.commit({ inputs: 1, signal: controller.signal })).rejects.toBe('SIGINT');
    expect(puts.some((k) => k.startsWith('units/'))).toBe(false);
    expect(await listUnits(store)).toEqual([]);
  });

  it('record keys keep their order past the padding and refuse what no unit has', () => {
    expect(recordKey(0, 0)).toBe('000000-00000');
    expect(recordKey(1_234_567, 123_456)).toBe('1234567-123456');
    expect(() => recordKey(-1, 0)).toThrow(RangeError);
    expect(() => recordKey(0, 1.5)).toThrow(RangeError);
  });
});

describe('staging', () => {
  it("is removed when a job's writers are done and it is empty; a folder with a file, or another's, stays", async () => {
    const store = await openStore(join(dir, 'staged'));
    const writer = await UnitWriter.open(store, 0, {});
    const { key: _, ...input } = makeRecord(0);
    await writer.add(0, input);
    await writer.commit({ inputs: 1 });
    const mine = await openStaging(store);
    expect(await readdir(mine)).toEqual([]); // the staged shard was moved into place
    await closeStaging(store);
    expect(existsSync(join(dir, 'staged', '.staging'))).toBe(false);

    const again = await openStaging(store); // a later job makes it again
    await writeFile(join(again, 'left'), 'x');
    await closeStaging(store);
    expect(await readdir(again)).toEqual(['left']);
  });
});
