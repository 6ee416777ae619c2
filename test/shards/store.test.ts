// One conformance suite for every store: the local filesystem, a real S3 server (s3rver) on loopback, and the
// same server behind a proxy that fails a fifth of the requests (store-faults.test.ts tests each fault alone).
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BucketNotFoundError,
  ConfigError,
  NotFoundError,
  StoreUnavailableError,
  UnsupportedStoreError,
} from '../../src/errors.js';
import { getBytes, openStore, type Store } from '../../src/shards/store.js';
import { FAULT_KINDS, startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { startS3, type S3Fixture } from '../helpers/s3-server.js';

let s3: S3Fixture;
let proxy: FaultProxy;
let dir: string;
beforeAll(async () => {
  s3 = await startS3(['conformance', 'other']);
  Object.assign(process.env, s3.env);
  proxy = await startFaultProxy({ upstream: s3.endpoint, rate: 0.2, seed: 7 });
  dir = await mkdtemp(join(tmpdir(), 'ws-store-'));
});
afterAll(async () => {
  await proxy?.stop();
  await s3?.stop();
  await rm(dir, { recursive: true, force: true });
});

const kinds: Array<[string, () => Promise<Store>]> = [
  ['local', () => openStore(join(dir, 'root'))],
  ['s3', () => openStore('s3://conformance/some/prefix', { s3Endpoint: s3.endpoint, listPageSize: 3 })],
  [
    's3 with 20 % faults',
    () =>
      openStore('s3://conformance/faulty', {
        s3Endpoint: proxy.endpoint,
        listPageSize: 3,
        requestTimeoutMs: 2000,
        retryBaseDelayMs: 5,
        retryMaxDelayMs: 100,
      }),
  ],
];

describe.each(kinds)('%s store', (_name, open) => {
  let store: Store;
  beforeAll(async () => {
    store = await open();
  });

  it('round-trips bytes and streams, and overwrites', async () => {
    const bytes = Buffer.from('hello shard');
    await store.put('a/b.bin', bytes);
    expect(Buffer.from(await getBytes(store, 'a/b.bin'))).toEqual(bytes);
    await store.put('a/b.bin', Readable.from([Buffer.from('new '), Buffer.from('content')]));
    expect(Buffer.from(await getBytes(store, 'a/b.bin')).toString()).toBe('new content');
  });

  it('streams a large object through put and get', async () => {
    const big = Buffer.alloc(9 * 1024 * 1024 + 17);
    for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
    await store.put('big.bin', Readable.from([big.subarray(0, 5_000_000), big.subarray(5_000_000)]));
    expect((await store.head('big.bin'))?.size).toBe(big.length);
    expect(Buffer.from(await getBytes(store, 'big.bin')).equals(big)).toBe(true);
  });

  it('reads explicit byte ranges', async () => {
    await store.put('range.bin', Buffer.from('0123456789'));
    expect(Buffer.from(await store.getRange('range.bin', 2, 5)).toString()).toBe('2345');
    expect(Buffer.from(await store.getRange('range.bin', 0, 0)).toString()).toBe('0');
    expect(Buffer.from(await store.getRange('range.bin', 9, 9)).toString()).toBe('9');
    await expect(store.getRange('range.bin', 5, 2)).rejects.toBeInstanceOf(ConfigError);
  });

  it('reads a range into shared memory when asked', async () => {
    await store.put('shared.bin', Buffer.from('0123456789'));
    const shared = await store.getRange('shared.bin', 3, 7, { shared: true });
    expect(shared.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(Buffer.from(shared).toString()).toBe('34567');
    expect((await store.getRange('shared.bin', 3, 7)).buffer).not.toBeInstanceOf(SharedArrayBuffer);
  });

  it('heads size and etag, or null when absent', async () => {
    await store.put('h.bin', Buffer.from('abc'));
    const info = await store.head('h.bin');
    expect(info?.size).toBe(3);
    expect(info?.etag).toBeTruthy();
    expect(await store.head('missing.bin')).toBeNull();
  });

  it('lists by prefix in key order across pages', async () => {
    const keys = Array.from({ length: 8 }, (_, i) => `list/k${i}.json`);
    await Promise.all(keys.map((k) => store.put(k, Buffer.from(k))));
    await store.put('listing-not-mine.json', Buffer.from('x'));
    const seen: string[] = [];
    for await (const info of store.list('list/')) seen.push(info.key);
    expect(seen).toEqual(keys);
    const partial: string[] = [];
    for await (const info of store.list('list/k1')) partial.push(info.key);
    expect(partial).toEqual(['list/k1.json']);
    const none: string[] = [];
    for await (const info of store.list('nothing-here/')) none.push(info.key);
    expect(none).toEqual([]);
  });

  it('deletes, and deleting an absent object is fine', async () => {
    await store.put('d.bin', Buffer.from('x'));
    await store.delete('d.bin');
    expect(await store.head('d.bin')).toBeNull();
    await store.delete('d.bin');
  });

  it('gives typed errors for missing objects and invalid keys', async () => {
    await expect(store.get('nope/none.bin')).rejects.toBeInstanceOf(NotFoundError);
    await expect(store.getRange('nope/none.bin', 0, 3)).rejects.toBeInstanceOf(NotFoundError);
    for (const key of ['', '/abs', 'a/../b', '../escape', 'a//b', 'a/./b', 'nul\u0000']) {
      await expect(store.put(key, Buffer.from('x'))).rejects.toBeInstanceOf(ConfigError);
    }
  });

  it('never shows a partial object while a put is streaming', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    async function* body() {
      yield Buffer.alloc(1024, 1);
      await gate;
      yield Buffer.alloc(1024, 2);
    }
    const putting = store.put('atomic.bin', Readable.from(body()));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await store.head('atomic.bin')).toBeNull();
    const listed: string[] = [];
    for await (const info of store.list('atomic')) listed.push(info.key);
    expect(listed).toEqual([]);
    release();
    await putting;
    expect((await store.head('atomic.bin'))?.size).toBe(2048);
  });
});

