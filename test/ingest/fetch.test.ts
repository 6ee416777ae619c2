// The download layer against a real HTTP server: Content-Encoding, compression bombs, bodies in 1-byte chunks,
// and the byte budget shared by concurrent downloads.
import type { ServerResponse } from 'node:http';
import { brotliCompressSync, constants, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ByteBudget } from '../../src/ingest/byte-budget.js';
import { brotliWindow, DECODER_ALLOWANCE, decodingOrder, isZlibHeader } from '../../src/ingest/content-encoding.js';
import { Fetcher } from '../../src/ingest/fetch.js';
import { ConfigError } from '../../src/errors.js';
import { fixtureImages, startFixture, type Fixture } from '../helpers/fixture-server.js';

const MiB = 1024 * 1024;
const PAGE = Buffer.from(
  `<!doctype html><html><body>${'<p><img src="/photo.jpg" alt="a photo"></p>\n'.repeat(200)}</body></html>`,
);

/** Each coding as a server applies it; a header lists them in the order applied. */
const ENCODE: Record<string, (b: Buffer) => Buffer> = {
  gzip: (b) => gzipSync(b),
  'x-gzip': (b) => gzipSync(b),
  deflate: (b) => deflateSync(b),
  'deflate-raw': (b) => deflateRawSync(b), // sent as "deflate", as some servers do
  br: (b) => brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } }),
  identity: (b) => b,
};

function encode(body: Buffer, codings: string[]): Buffer {
  return codings.reduce((b, c) => ENCODE[c]!(b), body);
}

/** A body framed as HTTP/1.1 chunks of one byte each, written straight to the socket. */
function drip(res: ServerResponse, payload: Buffer): void {
  const framed = Buffer.alloc(payload.length * 6);
  for (let i = 0; i < payload.length; i++) {
    framed.write('1\r\n', i * 6, 'latin1');
    framed[i * 6 + 3] = payload[i]!;
    framed.write('\r\n', i * 6 + 4, 'latin1');
  }
  const socket = res.socket!;
  socket.write(
    'HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n',
  );
  socket.write(framed);
  socket.end('0\r\n\r\n');
}

/** A gzip stream of `total` zero bytes, made of 1 MiB members (concatenated members are one valid gzip body). */
function gzipBomb(res: ServerResponse, total: number): void {
  const member = gzipSync(Buffer.alloc(MiB), { level: 9 });
  res.writeHead(200, { 'content-type': 'image/png', 'content-encoding': 'gzip' });
  let left = total / MiB;
  const pump = () => {
    while (left > 0) {
      left--;
      if (!res.write(member)) return;
    }
    res.end();
  };
  res.on('drain', pump).on('close', () => (left = 0));
  pump();
}

const payloads = new Map<number, Buffer>();
/** A deterministic body of n bytes that is not all one value. */
function payloadOf(n: number): Buffer {
  let b = payloads.get(n);
  if (!b) {
    b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >> 8)) & 0xff;
    payloads.set(n, b);
  }
  return b;
}

