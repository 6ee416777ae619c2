// What an S3 server answers is checked before it is trusted: a ranged answer that holds another window than
// asked, or a short one, is retried (never taken as the asked bytes, never called the object's end), and a
// listing that repeats tokens or keys neither loops nor lists twice. Against a server that lies on demand.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { NotFoundError, StoreUnavailableError } from '../../src/errors.js';
import { TransientError } from '../../src/shards/retry.js';
import { ListingGuard, servedWindow, sliceServed } from '../../src/shards/s3-answers.js';
import { getBytes, openStore, type Store } from '../../src/shards/store.js';
import { startLyingS3, type LyingS3, type S3Answer, type S3Request } from '../helpers/lying-s3.js';

let s3: LyingS3;
let store: Store;
const BODY = randomBytes(64 * 1024);

beforeAll(async () => {
  s3 = await startLyingS3();
  process.env.AWS_ACCESS_KEY_ID ??= 'test';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'test';
  store = await openStore('s3://lies/ds', {
    s3Endpoint: s3.endpoint,
    requestTimeoutMs: 2000,
    retryBaseDelayMs: 1,
    retryMaxDelayMs: 5,
    listPageSize: 2,
  });
});
afterAll(() => s3?.stop());
beforeEach(() => {
  s3.objects.clear();
  s3.objects.set('lies/ds/obj.bin', BODY);
  s3.seen.length = 0;
  s3.lie = null;
});

/** Lies on the first `count` requests `match` accepts (every one with -1), then answers honestly. */
function lieOn(count: number, match: (r: S3Request) => boolean, how: (a: S3Answer, r: S3Request) => S3Answer): void {
  let left = count;
  s3.lie = (req, answer) => (left !== 0 && match(req) ? (left--, how(answer, req)) : answer);
}

const ranged = (r: S3Request) => r.range !== undefined;
/** The honest window moved 16 bytes on (its Content-Range says so): the bytes asked for do not all come. */
function startLate(a: S3Answer): S3Answer {
  const [, from, to, size] = /bytes (\d+)-(\d+)\/(\d+)/.exec(a.headers['content-range']!)!.map(Number);
  return {
    ...a,
    headers: { ...a.headers, 'content-range': `bytes ${from! + 16}-${to}/${size}` },
    body: a.body.subarray(16),
  };
}

describe('ranged reads', () => {
  it('retry an answer that starts after the byte asked for, and return the right bytes', async () => {
    lieOn(1, ranged, startLate);
    const got = await store.getRange('obj.bin', 1000, 2999);
    expect(Buffer.from(got).equals(BODY.subarray(1000, 3000))).toBe(true);
    expect(s3.seen.filter(ranged)).toHaveLength(2);
  });

  it('retry a 206 without a Content-Range, and a body shorter than its Content-Range', async () => {
    lieOn(1, ranged, (a) => ({ ...a, headers: { etag: a.headers.etag! } }));
    expect(Buffer.from(await store.getRange('obj.bin', 10, 19)).equals(BODY.subarray(10, 20))).toBe(true);
    lieOn(1, ranged, (a) => ({ ...a, body: a.body.subarray(0, a.body.length >> 1) }));
    expect(Buffer.from(await store.getRange('obj.bin', 100, 4099)).equals(BODY.subarray(100, 4100))).toBe(true);
  });

  it('report a persistent lie as the store failing, never as a corrupt or short object', async () => {
    lieOn(-1, ranged, startLate);
    const err = await store.getRange('obj.bin', 0, 99).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(String(err)).toMatch(/obj\.bin.*starts at byte 16, not at the 0 asked for/);
  });

  it('say the object ends when it does (the Content-Range total), naming its size', async () => {
    const err = await store.getRange('obj.bin', BODY.length - 10, BODY.length + 10).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(String(err)).toContain(`(${BODY.length} bytes)`);
  });
});

describe('whole reads', () => {
  const cut = (a: S3Answer): S3Answer => ({ ...a, cutAfter: 60_000 });

  it('resume a cut body only from an answer that starts at or before the byte reached', async () => {
    // The first answer is cut after 60,000 bytes; the first resumed answer starts 16 bytes late and is refused.
    let n = 0;
    s3.lie = (req, a) => (++n === 1 ? cut(a) : n === 2 ? startLate(a) : a);
    const bytes = Buffer.from(await getBytes(store, 'obj.bin'));
    expect(bytes.equals(BODY)).toBe(true);
    expect(s3.seen.map((r) => r.range ?? 'whole')).toEqual(['whole', 'bytes=60000-65535', 'bytes=60000-65535']);
  });

  it('say that an object replaced while it was read changed (412 to If-Match)', async () => {
    let n = 0;
    s3.lie = (req, a) => {
      if (++n === 1) {
        s3.objects.set('lies/ds/obj.bin', randomBytes(BODY.length)); // replaced after its first bytes left
        return cut(a);
      }
      return a;
    };
    const err = await getBytes(store, 'obj.bin').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(String(err)).toMatch(/obj\.bin changed while it was being read; retry the command/);
  });
});

