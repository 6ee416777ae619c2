// Fetch + decode against a real HTTP server with misbehaving routes: each ends as the right status.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../src/ingest/decode.js';
import { Fetcher, optedOut, retryAfter } from '../../src/ingest/fetch.js';
import { blockedRange, parseAllowList } from '../../src/ingest/net-guard.js';
import { ConfigError } from '../../src/errors.js';
import { startFixture, type Fixture } from '../helpers/fixture-server.js';

let fixture: Fixture;
let fetcher: Fetcher;
beforeAll(async () => {
  // A connection dropped after the request, before any response: a connection error, not a body error.
  fixture = await startFixture([
    [/^\/reset-before-headers$/, (req) => void req.socket.destroy()],
    // 3xx that are no redirect to follow (RFC 9110 15.4): no Location, or a status that never redirects
    [/^\/status-noloc\/(\d+)$/, (_q, res, m) => void res.writeHead(Number(m[1])).end()],
    [/^\/status-loc\/(\d+)$/, (_q, res, m) => void res.writeHead(Number(m[1]), { location: '/photo.jpg' }).end()],
  ]);
  fetcher = new Fetcher({
    allowAddresses: ['127.0.0.1'],
    retryBaseMs: 10,
    bodyTimeoutMs: 1000,
    headersTimeoutMs: 1000,
    totalTimeoutMs: 4000,
    maxBytes: 2 * 1024 * 1024,
  });
});
afterAll(async () => {
  await fetcher?.close();
  await fixture?.close();
});

async function status(path: string): Promise<string> {
  const fetched = await fetcher.fetch(path.startsWith('/') ? fixture.base + path : path);
  if (!fetched.ok) return fetched.reason;
  const decoded = await decodeImage(fetched.bytes, { maxSide: 256 });
  return decoded.ok ? 'ok' : decoded.reason;
}

describe('fetch and decode statuses', () => {
  const cases: Array<[string, string]> = [
    ['/photo.jpg', 'ok'],
    ['/status/404', 'http_404'],
    ['/status/500', 'http_500'],
    ['/flaky/429/a', 'ok'],
    ['/flaky/503/b', 'ok'],
    ['/redirect/3', 'ok'],
    ['/redirect/5', 'ok'],
    ['/redirect/6', 'too_many_redirects'],
    ['/loop', 'too_many_redirects'],
    ['/to-metadata', 'blocked_address'],
    ['/slow-body', 'timeout'],
    ['/hang', 'timeout'],
    ['/endless', 'too_large'],
    ['/wrong-length', 'body_error'],
    ['/reset-before-headers', 'connection_error'],
    ['/html-as-jpeg.jpg', 'not_an_image'],
    ['/misnamed.txt', 'ok'],
    ['/truncated.jpg', 'decode_error'],
    ['/bomb.png', 'too_many_pixels'],
    ['/image.svg', 'svg_refused'],
    ['/animated.gif', 'ok'],
    ['/cmyk.jpg', 'ok'],
    ['/16bit.png', 'ok'],
    ['/grey.png', 'ok'],
    ['/alpha.png', 'ok'],
    ['/rotated.jpg', 'ok'],
    ['/noai.jpg', 'robots_tag'],
  ];
  it.each(cases)('%s -> %s', async (path, expected) => {
    expect(await status(path)).toBe(expected);
  });

  it('refuses non-http schemes and redirects to them', async () => {
    expect(await status('ftp://127.0.0.1/x.jpg')).toBe('url_scheme');
    expect(await status('/to-ftp')).not.toBe('ok');
    expect(await status('http://')).toBe('url_invalid');
  });

  it('fetches what the URL standard parses a URL to, as the list readers check it (checkUrl)', async () => {
    const port = new URL(fixture.base).port;
    for (const url of [
      `http:127.0.0.1:${port}/photo.jpg`,
      `HTTP:\\127.0.0.1:${port}\\photo.jpg`,
      `http:/127.0.0.1:${port}/photo.jpg`,
    ]) {
      const before = fixture.log.length;
      expect(await status(url), url).toBe('ok');
      expect(fixture.log.slice(before), url).toEqual(['/photo.jpg']);
    }
  });

  it('records a 3xx that is no redirect to follow by its status, followed or not (the crawler follows none)', async () => {
    const crawlerLike = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxRedirects: 0 });
    try {
      for (const f of [fetcher, crawlerLike]) {
        for (const code of [300, 301, 302, 303, 307, 308, 304, 305, 306, 399]) {
          const got = await f.fetch(`${fixture.base}/status-noloc/${code}`);
          expect(got, `${code} without Location`).toEqual({ ok: false, reason: `http_${code}` });
        }
        for (const code of [304, 305, 306]) {
          const got = await f.fetch(`${fixture.base}/status-loc/${code}`);
          expect(got, `${code} with Location`).toEqual({ ok: false, reason: `http_${code}` });
        }
      }
      for (const code of [300, 301, 302, 303, 307, 308]) {
        expect(await status(`/status-loc/${code}`), `${code} followed`).toBe('ok');
        expect(await crawlerLike.fetch(`${fixture.base}/status-loc/${code}`)).toEqual({
          ok: false,
          reason: 'redirect',
          location: `${fixture.base}/photo.jpg`,
        });
      }
    } finally {
      await crawlerLike.close();
    }
  });

  it('retries 429 and 5xx, then gives the last status', async () => {
    const before = fixture.log.filter((u) => u === '/status/503').length;
    expect(await status('/status/503')).toBe('http_503');
    expect(fixture.log.filter((u) => u === '/status/503').length - before).toBe(3); // 1 + 2 retries
  });

  it('refuses loopback unless allowed, and sends it no request', async () => {
    const strict = new Fetcher({ retries: 0 });
    const before = fixture.log.length;
    expect(await strict.fetch(`${fixture.base}/photo.jpg`)).toEqual({ ok: false, reason: 'blocked_address' });
    expect(await strict.fetch(`http://localhost:${new URL(fixture.base).port}/photo.jpg`)).toEqual({
      ok: false,
      reason: 'blocked_address',
    });
    expect(fixture.log.length).toBe(before);
    await strict.close();
  });
});