it('the faulty store met faults of every kind, on about a fifth of its requests', () => {
  const met = Object.keys(proxy.stats.injected).map((k) => (k.startsWith('stall') ? 'stall' : k));
  expect(new Set(met)).toEqual(new Set(FAULT_KINDS));
  const injected = Object.values(proxy.stats.injected).reduce((a, b) => a + b, 0);
  expect(injected / proxy.stats.requests).toBeGreaterThan(0.1);
});

describe('store errors', () => {
  it('refuses unknown schemes with a typed one-line error', async () => {
    await expect(openStore('ftp://host/x')).rejects.toBeInstanceOf(UnsupportedStoreError);
    await expect(openStore('ftp://host/x')).rejects.toThrow(/unsupported store URL scheme "ftp:"/);
    await expect(openStore('s3://')).rejects.toBeInstanceOf(ConfigError);
  });

  it('refuses S3 prefixes with empty, "." or ".." segments before any request, as it refuses such keys', async () => {
    // The HTTP layer resolves these (s3://bkt/../other/ds was written into bucket "other"), so they are refused.
    for (const [url, why] of [
      ['s3://conformance/../other/ds', /prefix segments may not be "\." or "\.\."/],
      ['s3://conformance/./dot', /prefix segments may not be "\." or "\.\."/],
      ['s3://conformance/a/..', /prefix segments may not be "\." or "\.\."/],
      ['s3://conformance//dbl', /prefix segments may not be empty/],
      ['s3://conformance/a//b/', /prefix segments may not be empty/],
      ['s3://conformance/a\nb', /control characters/],
    ] as const) {
      const err = (await openStore(url, { s3Endpoint: s3.endpoint }).catch((e: unknown) => e)) as Error;
      expect(err, url).toBeInstanceOf(ConfigError);
      expect(err.message, url).toMatch(why);
      expect(err.message.startsWith(`invalid S3 URL ${url}: `), url).toBe(true);
      expect(err.message, url).toContain('write the prefix as plain names');
    }
    // Trailing slashes, dots inside names, spaces and unicode are fine.
    for (const url of ['s3://conformance/a/b/', 's3://conformance/v1.2/..x/sp ace/é', 's3://conformance/']) {
      await expect(openStore(url, { s3Endpoint: s3.endpoint }), url).resolves.toBeDefined();
    }
    const store = await openStore('s3://conformance/keys', { s3Endpoint: s3.endpoint });
    for (const key of ['a/../b', './a', 'a//b', 'a/', '/a', 'a\\b', 'a\u0007b', '']) {
      await expect(store.put(key, Buffer.from('x')), key).rejects.toThrow(/^invalid object key .*: /);
    }
  });

  it('reports a missing bucket', async () => {
    const store = await openStore('s3://no-such-bucket/x', { s3Endpoint: s3.endpoint });
    const listing = async () => {
      for await (const _ of store.list('')) void _;
    };
    await expect(listing()).rejects.toBeInstanceOf(BucketNotFoundError);
    // A listing is named by the prefix it lists, with no made-up "//".
    await expect(listing()).rejects.toThrow(/^bucket does not exist: s3:\/\/no-such-bucket\/x\/$/);
    await expect(store.get('k')).rejects.toBeInstanceOf(BucketNotFoundError);
  });

  it('refuses a store URL with a query string or fragment, a remote scheme without "//" or an unexpanded ~, naming it', async () => {
    // file: URLs dropped the query (file:///d?x wrote to /d), S3 kept it in the prefix, and s3:/bkt/x was a
    // local folder named "s3:": each would put the data somewhere else than the user meant.
    for (const [url, why] of [
      [`file://${dir}/q?x=1`, /query string or fragment/],
      [`file://${dir}/q#top`, /query string or fragment/],
      [`file:${dir}/q?x=1`, /query string or fragment/],
      ['s3://conformance/ds?versionId=3', /query string or fragment/],
      ['s3://conformance/ds#x', /query string or fragment/],
      ['s3:/conformance/ds', /malformed: write s3:\/\/\.\.\., or \.\/s3:\/conformance\/ds for a local folder/],
      ['s3:conformance', /malformed/],
      ['gs:bkt/x', /malformed/],
      ['~/data', /^store path ~\/data starts with "~", which only a shell expands: write \$HOME\/data /],
      ['~', /only a shell expands/],
    ] as const) {
      const err = (await openStore(url, { s3Endpoint: s3.endpoint }).catch((e: unknown) => e)) as Error;
      expect(err, url).toBeInstanceOf(ConfigError);
      expect(err.message, url).toMatch(why);
      expect(err.message, url).toContain(url);
    }
    // Local folder names may hold "?", "#" and ":" (a plain path is not a URL).
    for (const path of ['run:2', 'backup-T10:00', 'a?b#c', 'C:\\data', '~x', 'a/~'])
      await expect(openStore(join(dir, 'plain', path)), path).resolves.toBeDefined();
    await expect(openStore('run:2')).resolves.toBeDefined();
  });

  it('refuses an endpoint the SDK cannot parse and an empty region as bad settings, naming them', async () => {
    // Each was a broken run (exit 1): "ERR_INVALID_URL Invalid URL" on every request, or "Region is missing".
    for (const s3Endpoint of ['http://127.0.0.1:99999', 'http://127.0.0.1: 5', 'http://', 'ftp://host'])
      await expect(openStore('s3://conformance/x', { s3Endpoint }), s3Endpoint).rejects.toThrow(
        new RegExp(`^invalid S3 endpoint "${s3Endpoint.replace(/[.:/]/g, '\\$&')}": expected http`),
      );
    for (const s3Region of ['', ' ', 'us east'])
      await expect(openStore('s3://conformance/x', { s3Endpoint: s3.endpoint, s3Region }), s3Region).rejects.toThrow(
        /^invalid S3 region ".*": expected a name/,
      );
    const saved = process.env.AWS_REGION;
    process.env.AWS_REGION = ''; // an empty variable is unset
    try {
      const store = await openStore('s3://conformance/region', { s3Endpoint: s3.endpoint });
      expect(await store.head('absent')).toBeNull();
    } finally {
      if (saved === undefined) delete process.env.AWS_REGION;
      else process.env.AWS_REGION = saved;
    }
  });

  it('fails fast on an unreachable endpoint instead of hanging', async () => {
    const store = await openStore('s3://bucket/x', { s3Endpoint: 'http://127.0.0.1:9', maxAttempts: 2 });
    const started = Date.now();
    await expect(store.head('k')).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('leaves no temp files behind after a failed local put', async () => {
    const store = await openStore(join(dir, 'failing'));
    async function* broken() {
      yield Buffer.from('partial');
      throw new Error('source died');
    }
    await expect(store.put('x/y.bin', Readable.from(broken()))).rejects.toThrow();
    expect(await readdir(join(dir, 'failing', 'x'))).toEqual([]);
    expect(await store.head('x/y.bin')).toBeNull();
  });

  it('refuses a put onto a folder as a wrong place (an --out that is a folder), not as a missing object', async () => {
    const store = await openStore(join(dir, 'places'));
    await mkdir(join(dir, 'places', 'out.png'), { recursive: true });
    const onFolder = store.put('out.png', Buffer.from('x'));
    await expect(onFolder).rejects.toBeInstanceOf(ConfigError);
    await expect(onFolder).rejects.toThrow(/^cannot write out\.png: .*places\/out\.png is a directory$/);
    expect(await readdir(join(dir, 'places', 'out.png'))).toEqual([]); // no temp file left in the folder
  });

  it("sweeps a killed put's temp files from a folder, and nothing else", async () => {
    const store = await openStore(join(dir, 'killed'));
    await store.put('checkpoints/step-1.ckpt', Buffer.from('whole'));
    await store.put('checkpoints/deeper/other.bin', Buffer.from('x'));
    await writeFile(join(dir, 'killed', 'checkpoints', 'step-2.ckpt.ws-tmp-0123456789ab'), 'part'); // as put names them
    expect(await store.sweepUnfinished!('checkpoints')).toEqual(['step-2.ckpt.ws-tmp-0123456789ab']);
    expect((await readdir(join(dir, 'killed', 'checkpoints'))).sort()).toEqual(['deeper', 'step-1.ckpt']);
    expect(await store.sweepUnfinished!('checkpoints')).toEqual([]);
    expect(await store.sweepUnfinished!('absent')).toEqual([]);
  });

  it('takes a FIFO, a directory or a device at a key as no object, without blocking on it', async () => {
    const store = await openStore(join(dir, 'special'));
    await store.put('keep.bin', Buffer.from('x'));
    execFileSync('mkfifo', [join(dir, 'special', 'fifo')]); // an open for reading would wait for a writer
    await mkdir(join(dir, 'special', 'dir'));
    await symlink('/dev/zero', join(dir, 'special', 'zero')); // endless bytes
    for (const key of ['fifo', 'dir', 'zero']) {
      expect(await store.head(key), key).toBeNull();
      await expect(getBytes(store, key), key).rejects.toThrow(/^no such object: .* \(not a regular file\)$/);
      await expect(store.getRange(key, 0, 3), key).rejects.toThrow(NotFoundError);
    }
    expect([...(await listKeys(store))]).toEqual(['keep.bin']);
  });

  it('says a store whose location is a file, or under one, cannot be created', async () => {
    await writeFile(join(dir, 'a-file'), 'hi');
    for (const root of [join(dir, 'a-file'), join(dir, 'a-file', 'sub')]) {
      const store = await openStore(root);
      expect(await store.head('k')).toBeNull();
      await expect(store.put('k', Buffer.from('x'))).rejects.toThrow(ConfigError);
      await expect(store.put('k', Buffer.from('x'))).rejects.toThrow(
        /^cannot create .*: .*a-file is a file, not a directory$/,
      );
    }
  });
});

async function listKeys(store: Store): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of store.list('')) keys.push(o.key);
  return keys;
}
