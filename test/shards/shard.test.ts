// Shard round trips on both stores, ranged reads counted on S3, and corrupt input.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, InvalidShardError } from '../../src/errors.js';
import { ShardReader } from '../../src/shards/reader.js';
import { getBytes, openStore, type Store } from '../../src/shards/store.js';
import type { S3Store } from '../../src/shards/store-s3.js';
import { ShardWriter } from '../../src/shards/writer.js';
import { imageSchema } from '../../src/shards/schema.js';
import { startS3, type S3Fixture } from '../helpers/s3-server.js';
import { makeRecord, plain } from '../helpers/records.js';

let s3: S3Fixture;
let dir: string;
beforeAll(async () => {
  s3 = await startS3(['shards']);
  Object.assign(process.env, s3.env);
  dir = await mkdtemp(join(tmpdir(), 'ws-shard-'));
});
afterAll(async () => {
  await s3?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function writeShard(store: Store, key: string, n: number, options = {}) {
  const writer = new ShardWriter({ maxBatchRows: 10, ...options });
  const records = Array.from({ length: n }, (_, i) => makeRecord(i));
  for (const r of records) await writer.add(r);
  return { records, info: await writer.finish(store, key) };
}

const kinds: Array<[string, () => Promise<Store>]> = [
  ['local', () => openStore(join(dir, 'ds'))],
  ['s3', () => openStore('s3://shards/ds', { s3Endpoint: s3.endpoint })],
];

describe.each(kinds)('shards on the %s store', (_name, open) => {
  it('read back equal to what was written, batch by batch', async () => {
    const store = await open();
    const { records, info } = await writeShard(store, 'shards/000000.arrow', 35);
    expect(info).toMatchObject({ records: 35, batches: 4 });
    expect((await store.head('shards/000000.arrow'))?.size).toBe(info.bytes);
    const reader = await ShardReader.open(store, 'shards/000000.arrow');
    expect(reader.numBatches).toBe(4);
    const back = [];
    for await (const r of reader.records()) back.push(plain(r));
    expect(back).toEqual(records.map(plain));
  });

  it('keeps every record batch within maxBatchBytes, but for an image larger than it alone', async () => {
    const store = await open();
    const writer = new ShardWriter({ maxBatchBytes: 2500 });
    const sizes = [1000, 1000, 1000, 3000, 400, 2000, 200];
    for (const [i, n] of sizes.entries()) await writer.add(makeRecord(i, n));
    const info = await writer.finish(store, 'shards/000009.arrow');
    const reader = await ShardReader.open(store, 'shards/000009.arrow');
    const batches: number[][] = [];
    for (let b = 0; b < reader.numBatches; b++) {
      batches.push((await reader.readRecords(b)).map((r) => r.image.byteLength));
    }
    // 1000 + 1000 + 1000 would be 3000: the third image opens the next batch; 3000 is alone, over the bound.
    expect(batches).toEqual([[1000, 1000], [1000], [3000], [400, 2000], [200]]);
    expect(info.batches).toBe(5);
  });

  it('keeps extra URL-list columns', async () => {
    const store = await open();
    const writer = new ShardWriter({ extraColumns: ['license', 'lang'] });
    await writer.add({ ...makeRecord(1), extra: { license: 'cc-by', lang: null } });
    await writer.add({ ...makeRecord(2), extra: { license: 'cc0' } });
    await writer.finish(store, 'shards/extra.arrow');
    const reader = await ShardReader.open(store, 'shards/extra.arrow');
    expect(reader.extraColumns).toEqual(['license', 'lang']);
    const rows = await reader.readRecords(0);
    expect(rows.map((r) => r.extra)).toEqual([
      { license: 'cc-by', lang: null },
      { license: 'cc0', lang: null },
    ]);
  });

  it('writes a valid empty shard', async () => {
    const store = await open();
    const { info } = await writeShard(store, 'shards/empty.arrow', 0);
    expect(info).toMatchObject({ records: 0, batches: 0 });
    const reader = await ShardReader.open(store, 'shards/empty.arrow');
    expect(reader.numBatches).toBe(0);
  });

  it('refuses truncated and non-Arrow shards with a typed one-line error', async () => {
    const store = await open();
    await writeShard(store, 'shards/good.arrow', 12);
    const whole = Buffer.from(await getBytes(store, 'shards/good.arrow'));
    const bad: Record<string, Buffer> = {
      truncated: whole.subarray(0, Math.floor(whole.length / 2)),
      'cut-tail': whole.subarray(0, whole.length - 3),
      text: Buffer.from('this is not an arrow file at all, just some text'),
      tiny: Buffer.from('AR'),
      'bad-footer-length': Buffer.concat([
        whole.subarray(0, whole.length - 10),
        Buffer.from([0xff, 0xff, 0xff, 0x7f]),
        Buffer.from('ARROW1'),
      ]),
    };
    for (const [name, bytes] of Object.entries(bad)) {
      await store.put(`shards/${name}.arrow`, bytes);
      const error = await ShardReader.open(store, `shards/${name}.arrow`).catch((e: unknown) => e);
      expect(error, name).toBeInstanceOf(InvalidShardError);
      expect(String((error as Error).message)).not.toContain('\n');
    }
    await expect(ShardReader.open(store, 'shards/absent.arrow')).rejects.toBeInstanceOf(InvalidShardError);
  });

  it("refuses a batch index that does not exist as the caller's error, not a damaged shard", async () => {
    const store = await open();
    await writeShard(store, 'shards/three.arrow', 25);
    const reader = await ShardReader.open(store, 'shards/three.arrow');
    await expect(reader.readBatch(3)).rejects.toBeInstanceOf(ConfigError);
    await expect(reader.readBatch(-1)).rejects.toBeInstanceOf(ConfigError);
  });
});

describe('ranged reads over S3', () => {
  it('fetches one record batch with exactly one ranged GET', async () => {
    const store = (await openStore('s3://shards/count', { s3Endpoint: s3.endpoint })) as S3Store;
    // Big enough that the footer tail does not cover the batches.
    await writeShard(store, 'shards/000000.arrow', 60, { maxBatchRows: 20 });
    const requests: string[] = [];
    store.client.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { Range?: string };
        requests.push(`${context.commandName}${input.Range ? ` ${input.Range}` : ''}`);
        return next(args);
      },
      { step: 'initialize', name: 'countRequests' },
    );
    const info = await store.head('shards/000000.arrow');
    expect(info!.size).toBeGreaterThan(64 * 1024);
    const reader = await ShardReader.open(store, 'shards/000000.arrow', { size: info!.size });
    const opened = requests.length;
    expect(opened).toBeLessThanOrEqual(3); // tail (+ footer spill) + leading magic
    const rows = await reader.readRecords(1);
    expect(rows.map((r) => r.key)[0]).toBe('000000-00020');
    expect(requests.slice(opened)).toHaveLength(1);
    expect(requests.at(-1)).toMatch(/^GetObjectCommand bytes=\d+-\d+$/);
  });
});

describe('shard format', () => {
  it('is readable by a plain Arrow reader', async () => {
    const store = await openStore(join(dir, 'plain'));
    const { records } = await writeShard(store, 's.arrow', 15);
    const table = tableFromIPC(Buffer.from(await getBytes(store, 's.arrow')));
    expect(table.numRows).toBe(15);
    expect(table.schema.fields.map((f) => f.name)).toEqual(imageSchema().fields.map((f) => f.name));
    expect(table.schema.metadata.get('wildstream.schema_version')).toBe('1');
    expect(table.getChild('key')!.toArray()).toEqual(records.map((r) => r.key));
  });

  it('validates options and column names', () => {
    expect(() => new ShardWriter({ maxBatchRows: 0 })).toThrow(ConfigError);
    expect(() => new ShardWriter({ maxBatchBytes: -1 })).toThrow(/maxBatchBytes must be a positive integer/);
    expect(() => new ShardWriter({ extraColumns: ['url'] })).toThrow(/collides/);
    expect(() => new ShardWriter({ extraColumns: ['bad name'] })).toThrow(ConfigError);
  });
});