let fixture: Fixture;
let fetcher: Fetcher;
let photo: Buffer;
const acceptEncodings: string[] = [];
beforeAll(async () => {
  photo = (await fixtureImages()).photo;
  const bodies: Record<string, () => Buffer> = { 'photo.jpg': () => photo, 'page.html': () => PAGE };
  fixture = await startFixture([
    [
      /^\/enc\/([^/]+)\/(photo\.jpg|page\.html)$/,
      (req, res, m) => {
        acceptEncodings.push(String(req.headers['accept-encoding']));
        const codings = m[1]!.split('+');
        const header = codings.map((c) => (c === 'deflate-raw' ? 'deflate' : c)).join(', ');
        const body = encode(bodies[m[2]!]!(), codings);
        res.writeHead(200, {
          'content-type': m[2]!.endsWith('.html') ? 'text/html' : 'image/jpeg',
          'content-encoding': header,
          'content-length': body.length,
        });
        res.end(body);
      },
    ],
    [
      /^\/raw-enc\/([^/]+)\/(\w+)$/,
      (_q, res, m) => {
        // A body that does not match its Content-Encoding: m[2] says how it is broken.
        const gz = gzipSync(photo);
        const body = {
          garbage: Buffer.from('this is not compressed data at all, not even close'),
          truncated: gz.subarray(0, gz.length >> 1),
          badcrc: Buffer.concat([gz.subarray(0, -8), Buffer.alloc(8, 0xff)]),
          // A whole member, then bytes that open no other: browsers show the image, and so do we.
          trailing: Buffer.concat([gz, Buffer.from('\r\n')]),
          empty: Buffer.alloc(0),
          photo,
        }[m[2]!]!;
        res.writeHead(200, {
          'content-type': 'image/jpeg',
          'content-encoding': decodeURIComponent(m[1]!),
          'content-length': body.length,
        });
        res.end(body);
      },
    ],
    [/^\/gzip-bomb\/(\d+)$/, (_q, res, m) => gzipBomb(res, Number(m[1]) * MiB)],
    [
      /^\/br-bomb$/,
      (_q, res) => {
        const body = brotliCompressSync(Buffer.alloc(24 * MiB), { params: { [constants.BROTLI_PARAM_QUALITY]: 1 } });
        res
          .writeHead(200, { 'content-type': 'image/png', 'content-encoding': 'br', 'content-length': body.length })
          .end(body);
      },
    ],
    [
      /^\/br-window\/(\d+)$/,
      (_q, res, m) => {
        const body = brotliCompressSync(PAGE, {
          params: { [constants.BROTLI_PARAM_LGWIN]: Number(m[1]), [constants.BROTLI_PARAM_QUALITY]: 4 },
        });
        res.writeHead(200, { 'content-type': 'text/html', 'content-encoding': 'br' });
        res.write(body.subarray(0, 10)); // the window is known from the first byte, the body comes a little later
        setTimeout(() => res.end(body.subarray(10)), 20);
      },
    ],
    [/^\/drip\/(\d+)$/, (_q, res, m) => drip(res, payloadOf(Number(m[1])))],
    [
      /^\/sized\/(\d+)\/(known|chunked)$/,
      (_q, res, m) => {
        const body = payloadOf(Number(m[1]));
        res.writeHead(200, {
          'content-type': 'image/jpeg',
          ...(m[2] === 'known' ? { 'content-length': body.length } : {}),
        });
        // Written in pieces over a few ticks, so concurrent downloads overlap.
        let at = 0;
        const step = () => {
          if (at >= body.length) return void res.end();
          res.write(body.subarray(at, (at += 64 * 1024)));
          setTimeout(step, 1);
        };
        step();
      },
    ],
  ]);
  fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxBytes: 4 * MiB, totalTimeoutMs: 20_000 });
});
afterAll(async () => {
  await fetcher?.close();
  await fixture?.close();
});