describe('listings', () => {
  beforeEach(() => {
    for (const k of ['a', 'b', 'c', 'd', 'e']) s3.objects.set(`lies/ds/units/${k}`, Buffer.from(k));
  });
  const list = async () => {
    const keys: string[] = [];
    for await (const o of store.list('units/')) keys.push(o.key);
    return keys;
  };
  const isList = (r: S3Request) => r.path === 'lies';

  it('list every key once when a page is sent again under a new token', async () => {
    // The first page's token points back to the start (a gateway that lost its place): pages repeat once.
    lieOn(1, isList, (a) => ({
      ...a,
      body: Buffer.from(String(a.body).replace(/<NextContinuationToken>[^<]*/, '<NextContinuationToken>AA==')),
    }));
    expect(await list()).toEqual(['units/a', 'units/b', 'units/c', 'units/d', 'units/e']);
  });

  it('stop on a token sent twice, with a message, instead of listing forever', async () => {
    lieOn(-1, isList, (a) => ({
      ...a,
      body: Buffer.from(
        String(a.body)
          .replace(/<IsTruncated>false/, '<IsTruncated>true')
          .replace(
            /<NextContinuationToken>[^<]*<\/NextContinuationToken>|(?=<\/ListBucketResult>)/,
            '<NextContinuationToken>bG9vcA==</NextContinuationToken>',
          ),
      ),
    }));
    const err = await list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(String(err)).toMatch(
      /listing s3:\/\/lies\/ds\/units\/ failed: the server sent the same continuation token twice/,
    );
    expect(s3.seen.length).toBeLessThan(5);
  });
});

describe('the checks themselves', () => {
  const at = (ContentRange: string | undefined, status = 206) => ({
    ContentRange,
    $metadata: { httpStatusCode: status },
  });

  it('place a body by its Content-Range, or as the whole object for a 200', () => {
    expect(servedWindow(at('bytes 5-9/20'), 5)).toEqual({ from: 5, size: 20 });
    expect(servedWindow(at('bytes 5-9/*'), 5)).toEqual({ from: 5 });
    expect(servedWindow(at(undefined, 200), 7)).toEqual({ from: 0, size: 7 });
    for (const bad of [undefined, 'bytes */20', 'bytes 9-5/20', 'items 0-1/2', ''])
      expect(() => servedWindow(at(bad), 5)).toThrow(TransientError);
  });

  it('take the asked bytes, the end of the object, or refuse', () => {
    const body = Buffer.from('0123456789');
    expect(String(sliceServed(body, { from: 0, size: 10 }, 2, 4))).toBe('234');
    expect(String(sliceServed(body.subarray(5), { from: 5, size: 10 }, 6, 7))).toBe('67');
    expect(sliceServed(body.subarray(5), { from: 5, size: 10 }, 6, 12)).toBeNull(); // the object ends at 9
    expect(() => sliceServed(body.subarray(5), { from: 5, size: 10 }, 4, 6)).toThrow(/starts at byte 5/);
    expect(() => sliceServed(body.subarray(5, 7), { from: 5, size: 10 }, 5, 8)).toThrow(/short of/);
    expect(() => sliceServed(body.subarray(5, 7), { from: 5 }, 5, 8)).toThrow(/short of/); // size unknown
  });

  it('drop keys listed before, and refuse more pages of them than of new keys', () => {
    const guard = new ListingGuard('s3://b/p/');
    expect(guard.page(['a', 'b'])).toEqual(['a', 'b']);
    expect(guard.page([])).toEqual([]);
    expect(guard.page(['b', 'c'])).toEqual(['c']);
    expect(guard.page(['a', 'b'])).toEqual([]); // a server starting over: as many stale pages as fresh pass
    expect(guard.page(['c'])).toEqual([]);
    expect(() => guard.page(['a', 'c'])).toThrow(/pages of keys it had listed already/);
    expect(guard.next('t1')).toBe('t1');
    expect(() => guard.next('t1')).toThrow(/same continuation token twice/);
  });
});
