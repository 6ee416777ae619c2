// The dataset layout: units commit after their shards; inspect counts committed units only.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidShardError, NotFoundError } from '../../src/errors.js';
import {
  commitUnit,
  failuresKey,
  listUnits,
  MANIFEST_KEY,
  shardKey,
  unitKey,
  type UnitRecord,
} from '../../src/shards/dataset.js';
import { inspectDataset } from '../../src/ingest/outstanding.js';
import { readFailures, writeFailures } from '../../src/shards/failures.js';
import { openStore } from '../../src/shards/store.js';
import { verifyShards } from '../../src/shards/verify.js';
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
      problems: [],
    });
  });

  it('treats a malformed unit record as a corrupt dataset', async () => {
    const store = await openStore(join(dir, 'b'));
    await store.put(unitKey(0), Buffer.from('{"unit": 0, "shard": '));
    await expect(listUnits(store)).rejects.toBeInstanceOf(InvalidShardError);
    const redo = 'delete units/000000.json and rerun the same command to redo unit 0';
    await expect(listUnits(store)).rejects.toThrow(`units/000000.json: unit record is not valid JSON; ${redo}`);
    await store.put(unitKey(0), Buffer.from('{"unit": "zero"}'));
    await expect(listUnits(store)).rejects.toThrow(`lacks unit/shard/records/bytes/batches; ${redo}`);
    // A record copied under another unit's name would commit that unit's shard twice.
    await store.put(
      unitKey(0),
      Buffer.from('{"unit": 5, "shard": "shards/000005.arrow", "records": 1, "bytes": 9, "batches": 1}'),
    );
    await expect(listUnits(store)).rejects.toThrow(`units/000000.json: unit record says unit 5; ${redo}`);
    // Readers open the files a record names: a hand-edited path out of the dataset is never followed.
    const named = (shard: string, failures?: string) =>
      Buffer.from(JSON.stringify({ unit: 0, shard, records: 1, bytes: 9, batches: 1, failures }));
    await store.put(unitKey(0), named('../../etc/passwd'));
    await expect(listUnits(store)).rejects.toThrow(
      `units/000000.json: unit record names "../../etc/passwd", not its own shards/000000.arrow; ${redo}`,
    );
    await store.put(unitKey(0), named('shards/000000.arrow', 'failures/000001.jsonl'));
    await expect(listUnits(store)).rejects.toThrow(
      'names "shards/000000.arrow" and "failures/000001.jsonl", not its own shards/000000.arrow and failures/000000.jsonl',
    );
  });

  it('says when a store holds no dataset', async () => {
    await expect(inspectDataset(await openStore(join(dir, 'nothing')))).rejects.toBeInstanceOf(NotFoundError);
    const store = await openStore(join(dir, 'fresh'));
    await store.put(MANIFEST_KEY, Buffer.from('{}'));
    expect((await inspectDataset(store)).shards).toBe(0);
  });
});

/** A dataset of `units` committed units of 10 records each, with a manifest; returns the shard sizes. */
async function dataset(name: string, units = 3): Promise<number[]> {
  const store = await openStore(join(dir, name));
  await store.put(MANIFEST_KEY, Buffer.from(JSON.stringify({ format: 'wildstream-dataset', jobs: [] })));
  const sizes: number[] = [];
  for (let n = 0; n < units; n++) {
    const writer = new ShardWriter();
    for (let i = 0; i < 10; i++) await writer.add(makeRecord(i));
    const info = await writer.finish(store, shardKey(n));
    await commitUnit(store, unit(n, { bytes: info.bytes, batches: info.batches, sha256: info.sha256 }));
    sizes.push(info.bytes);
  }
  return sizes;
}

