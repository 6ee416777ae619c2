// The dataset layout: units commit after their shards; inspect counts committed units only.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidShardError, NotFoundError } from '../../src/errors.js';
import {
  commitUnit,
  inspectDataset,
  listUnits,
  MANIFEST_KEY,
  shardKey,
  unitKey,
  type UnitRecord,
} from '../../src/shards/dataset.js';
import { openStore } from '../../src/shards/store.js';
import { ShardWriter } from '../../src/shards/writer.js';
import { runCli } from '../helpers/cli.js';
import { makeRecord } from '../helpers/records.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-dataset-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function unit(n: number, over: Partial<UnitRecord> = {}): UnitRecord {
  return {
    unit: n,
    shard: shardKey(n),
    records: 10,
    bytes: 1000,
    batches: 1,
    inputs: 14,
    failed: { http_404: 2, decode_error: 1 },
    duplicates: { exact: 1, near: 0 },
    timings: { wall: 1.5 },
    startedAt: new Date(0).toISOString(),
    committedAt: new Date(0).toISOString(),
    ...over,
  };
}

describe('dataset layout', () => {
  it('names shards and units by zero-padded unit number', () => {
    expect(shardKey(7)).toBe('shards/000007.arrow');
    expect(unitKey(1234567)).toBe('units/1234567.json');
  });

  it('summarises committed units and ignores orphan shards', async () => {
    const store = await openStore(join(dir, 'a'));
    for (const n of [0, 1]) {
      const writer = new ShardWriter();
      for (let i = 0; i < 10; i++) await writer.add(makeRecord(i));
      const info = await writer.finish(store, shardKey(n));
      await commitUnit(
        store,
        unit(n, { bytes: info.bytes, failed: n ? { http_404: 1 } : { http_404: 2, decode_error: 1 } }),
      );
    }
    // An interrupted unit: its shard is there, its record is not.
    await new ShardWriter().finish(store, shardKey(2));
    const units = await listUnits(store);
    expect(units.map((u) => u.unit)).toEqual([0, 1]);
    const summary = await inspectDataset(store);
    expect(summary).toEqual({
      shards: 2,
      records: 20,
      bytes: units[0]!.bytes + units[1]!.bytes,
      failed: { http_404: 3, decode_error: 1 },
      duplicates: { exact: 2, near: 0 },
    });
  });

  it('treats a malformed unit record as a corrupt dataset', async () => {
    const store = await openStore(join(dir, 'b'));
    await store.put(unitKey(0), Buffer.from('{"unit": 0, "shard": '));
    await expect(listUnits(store)).rejects.toBeInstanceOf(InvalidShardError);
    await store.put(unitKey(0), Buffer.from('{"unit": "zero"}'));
    await expect(listUnits(store)).rejects.toThrow(/lacks unit/);
  });

  it('says when a store holds no dataset', async () => {
    await expect(inspectDataset(await openStore(join(dir, 'nothing')))).rejects.toBeInstanceOf(NotFoundError);
    const store = await openStore(join(dir, 'fresh'));
    await store.put(MANIFEST_KEY, Buffer.from('{}'));
    expect((await inspectDataset(store)).shards).toBe(0);
  });
});

describe('wildstream inspect', () => {
  it('prints the summary as JSON', async () => {
    const store = await openStore(join(dir, 'cli'));
    await commitUnit(store, unit(0));
    const result = await runCli(['inspect', join(dir, 'cli'), '--json']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      shards: 1,
      records: 10,
      bytes: 1000,
      failed: { http_404: 2, decode_error: 1 },
      duplicates: { exact: 1, near: 0 },
    });
  });

  it('exits 2 with one line on bad usage, 1 on a broken run', async () => {
    const unknown = await runCli(['inspect', dir, '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown option '--bogus'/);
    const scheme = await runCli(['inspect', 'ftp://host/x']);
    expect(scheme.code).toBe(2);
    expect(scheme.stderr.trim().split('\n')).toHaveLength(1);
    const missing = await runCli(['inspect', join(dir, 'nothing-here')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^wildstream: no wildstream dataset at file:\/\/.*\n$/);
    const unreachable = await runCli(
      ['inspect', 's3://bucket/x', '--s3-endpoint', 'http://127.0.0.1:9', '--store-attempts', '2'],
      {
        AWS_ACCESS_KEY_ID: 'x',
        AWS_SECRET_ACCESS_KEY: 'y',
      },
    );
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr.trim().split('\n')).toHaveLength(1);
    expect(unreachable.stderr).toMatch(
      /^wildstream: s3:\/\/bucket\/x\/units\/ failed after 2 attempts: connect ECONNREFUSED 127\.0\.0\.1:9\n$/,
    );
  });

  it('has --help for every command', async () => {
    for (const args of [['--help'], ['inspect', '--help']]) {
      const result = await runCli(args);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/Usage: wildstream/);
    }
  });
});