describe('Content-Encoding', () => {
  const codings = [
    'gzip',
    'x-gzip',
    'deflate',
    'deflate-raw',
    'br',
    'identity',
    'gzip+br',
    'br+gzip',
    'deflate+gzip',
    'deflate-raw+br',
    'gzip+gzip',
    'identity+gzip',
  ];
  it.each(
    codings.flatMap((c) => [
      [c, 'photo.jpg'],
      [c, 'page.html'],
    ]),
  )('%s %s decodes byte-exact', async (coding, name) => {
    const got = await fetcher.fetch(`${fixture.base}/enc/${coding}/${name}`);
    if (!got.ok) throw new Error(got.reason);
    expect(got.bytes.equals(name === 'page.html' ? PAGE : photo)).toBe(true);
  });

  it('asks for the codings it can undo', () => {
    expect(acceptEncodings.length).toBeGreaterThan(0);
    expect(new Set(acceptEncodings)).toEqual(new Set(['gzip, deflate, br']));
  });

  const broken: Array<[string, string, string]> = [
    ['gzip', 'garbage', 'content_encoding_error'],
    ['gzip', 'truncated', 'content_encoding_error'],
    ['gzip', 'badcrc', 'content_encoding_error'],
    ['br', 'garbage', 'content_encoding_error'],
    ['deflate', 'garbage', 'content_encoding_error'],
    ['gzip, br', 'garbage', 'content_encoding_error'],
    ['gzip', 'photo', 'content_encoding_error'], // mislabelled: plain bytes said to be gzip
    ['gzip', 'empty', 'ok'], // an empty body is empty in any coding
    ['gzip', 'trailing', 'ok'],
    ['compress', 'photo', 'content_encoding_unsupported'],
    ['zstd', 'photo', 'content_encoding_unsupported'],
    ['gzip, sdch', 'photo', 'content_encoding_unsupported'],
    ['gzip, gzip, gzip, gzip, gzip', 'photo', 'content_encoding_unsupported'],
  ];
  it.each(broken)('%s with a %s body -> %s', async (coding, how, expected) => {
    const got = await fetcher.fetch(`${fixture.base}/raw-enc/${encodeURIComponent(coding)}/${how}`);
    expect(got.ok ? 'ok' : got.reason).toBe(expected);
    if (how === 'trailing') expect(got.ok && got.bytes.equals(photo)).toBe(true);
  });

  it('stops a 1 GiB gzip bomb at the cap, quickly and in bounded memory', async () => {
    const small = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxBytes: 2 * MiB });
    const before = process.memoryUsage().arrayBuffers;
    const t0 = performance.now();
    expect(await small.fetch(`${fixture.base}/gzip-bomb/1024`)).toEqual({ ok: false, reason: 'too_large' });
    expect(await small.fetch(`${fixture.base}/br-bomb`)).toEqual({ ok: false, reason: 'too_large' });
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(small.peakBodyBytes).toBeLessThanOrEqual(2 * MiB + DECODER_ALLOWANCE); // the cap plus the decoder's window
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * MiB);
    await small.close();
  });

  it('keeps the decoded prefix when truncating (robots.txt)', async () => {
    const robots = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxBytes: 1000, truncate: true });
    const got = await robots.fetch(`${fixture.base}/enc/gzip/page.html`);
    expect(got.ok && got.bytes.equals(PAGE.subarray(0, 1000))).toBe(true);
    await robots.close();
  });

  it('reserves a brotli window from the budget before decoding, so many at once stay within it', async () => {
    const budget = 3 * MiB + DECODER_ALLOWANCE + 17 * MiB; // room for the oldest and one more 16 MiB window
    const br = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxBytes: 3 * MiB, byteBudget: budget });
    const got = await Promise.all(Array.from({ length: 6 }, (_, i) => br.fetch(`${fixture.base}/br-window/24?${i}`)));
    for (const g of got) expect(g.ok && g.bytes.equals(PAGE)).toBe(true);
    expect(br.peakBodyBytes).toBeGreaterThanOrEqual(2 * 16 * MiB); // two windows at once: both were counted
    expect(br.peakBodyBytes).toBeLessThanOrEqual(budget);
    await br.close();
  });

  it('reads the brotli window from the stream header', () => {
    for (const lgwin of [10, 16, 17, 18, 22, 24]) {
      const c = brotliCompressSync(PAGE, {
        params: { [constants.BROTLI_PARAM_LGWIN]: lgwin, [constants.BROTLI_PARAM_SIZE_HINT]: 0 },
      });
      expect(brotliWindow(c[0]!), String(lgwin)).toBe(2 ** lgwin);
    }
    expect(decodingOrder('br, br')).toBeNull(); // two brotli layers would claim two windows
  });

  it('parses the header and checks zlib headers', () => {
    expect(decodingOrder(null)).toEqual([]);
    expect(decodingOrder('GZIP , br')).toEqual(['br', 'gzip']);
    expect(decodingOrder('identity')).toEqual([]);
    expect(decodingOrder('gzip, foo')).toBeNull();
    const z = deflateSync(PAGE);
    expect(isZlibHeader(z[0]!, z[1]!)).toBe(true);
    const r = deflateRawSync(PAGE);
    expect(isZlibHeader(r[0]!, r[1]!)).toBe(false);
  });
});