describe('wildstream inspect', () => {
  it('prints the summary as JSON', async () => {
    const [bytes] = await dataset('cli', 1);
    const result = await runCli(['inspect', join(dir, 'cli'), '--json']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      shards: 1,
      records: 10,
      bytes,
      failed: { http_404: 2, decode_error: 1 },
      duplicates: { exact: 1, near: 0 },
      problems: [],
    });
  });

  it('exits 1 on a deleted or truncated shard or a corrupt dataset.json, listing each with its fix', async () => {
    const sizes = await dataset('damaged');
    const root = join(dir, 'damaged');
    await rm(join(root, 'shards', '000001.arrow'));
    await truncate(join(root, 'shards', '000002.arrow'), 1000);
    await writeFile(join(root, 'dataset.json'), '[1,2');
    const result = await runCli(['inspect', root, '--json']);
    expect(result.code).toBe(1);
    const expected = [
      'dataset.json is not valid JSON; restore it from a copy, or ingest again into a new --out',
      `shards/000001.arrow is missing, units/000001.json says ${sizes[1]} bytes; ` +
        'delete units/000001.json and rerun the same command to redo unit 1',
      `shards/000002.arrow is 1000 bytes, units/000002.json says ${sizes[2]} bytes; ` +
        'delete units/000002.json and rerun the same command to redo unit 2',
    ];
    expect(JSON.parse(result.stdout)).toMatchObject({ shards: 3, records: 30, problems: expected });
    expect(result.stderr).toBe(`wildstream: damaged dataset at ${root}: ${expected[0]} (and 2 more, listed above)\n`);

    const text = await runCli(['inspect', root]);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain(`problems    3\n  ${expected.join('\n  ')}\n`);

    await writeFile(join(root, 'dataset.json'), '{"format":"something-else","jobs":[]}');
    const shape = await inspectDataset(await openStore(root));
    expect(shape.problems[0]).toBe(
      'dataset.json is not a wildstream dataset manifest; restore it from a copy, or ingest again into a new --out',
    );
  });

  it('--verify reads every shard: damage at the committed size and counts its record gets wrong', async () => {
    await dataset('verify', 4);
    const root = join(dir, 'verify');
    const store = await openStore(root);
    expect(await verifyShards(store, await listUnits(store))).toEqual([]);
    const shard1 = join(root, 'shards', '000001.arrow');
    const bytes = await readFile(shard1);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe((await listUnits(store))[1]!.sha256);
    bytes[bytes.length >> 1]! ^= 0x01; // one bit, same size: the listing-only check sees nothing
    await writeFile(shard1, bytes);
    await writeFile(join(root, 'shards', '000002.arrow'), 'not arrow, and of another size');
    const record = (n: number) => join(root, 'units', `00000${n}.json`);
    const edit = async (n: number, over: object) =>
      writeFile(record(n), JSON.stringify({ ...JSON.parse(await readFile(record(n), 'utf8')), ...over }));
    await edit(2, { sha256: undefined }); // as records written before the hash was kept: counts still checked
    await edit(3, { batches: 2, sha256: undefined });
    const redo = (n: number) => `delete units/00000${n}.json and rerun the same command to redo unit ${n}`;
    const plain = await runCli(['inspect', root, '--json']);
    expect(JSON.parse(plain.stdout).problems).toEqual([expect.stringMatching(/^shards\/000002\.arrow is 30 bytes/)]);
    const deep = await runCli(['inspect', root, '--json', '--verify']);
    expect(deep.code).toBe(1);
    expect(JSON.parse(deep.stdout).problems).toEqual([
      expect.stringMatching(/^shards\/000002\.arrow is 30 bytes/),
      `shards/000001.arrow does not hash to the sha256 its unit record holds (damaged); ${redo(1)}`,
      expect.stringMatching(new RegExp(`^shards/000002\\.arrow: not an Arrow IPC file \\(.+\\); ${redo(2)}$`)),
      `shards/000003.arrow holds 10 records in 1 batches, its unit record says 10 in 2; ${redo(3)}`,
    ]);
  });

  it('exits 1 when a failure file a unit record names is gone, as --retry-failed would refuse it', async () => {
    await dataset('lost-failures', 2);
    const root = join(dir, 'lost-failures');
    const store = await openStore(root);
    for (const n of [0, 1]) {
      const [record] = (await listUnits(store)).filter((u) => u.unit === n);
      const row = { row: n, url: `http://h.test/${n}.jpg`, reason: 'http_404' as const };
      await writeFailures(store, n, [{ ...row, status: 404 }]);
      await commitUnit(store, { ...record!, failures: failuresKey(n) });
    }
    expect((await inspectDataset(store)).problems).toEqual([]);
    await rm(join(root, 'failures', '000001.jsonl'));
    const result = await runCli(['inspect', root, '--json']);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout).problems).toEqual([
      'failures/000001.jsonl is missing, units/000001.json lists its failed URLs there; ' +
        'delete units/000001.json and rerun the same command to redo unit 1',
    ]);
    await expect(readFailures(store, failuresKey(1))).rejects.toThrow(
      /failures\/000001\.jsonl is missing: .*delete units\/000001\.json and rerun the ingest without --retry-failed/,
    );
    await expect(readFailures(store, failuresKey(1))).rejects.toBeInstanceOf(InvalidShardError);
  });

  it('checks shards from one listing, never reading one, so a large dataset stays fast', async () => {
    await dataset('large', 5);
    const store = await openStore(join(dir, 'large'));
    const calls: string[] = [];
    for (const method of ['get', 'getRange', 'head', 'list'] as const) {
      const real = (store[method] as (...a: unknown[]) => unknown).bind(store);
      (store as unknown as Record<string, unknown>)[method] = (key: string, ...rest: unknown[]) => {
        calls.push(`${method} ${key}`);
        return real(key, ...rest);
      };
    }
    expect((await inspectDataset(store)).problems).toEqual([]);
    // No shard is read; one listing (the local store's own list stats each file, as an S3 LIST page returns sizes).
    expect(calls.filter((c) => /^get(Range)? shards\//.test(c))).toEqual([]);
    expect(calls.filter((c) => c.startsWith('list shards'))).toEqual(['list shards/']);
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
