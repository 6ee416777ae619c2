// The store's retry and timeout policy against every fault kind a fault-injecting proxy in front of s3rver
// produces, one at a time and on exactly the request a test names; and the policy's classification and options.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AccessDeniedError, ConfigError, NotFoundError, StoreUnavailableError } from '../../src/errors.js';
import { backoffMs, isRetryable, retryPolicy, RETRY_DEFAULTS, TransientError } from '../../src/shards/retry.js';
import { getBytes, openStore, type Store, type StoreOptions } from '../../src/shards/store.js';
import { startFaultProxy, type FaultKind, type FaultProxy, type ProxiedRequest } from '../helpers/fault-proxy.js';
import { startS3, type S3Fixture } from '../helpers/s3-server.js';

let s3: S3Fixture;
let proxy: FaultProxy;
/** Small timeouts and backoffs so a stall costs a fraction of a second. */
const FAST: StoreOptions = { requestTimeoutMs: 400, retryBaseDelayMs: 5, retryMaxDelayMs: 50, listPageSize: 2 };
const open = (options: StoreOptions = {}) =>
  openStore('s3://faults/p', { s3Endpoint: proxy.endpoint, ...FAST, ...options });

beforeAll(async () => {
  s3 = await startS3(['faults']);
  Object.assign(process.env, s3.env);
  proxy = await startFaultProxy({ upstream: s3.endpoint });
});
afterAll(async () => {
  await proxy?.stop();
  await s3?.stop();
});

const BIG = randomBytes(256 * 1024); // large enough that half a body reaches the client before a fault
const isGet = (r: ProxiedRequest) => r.method === 'GET' && !r.path.includes('list-type');

describe('each fault kind is retried, on each kind of request', () => {
  let store: Store;
  beforeAll(async () => {
    store = await open();
    await store.put('obj.bin', BIG);
    for (const k of ['l/a', 'l/b', 'l/c']) await store.put(k, Buffer.from(k));
  });
  beforeEach(() => proxy.clear());

  const kinds: FaultKind[] = ['error500', 'slowdown503', 'reset', 'truncate', 'stall-headers', 'stall-body', 'latency'];
  const operations: Array<[string, (r: ProxiedRequest) => boolean, (s: Store) => Promise<void>]> = [
    [
      'ranged GET',
      isGet,
      async (s) =>
        expect(Buffer.from(await s.getRange('obj.bin', 1000, 200_999)).equals(BIG.subarray(1000, 201_000))).toBe(true),
    ],
    ['whole GET', isGet, async (s) => expect(Buffer.from(await getBytes(s, 'obj.bin')).equals(BIG)).toBe(true)],
    ['HEAD', (r) => r.method === 'HEAD', async (s) => expect((await s.head('obj.bin'))?.size).toBe(BIG.length)],
    [
      'LIST page',
      (r) => r.path.includes('list-type'),
      async (s) => {
        const keys: string[] = [];
        for await (const o of s.list('l/')) keys.push(o.key);
        expect(keys).toEqual(['l/a', 'l/b', 'l/c']);
      },
    ],
    [
      'PUT',
      (r) => r.method === 'PUT',
      async (s) => {
        await s.put('put.bin', BIG);
        expect(Buffer.from(await getBytes(s, 'put.bin')).equals(BIG)).toBe(true);
      },
    ],
    [
      'DELETE',
      (r) => r.method === 'DELETE',
      async (s) => {
        await s.put('del.bin', Buffer.from('x'));
        await s.delete('del.bin');
        expect(await s.head('del.bin')).toBeNull();
      },
    ],
  ];

  for (const kind of kinds) {
    it.each(operations)(`${kind}: %s`, async (_name, match, run) => {
      proxy.inject(kind, 2, match); // twice in a row: the retry itself may meet a fault
      await run(store);
      const hit = proxy.stats.seen.filter((r) => r.fault === kind).length;
      // A delay is not retried, so a one-request operation meets only one of the two.
      if (kind === 'latency') expect(hit).toBeGreaterThanOrEqual(1);
      else expect(hit).toBe(2);
    });
  }

  it('resumes a whole GET cut mid-body with a ranged GET from the byte reached', async () => {
    proxy.inject('reset', 1, isGet);
    expect(Buffer.from(await getBytes(store, 'obj.bin')).equals(BIG)).toBe(true);
    const gets = proxy.stats.seen.filter(isGet);
    expect(gets[0]!.range).toBeUndefined();
    expect(gets[1]!.range).toMatch(/^bytes=\d+-262143$/);
    expect(Number(/=(\d+)/.exec(gets[1]!.range!)![1])).toBeGreaterThan(0);
  });

  it('retries every request of a multipart upload, and a Complete whose answer was lost', async () => {
    const big = randomBytes(9 * 1024 * 1024 + 5);
    const isPart = (r: ProxiedRequest) => r.method === 'PUT' && r.path.includes('partNumber=');
    const isComplete = (r: ProxiedRequest) => r.method === 'POST' && r.path.includes('uploadId=');
    proxy.inject('reset', 1, (r) => r.method === 'POST' && r.path.includes('uploads'));
    proxy.inject('truncate', 1, isPart);
    proxy.inject('slowdown503', 1, isPart);
    proxy.inject('reset', 1, isComplete); // the server completed the upload; the client saw a reset
    // Parts of 8 MiB: an idle timeout that survives a busy machine writing them (the faults here are not stalls).
    const patient = await open({ requestTimeoutMs: 5000 });
    await patient.put('multi.bin', Readable.from([big.subarray(0, 3_000_000), big.subarray(3_000_000)]));
    expect(Buffer.from(await getBytes(patient, 'multi.bin')).equals(big)).toBe(true);
    expect(proxy.stats.seen.filter((r) => r.fault !== null)).toHaveLength(4);
  });
});