describe('memory', () => {
  it('reads bodies sent in 1-byte chunks byte-exact in memory proportional to their size', async () => {
    const size = 300_000;
    const base = process.memoryUsage();
    let peak = 0;
    const sample = setInterval(() => {
      const m = process.memoryUsage();
      peak = Math.max(peak, m.heapUsed - base.heapUsed + m.arrayBuffers - base.arrayBuffers);
    }, 5);
    const got = await Promise.all([1, 2, 3].map(() => fetcher.fetch(`${fixture.base}/drip/${size}`)));
    clearInterval(sample);
    const want = payloadOf(size);
    for (const g of got) expect(g.ok && g.bytes.equals(want)).toBe(true);
    // An array of one Buffer per chunk cost ~120 bytes a byte here (~110 MB for these 0.9 MB).
    expect(peak).toBeLessThan(40 * MiB);
  });

  it('never holds more body bytes than the budget, whatever the concurrency', async () => {
    const budget = 2 * MiB + DECODER_ALLOWANCE; // room for about two bodies besides the oldest's decoder reserve
    const tight = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxBytes: MiB, byteBudget: budget });
    const size = 700_000;
    const urls = Array.from(
      { length: 12 },
      (_, i) => `${fixture.base}/sized/${size}/${i % 2 ? 'known' : 'chunked'}?${i}`,
    );
    const got = await Promise.all(urls.map((u) => tight.fetch(u)));
    const want = payloadOf(size);
    for (const g of got) expect(g.ok && g.bytes.equals(want)).toBe(true);
    expect(tight.peakBodyBytes).toBeLessThanOrEqual(budget);
    expect(tight.peakBodyBytes).toBeGreaterThan(MiB); // downloads did overlap
    await tight.close();
  });

  it('keeps held bodies in the budget until released, so bodies waiting for a decoder are bounded too', async () => {
    // Room for one download's largest need (16 MiB + decoder reserve) and a little more: two held 15 MB bodies
    // fit, a third does not.
    const budget = 17 * MiB + DECODER_ALLOWANCE;
    const tight = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxBytes: 16 * MiB, byteBudget: budget });
    const size = 15_000_000;
    const first = await tight.fetch(`${fixture.base}/sized/${size}/known?held`, undefined, { hold: true });
    expect(first.ok && first.release).toBeTruthy();
    // The second fits beside the first; the third waits for a release.
    const rest = [1, 2].map((i) =>
      tight.fetch(`${fixture.base}/sized/${size}/known?held${i}`, undefined, { hold: true }),
    );
    let settled = 0;
    for (const r of rest) void r.then(() => settled++);
    for (let waited = 0; settled < 1 && waited < 20_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 500));
    expect(settled).toBe(1);
    if (first.ok) first.release!();
    const got = await Promise.all(rest);
    for (const g of got) expect(g.ok && g.bytes.equals(payloadOf(size))).toBe(true);
    expect(tight.peakBodyBytes).toBeLessThanOrEqual(budget);
    for (const g of got) if (g.ok) g.release!();
    await tight.close();
  });

  it('refuses a budget smaller than one body', () => {
    expect(() => new Fetcher({ maxBytes: 4 * MiB, byteBudget: MiB })).toThrow(ConfigError);
    expect(() => new Fetcher({ maxBytes: 512 * MiB })).not.toThrow(); // the default budget grows to fit
  });
});

describe('ByteBudget', () => {
  it('lets holders that grow step by step all finish (no deadlock), within the total', async () => {
    const budget = new ByteBudget(10, 10);
    let inUseMax = 0;
    const grower = async (steps: number[]) => {
      const h = budget.openHolder();
      for (const s of steps) {
        const r = budget.grow(h, s);
        if (r !== true) expect(await r).toBe(true);
        inUseMax = Math.max(inUseMax, budget.inUse);
        await new Promise((r) => setImmediate(r));
      }
      budget.close(h);
      return h.id;
    };
    // Naive first-come granting deadlocks here: each takes 4, then all wait for room that never frees.
    const done = await Promise.all([grower([4, 4, 2]), grower([4, 4, 2]), grower([4, 4, 2]), grower([4, 6])]);
    expect(done).toEqual([0, 1, 2, 3]);
    expect(inUseMax).toBeLessThanOrEqual(10);
    expect(budget.inUse).toBe(0);
  });

  it('cancels a pending grant when its holder closes', async () => {
    const budget = new ByteBudget(10, 10);
    const a = budget.openHolder();
    expect(budget.grow(a, 8)).toBe(true);
    const b = budget.openHolder();
    const wait = budget.grow(b, 5);
    expect(wait).toBeInstanceOf(Promise);
    budget.close(b);
    expect(await wait).toBe(false);
    budget.close(a);
    expect(budget.inUse).toBe(0);
  });
});
