// Robots directives: one reading for X-Robots-Tag (images, through a real HTTP server) and robots meta tags.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractPage } from '../../src/crawl/html.js';
import { patternJpeg } from '../../src/fixtures/images.js';
import { Fetcher, optedOut } from '../../src/ingest/fetch.js';
import { noFollow, optsOutOfImages, robotsDirectives } from '../../src/ingest/robots-directives.js';

const meta = (content: string, name = 'robots') =>
  extractPage(
    `<head><meta name="${name}" content="${content}"></head><a href="/x">x</a><img src="/i.jpg">`,
    'http://h/',
  );

describe('robotsDirectives', () => {
  it('reads a comma-separated, case-insensitive list; a name: value directive is one directive, not its value', () => {
    expect([...robotsDirectives(['Index, FOLLOW, max-image-preview:none'])]).toEqual([
      'index',
      'follow',
      'max-image-preview',
    ]);
    expect([...robotsDirectives(['max-image-preview: none, max-snippet: -1, max-video-preview: 0'])]).toEqual([
      'max-image-preview',
      'max-snippet',
      'max-video-preview',
    ]);
    // an RFC 822 date holds a comma and colons: its pieces are no directives and no crawler names
    expect([...robotsDirectives(['unavailable_after: Wed, 02 Oct 2030 15:00:00 GMT, noai'])]).toEqual([
      'unavailable_after',
      '02',
      'oct',
      '2030',
      '15:00:00',
      'gmt',
      'noai',
    ]);
    expect([...robotsDirectives(['NoIndex NoFollow'])]).toEqual(['noindex', 'nofollow']);
  });

  it('scopes the directives after a crawler name to that crawler, up to the next name, in that header only', () => {
    const d = (...lists: string[]) => [...robotsDirectives(lists, 'wildstream')].sort();
    expect(d('otherbot: noindex, noimageindex')).toEqual([]);
    expect(d('otherbot: noindex, nofollow', 'noai')).toEqual(['noai']);
    expect(d('noai, otherbot: noindex')).toEqual(['noai']);
    expect(d('otherbot: noindex, WildStream: noimageai, nofollow')).toEqual(['nofollow', 'noimageai']);
    expect(d('*: noindex')).toEqual(['noindex']);
    expect(d('otherbot: max-snippet: 5, none')).toEqual([]);
    expect(d('wildstream: max-image-preview: none')).toEqual(['max-image-preview']);
  });

  it('opts images out on noindex, none, noimageindex, noai and noimageai; nofollow and none stop links', () => {
    for (const o of ['noindex', 'none', 'noimageindex', 'noai', 'noimageai', 'NOINDEX'])
      expect(optsOutOfImages(robotsDirectives([o])), o).toBe(true);
    for (const o of ['nofollow', 'all', 'index, follow', 'max-image-preview:none', 'nosnippet', 'noarchive', ''])
      expect(optsOutOfImages(robotsDirectives([o])), o).toBe(false);
    expect(noFollow(robotsDirectives(['none']))).toBe(true);
    expect(noFollow(robotsDirectives(['nofollow']))).toBe(true);
    expect(noFollow(robotsDirectives(['max-image-preview:none, max-snippet:none']))).toBe(false);
  });
});

describe('robots meta tags read as X-Robots-Tag is', () => {
  it('the same content means the same on a page as in the header', () => {
    for (const content of [
      'index, follow, max-image-preview:none',
      'max-image-preview: none',
      'noimageindex',
      'none',
      'noai',
      'NoIndex',
      'nofollow',
      'otherbot: noindex',
      'wildstream: noimageai',
    ]) {
      expect(meta(content).optedOut, content).toBe(optedOut(content));
    }
  });

  it('max-image-preview:none is neither noindex nor nofollow; noimageindex drops the images only', () => {
    expect(meta('index, follow, max-image-preview:none')).toMatchObject({ optedOut: false, noFollow: false });
    expect(meta('noimageindex')).toMatchObject({ optedOut: true, noFollow: false });
    expect(meta('none')).toMatchObject({ optedOut: true, noFollow: true });
    expect(meta('nofollow')).toMatchObject({ optedOut: false, noFollow: true });
  });

  it('a meta tag for another crawler is not followed; one for wildstream is', () => {
    expect(meta('noindex, nofollow', 'otherbot')).toMatchObject({ optedOut: false, noFollow: false });
    expect(meta('noai, nofollow', 'WildStream')).toMatchObject({ optedOut: true, noFollow: true });
    // several tags add up
    const two = extractPage(
      '<meta name="robots" content="nofollow"><meta name="robots" content="max-image-preview:large, noimageai">',
      'http://h/',
    );
    expect(two).toMatchObject({ optedOut: true, noFollow: true });
  });
});

describe('X-Robots-Tag on images, from a real server', () => {
  let server: Server;
  let base: string;
  let fetcher: Fetcher;
  beforeAll(async () => {
    const jpeg = await patternJpeg(1, { width: 96, height: 96 });
    server = createServer((req, res) => {
      const tags = new URL(req.url!, 'http://x').searchParams.getAll('xrt');
      res.setHeader('content-type', 'image/jpeg');
      if (tags.length > 0) res.setHeader('x-robots-tag', tags); // one header line per value
      res.end(jpeg);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0 });
  });
  afterAll(async () => {
    await fetcher.close();
    server.close();
  });

  const outcome = async (...tags: string[]) => {
    const q = tags.map((t) => `xrt=${encodeURIComponent(t)}`).join('&');
    const got = await fetcher.fetch(`${base}/i.jpg?${q}`);
    return got.ok ? 'ok' : got.reason;
  };

  it('keeps images whose opt-outs are scoped to other crawlers or are no opt-outs', async () => {
    expect(await outcome('otherbot: noindex, noimageindex')).toBe('ok');
    expect(await outcome('otherbot: noai')).toBe('ok');
    expect(await outcome('index, follow, max-image-preview:none')).toBe('ok');
    expect(await outcome('googlebot: nofollow', 'otherbot: noindex, nofollow')).toBe('ok');
  });

  it('refuses images opted out for every crawler or for wildstream, in any of several headers', async () => {
    expect(await outcome('noimageindex')).toBe('robots_tag');
    expect(await outcome('none')).toBe('robots_tag');
    expect(await outcome('otherbot: noindex', 'noai')).toBe('robots_tag');
    expect(await outcome('otherbot: noindex, wildstream: noimageai')).toBe('robots_tag');
    expect(await outcome('WILDSTREAM: NoImageIndex')).toBe('robots_tag');
  });
});