describe('decoded images are normalised', () => {
  it('applies EXIF orientation, flattens to 8-bit sRGB RGB, takes the first frame', async () => {
    for (const path of ['/rotated.jpg', '/cmyk.jpg', '/16bit.png', '/grey.png', '/alpha.png', '/animated.gif']) {
      const fetched = await fetcher.fetch(fixture.base + path);
      const decoded = await decodeImage((fetched as { bytes: Buffer }).bytes);
      if (!decoded.ok) throw new Error(`${path}: ${decoded.reason}`);
      const meta = await sharp(decoded.image).metadata();
      expect([meta.format, meta.channels, meta.depth, meta.space, meta.pages ?? 1], path).toEqual([
        'jpeg',
        3,
        'uchar',
        'srgb',
        1,
      ]);
      if (path === '/rotated.jpg') expect([decoded.width, decoded.height]).toEqual([200, 300]);
    }
  });

  it('resizes without upscaling, by max side or min side', async () => {
    const photo = (await fetcher.fetch(`${fixture.base}/photo.jpg`)) as { bytes: Buffer };
    const a = await decodeImage(photo.bytes, { maxSide: 160 });
    expect(a.ok && [a.width, a.height]).toEqual([160, 120]);
    const b = await decodeImage(photo.bytes, { maxSide: 1000 });
    expect(b.ok && [b.width, b.height]).toEqual([320, 240]);
    const c = await decodeImage(photo.bytes, { minSide: 120 });
    expect(c.ok && [c.width, c.height]).toEqual([160, 120]);
    const d = await decodeImage(photo.bytes, { format: 'webp' });
    expect(d.ok && d.mime).toBe('image/webp');
  });

  it('drops too-small and too-elongated images', async () => {
    const small = await sharp({ create: { width: 40, height: 40, channels: 3, background: '#808080' } })
      .png()
      .toBuffer();
    expect(await decodeImage(small)).toEqual({ ok: false, reason: 'too_small' });
    const strip = await sharp({ create: { width: 1000, height: 100, channels: 3, background: '#808080' } })
      .png()
      .toBuffer();
    expect(await decodeImage(strip)).toEqual({ ok: false, reason: 'aspect_ratio' });
  });
});

describe('guards and header parsing', () => {
  it('classifies addresses', () => {
    expect(blockedRange('8.8.8.8')).toBeNull();
    expect(blockedRange('2001:4860:4860::8888')).toBeNull();
    for (const ip of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '224.0.0.1',
      '0.0.0.0',
      '::1',
      'fe80::1',
      'fc00::1',
      '::ffff:127.0.0.1',
      '::ffff:169.254.169.254',
      '240.0.0.1',
      '255.255.255.255',
    ]) {
      expect(blockedRange(ip), ip).not.toBeNull();
    }
    expect(blockedRange('10.1.2.3', parseAllowList(['10.1.0.0/16']))).toBeNull();
    expect(blockedRange('10.2.0.1', parseAllowList(['10.1.0.0/16']))).toBe('private');
    expect(() => parseAllowList(['not-an-ip'])).toThrow(ConfigError);
  });

  it('parses X-Robots-Tag and Retry-After', () => {
    expect(optedOut('noai')).toBe(true);
    expect(optedOut('noindex, nofollow')).toBe(true);
    expect(optedOut('otherbot: noimageai')).toBe(false);
    expect(optedOut('wildstream: noimageindex')).toBe(true);
    expect(optedOut('nofollow')).toBe(false);
    expect(optedOut(null)).toBe(false);
    expect(retryAfter('3')).toBe(3000);
    expect(retryAfter(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(retryAfter('soon')).toBeUndefined();
  });
});