describe('timeouts and giving up', () => {
  beforeEach(() => proxy.clear());

  it('cuts a stalled GET with the idle timeout, before headers and mid-body', async () => {
    await (await open({ requestTimeoutMs: 5000 })).put('stall.bin', BIG);
    const store = await open({ maxAttempts: 1, requestTimeoutMs: 500 });
    for (const kind of ['stall-headers', 'stall-body'] as const) {
      proxy.inject(kind, 1, isGet);
      const started = Date.now();
      const err = await store.getRange('stall.bin', 0, BIG.length - 1).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeGreaterThanOrEqual(450);
      expect(Date.now() - started).toBeLessThan(10_000); // minutes without the timeout
    }
  });

  it('ends persistent failure in a StoreUnavailableError naming the object and the cause, quickly', async () => {
    const store = await open({ maxAttempts: 3 });
    await store.put('gone.bin', Buffer.from('x'));
    proxy.inject('slowdown503', 100, isGet);
    const started = Date.now();
    const err = (await getBytes(store, 'gone.bin').catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err.message).toMatch(
      /s3:\/\/faults\/p\/gone\.bin failed after 3 attempts: HTTP 503 .*reduce your request rate/,
    );
    expect(Date.now() - started).toBeLessThan(10_000); // no backoff beyond retryMaxDelayMs (50 ms) between them
    expect(proxy.stats.seen.filter(isGet)).toHaveLength(3);
  });

  it('never retries an answer: 404 and 403 are one request each', async () => {
    const store = await open();
    await expect(store.getRange('absent.bin', 0, 1)).rejects.toBeInstanceOf(NotFoundError);
    expect(await store.head('absent.bin')).toBeNull();
    expect(proxy.stats.seen).toHaveLength(2);
    const id = process.env.AWS_ACCESS_KEY_ID;
    process.env.AWS_ACCESS_KEY_ID = 'NOBODY';
    try {
      const denied = await open();
      await expect(denied.getRange('absent.bin', 0, 1)).rejects.toBeInstanceOf(AccessDeniedError);
    } finally {
      process.env.AWS_ACCESS_KEY_ID = id;
    }
    expect(proxy.stats.seen).toHaveLength(3);
  });
});

describe('the retry policy', () => {
  it('retries faults and never answers', () => {
    const sdk = (name: string, status?: number) =>
      Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });
    const net = (code: string) => Object.assign(new Error(code), { code });
    for (const err of [
      sdk('SlowDown', 503),
      sdk('InternalError', 500),
      sdk('Unknown', 502),
      sdk('TooManyRequests', 429),
      sdk('TimeoutError'),
      net('ECONNRESET'),
      net('EPIPE'),
      net('ETIMEDOUT'),
      net('ECONNREFUSED'),
      new TransientError('short', 'WS_SHORT_BODY'),
      new Error('wrapped', { cause: net('ECONNRESET') }),
    ]) {
      expect(isRetryable(err), err.message).toBe(true);
    }
    for (const err of [
      sdk('NoSuchKey', 404),
      sdk('AccessDenied', 403),
      sdk('InvalidRange', 416),
      sdk('BadRequest', 400),
      new ConfigError('bad'),
      new NotFoundError('gone'),
      new Error('plain'),
      null,
      'text',
    ]) {
      expect(isRetryable(err), String(err)).toBe(false);
    }
  });

  it('backs off with full jitter under an exponential cap', () => {
    const policy = retryPolicy({ retryBaseDelayMs: 100, retryMaxDelayMs: 1000 });
    for (let retry = 1; retry <= 8; retry++) {
      const cap = Math.min(1000, 100 * 2 ** (retry - 1));
      const draws = Array.from({ length: 200 }, () => backoffMs(policy, retry));
      expect(Math.max(...draws)).toBeLessThanOrEqual(cap);
      expect(Math.max(...draws)).toBeGreaterThan(cap * 0.8);
      expect(Math.min(...draws)).toBeLessThan(cap * 0.2);
    }
  });

  it('declares its defaults once and validates options', () => {
    const saved = process.env.AWS_MAX_ATTEMPTS;
    delete process.env.AWS_MAX_ATTEMPTS;
    try {
      expect(retryPolicy()).toEqual(RETRY_DEFAULTS);
      process.env.AWS_MAX_ATTEMPTS = '3';
      expect(retryPolicy().attempts).toBe(3);
      expect(retryPolicy({ maxAttempts: 5 }).attempts).toBe(5);
      // A bad AWS_MAX_ATTEMPTS is named as the variable, with the bounds of --store-attempts.
      for (const bad of ['abc', '0', '1.5', '1e9', '-2']) {
        process.env.AWS_MAX_ATTEMPTS = bad;
        expect(() => retryPolicy(), bad).toThrow(
          new RegExp(`^AWS_MAX_ATTEMPTS must be an integer from 1 to 100 .*, got "${bad.replace('.', '\\.')}"$`),
        );
        expect(retryPolicy({ maxAttempts: 2 }).attempts, bad).toBe(2); // --store-attempts wins, unread
      }
    } finally {
      if (saved === undefined) delete process.env.AWS_MAX_ATTEMPTS;
      else process.env.AWS_MAX_ATTEMPTS = saved;
    }
    expect(() => retryPolicy({ maxAttempts: 0 })).toThrow(/maxAttempts must be an integer >= 1, got 0/);
    expect(() => retryPolicy({ requestTimeoutMs: -1 })).toThrow(ConfigError);
    expect(() => retryPolicy({ retryMaxDelayMs: Number.NaN })).toThrow(/retryMaxDelayMs/);
  });
});
