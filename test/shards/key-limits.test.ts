// Keys longer than a store takes (S3: 1024 bytes of UTF-8; local: 255 bytes a name, 4095 a path) are refused
// before any work or request: up front for a store's prefix or path, which must leave room for the longest key a
// job writes (longestKeys, made by the key builders), and at the store for each key. Against s3rver, which
// answered 500 to each retry of a key over 1024 bytes, and the local file system, which answered ENAMETOOLONG.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { diskWriteError } from '../../src/shards/disk-errors.js';
import { NAME_MAX_BYTES, PATH_MAX_BYTES, S3_MAX_KEY_BYTES, utf8Bytes } from '../../src/shards/key-limits.js';
import * as keys from '../../src/shards/keys.js';
import { putFile } from '../../src/shards/output.js';
import type { S3Store } from '../../src/shards/store-s3.js';
import { checkStoreUrl, getBytes, KeyTooLongError, openStore } from '../../src/shards/store.js';
import { startS3, type S3Fixture } from '../helpers/s3-server.js';

let s3: S3Fixture;
let dir: string;
beforeAll(async () => {
  s3 = await startS3(['limits']);
  Object.assign(process.env, s3.env);
  dir = await mkdtemp(join(tmpdir(), 'ws-limits-'));
});
afterAll(async () => {
  await s3?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Bytes a prefix must leave for the longest key a job writes below it, and the `/` before it. */
const room = Math.max(...keys.longestKeys().map(utf8Bytes)) + 1;
/** A path of `bytes` ASCII bytes made of names short enough for s3rver and any file system (`p…/p…/…`). */
function pathOf(bytes: number, char = 'p'): string {
  const names: string[] = [];
  let left = bytes;
  for (; left > 201; left -= 201) names.push(char.repeat(200));
  return [...names, char.repeat(left)].join('/');
}

describe('up front, before any work', () => {
  it('refuses an S3 prefix without room for the longest key, naming the prefix, its bytes, the limit and the room', async () => {
    const fits = pathOf(S3_MAX_KEY_BYTES - room);
    const over = `${fits}q`;
    expect(checkStoreUrl(`s3://limits/${fits}`)).toBe('s3');
    const err = await openStore(`s3://limits/${over}`, { s3Endpoint: s3.endpoint }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyTooLongError);
    expect(err).toBeInstanceOf(ConfigError); // exit 2: a setting to change, not a fault to retry
    expect((err as KeyTooLongError).code).toBe('WS_ERR_KEY_TOO_LONG');
    expect((err as Error).message).toContain(`S3 prefix ${over} of s3://limits/${over} is ${utf8Bytes(over)} bytes`);
    expect((err as Error).message).toContain(`S3 keys are at most ${S3_MAX_KEY_BYTES} bytes`);
    expect((err as Error).message).toContain(`needs ${room} bytes beyond the prefix`);
    expect((err as Error).message).toContain(`at most ${S3_MAX_KEY_BYTES - room} bytes`);
    // What a pipeline checks before its first stage, with the same words.
    expect(() => checkStoreUrl(`s3://limits/${over}/`)).toThrow(KeyTooLongError);
  });

  it('counts an S3 prefix in UTF-8 bytes: "é" is two', () => {
    const chars = Math.ceil((S3_MAX_KEY_BYTES - room + 1) / 2);
    const prefix = 'é'.repeat(chars); // fewer characters than the limit allows, more bytes
    expect(prefix.length).toBeLessThan(S3_MAX_KEY_BYTES - room);
    expect(() => checkStoreUrl(`s3://limits/${prefix}`)).toThrow(`is ${chars * 2} bytes`);
    expect(checkStoreUrl(`s3://limits/${'é'.repeat(Math.floor((S3_MAX_KEY_BYTES - room) / 2))}`)).toBe('s3');
  });

  it('derives the room from the key builders at their largest arguments, not from a typed number', () => {
    const most = Number.MAX_SAFE_INTEGER;
    const built = [
      keys.shardKey(most),
      keys.unitKey(most),
      keys.failuresKey(most),
      keys.crawlUnitKey(most),
      keys.checkpointKey(most),
      keys.metricsKey(most),
      keys.metricsArchiveKey(new Date(8.64e15), most), // the latest time a Date holds
      keys.MANIFEST_KEY,
      keys.INGEST_LOCK_KEY,
      keys.TRAIN_LOCK_KEY,
    ];
    for (const key of built) expect(keys.longestKeys()).toContain(key);
    expect(room).toBe(Math.max(...built.map(utf8Bytes)) + 1); // today a metrics archive key: 71 bytes
  });

  it('refuses a local store path with a name over 255 bytes, or without room below PATH_MAX, naming it', async () => {
    const long = join(dir, 'a'.repeat(NAME_MAX_BYTES + 1));
    await expect(openStore(long)).rejects.toThrow(KeyTooLongError);
    await expect(openStore(long)).rejects.toThrow(`holds the name ${'a'.repeat(256)}, 256 bytes`);
    expect(() => checkStoreUrl(join(dir, 'é'.repeat(128)))).toThrow(/256 bytes .* at most 255 bytes \(NAME_MAX\)/);
    expect(checkStoreUrl(join(dir, 'é'.repeat(127)))).toBe('file');

    const localRoom = Math.max(...keys.longestKeys(true).map((k) => utf8Bytes(keys.tempName(k)))) + 1;
    const base = `${dir}/`;
    const deep = base + pathOf(PATH_MAX_BYTES - localRoom - base.length + 1, 'd');
    expect(utf8Bytes(deep)).toBe(PATH_MAX_BYTES - localRoom + 1);
    const err = await openStore(deep).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyTooLongError);
    expect((err as Error).message).toContain(`store path ${deep} is ${PATH_MAX_BYTES - localRoom + 1} bytes`);
    expect((err as Error).message).toContain(`paths are at most ${PATH_MAX_BYTES} bytes (PATH_MAX)`);
    expect((err as Error).message).toContain(`needs ${localRoom} bytes beyond it`);
    expect(checkStoreUrl(deep.slice(0, -1))).toBe('file');
  });

  it('checks a one-file output by its own name, not by the room of a whole store', async () => {
    // The file's key is its URL's path: 1024 bytes fit, though its folder leaves no room for a dataset.
    const folder = pathOf(S3_MAX_KEY_BYTES - 'e.arrow'.length - 1);
    const options = { s3Endpoint: s3.endpoint };
    expect(await putFile(`s3://limits/${folder}/e.arrow`, Buffer.from('ok'), options)).toBe(
      `s3://limits/${folder}/e.arrow`,
    );
    await expect(putFile(`s3://limits/${folder}/ee.arrow`, Buffer.from('no'), options)).rejects.toThrow(
      KeyTooLongError,
    );
    // Locally a put writes `<name>.ws-tmp-<12 hex>` first: a name of 240 bytes fits NAME_MAX, its temp file not.
    const name = `${'n'.repeat(234)}.arrow`;
    await expect(putFile(join(dir, name), Buffer.from('no'))).rejects.toThrow(/temp file named n+\.arrow\.ws-tmp-/);
    expect(await putFile(join(dir, name.slice(20)), Buffer.from('ok'))).toBe(`file://${dir}/${name.slice(20)}`);
  });
});

describe('at the store, before any request', () => {
  it('fails an S3 put, get, range, head, delete or list of a key over 1024 bytes without a request', async () => {
    const store = (await openStore('s3://limits/short', { s3Endpoint: s3.endpoint })) as S3Store;
    const requests: string[] = [];
    store.client.middlewareStack.add(
      (next, context) => async (args) => {
        requests.push(context.commandName!);
        return next(args);
      },
      { step: 'initialize', name: 'countRequests' },
    );
    // `short/` and the key: exactly 1024 bytes round-trip on a real server.
    const most = pathOf(S3_MAX_KEY_BYTES - 'short/'.length);
    await store.put(most, Buffer.from('fits'));
    expect(Buffer.from(await getBytes(store, most)).toString()).toBe('fits');
    expect((await store.head(most))?.size).toBe(4);
    await store.delete(most);
    const sent = requests.length;

    // One byte over, in ASCII; and in 2-byte characters that are fewer than 1024 characters in all.
    for (const key of [`${most}x`, `k/${'é'.repeat(510)}`]) {
      expect(`short/${key}`.length).toBeLessThanOrEqual(S3_MAX_KEY_BYTES + 1);
      const full = `s3://limits/short/${key}`;
      const tooLong = `object key too long: ${full} is ${utf8Bytes(`short/${key}`)} bytes of UTF-8`;
      await expect(store.put(key, Buffer.from('x'))).rejects.toThrow(tooLong);
      await expect(store.get(key)).rejects.toThrow(KeyTooLongError);
      await expect(store.getRange(key, 0, 1)).rejects.toThrow(KeyTooLongError);
      await expect(store.head(key)).rejects.toThrow(KeyTooLongError);
      await expect(store.delete(key)).rejects.toThrow(KeyTooLongError);
      await expect(drain(store.list(`${key}/`))).rejects.toThrow(KeyTooLongError);
    }
    // A stream too: refused before its multipart upload starts.
    await expect(store.put(`${most}x`, Readable.from([Buffer.alloc(9 << 20)]))).rejects.toThrow(KeyTooLongError);
    expect(requests.slice(sent)).toEqual([]);
  });

  it('fails a local put, get, head or list of a path over the limits as KeyTooLongError, not a raw ENAMETOOLONG', async () => {
    const store = await openStore(join(dir, 'local'));
    const long = 'n'.repeat(NAME_MAX_BYTES + 1);
    for (const attempt of [
      store.put(long, Buffer.from('x')),
      getBytes(store, long),
      store.getRange(long, 0, 0),
      store.head(long),
      drain(store.list(`${long}/`)),
    ])
      await expect(attempt).rejects.toThrow(`holds the name ${long}, 256 bytes`);
    // A name that fits, but not with the temp file mark a put adds to it.
    await expect(store.put(`a/${'m'.repeat(240)}`, Buffer.from('x'))).rejects.toThrow(KeyTooLongError);
    await expect(store.put(`a/${'é'.repeat(118)}`, Buffer.from('x'))).rejects.toThrow(/ws-tmp-[0-9a-f]+, 256 bytes/);
    await store.put(`a/${'é'.repeat(117)}`, Buffer.from('fits'));
    expect(Buffer.from(await getBytes(store, `a/${'é'.repeat(117)}`)).toString()).toBe('fits');
    // A path over PATH_MAX, of names that each fit.
    await expect(store.put(pathOf(PATH_MAX_BYTES, 'd'), Buffer.from('x'))).rejects.toThrow(
      /bytes of UTF-8, and paths are at most 4095 bytes \(PATH_MAX\)/,
    );
  });

  it('words ENAMETOOLONG from a file system with shorter limits as the same error, naming the path', () => {
    const err = Object.assign(new Error('ENAMETOOLONG: name too long'), { code: 'ENAMETOOLONG' });
    const mapped = diskWriteError(err, `/mnt/ecryptfs/${'x'.repeat(150)}`);
    expect(mapped).toBeInstanceOf(KeyTooLongError);
    expect(mapped!.message).toBe(
      `path too long: the file system refuses /mnt/ecryptfs/${'x'.repeat(150)} (164 bytes of UTF-8, its longest name 150); use a shorter path`,
    );
  });
});

async function drain(items: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of items);
}
