// robots.txt and robots directives against a real HTTP server: RFC 9309's success rule and path normal form,
// and Google's robots meta tag / X-Robots-Tag syntax, as the crawler applies them to pages and images.
import { createServer, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crawl } from '../../src/crawl/crawler.js';
import { normaliseRules, RobotsCache, robotsPath } from '../../src/crawl/robots.js';
import { Fetcher } from '../../src/ingest/fetch.js';
import { HostGate } from '../../src/ingest/host-gate.js';
import { openStore } from '../../src/shards/store.js';

/** One site per robots.txt: its body and headers, and HTML pages by path; everything else 404 (images 200). */
interface Site {
  robots?: { body: string; headers?: OutgoingHttpHeaders; status?: number };
  pages?: Record<string, string>;
  /** Headers of pages, by path, beside their content-type. */
  pageHeaders?: Record<string, OutgoingHttpHeaders>;
  /** Extra routes: status and headers. */
  raw?: Record<string, { status: number; headers?: OutgoingHttpHeaders }>;
}

const servers: Server[] = [];
const hits = new Map<string, string[]>();
let dir: string;
const fetchers: Fetcher[] = [];

async function serve(site: Site): Promise<string> {
  const log: string[] = [];
  const server = createServer((req, res) => {
    const path = req.url!;
    log.push(path);
    if (path === '/robots.txt' && site.robots)
      return void res
        .writeHead(site.robots.status ?? 200, { 'content-type': 'text/plain', ...site.robots.headers })
        .end(site.robots.body);
    const raw = site.raw?.[path];
    if (raw) return void res.writeHead(raw.status, raw.headers).end();
    const html = site.pages?.[path];
    const headers = { 'content-type': 'text/html', ...site.pageHeaders?.[path] };
    if (html !== undefined) return void res.writeHead(200, headers).end(html);
    res.writeHead(404).end();
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  hits.set(base, log);
  return base;
}

/** A fetcher as the crawl job makes its robots fetcher (redirects followed, first 500 KiB). */
function robotsFetcher(): Fetcher {
  const f = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxRedirects: 5, truncate: true });
  fetchers.push(f);
  return f;
}

/** The page fetcher of a crawl (redirects are queued as pages) and its robots cache. */
function crawlDeps(name: string) {
  const fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxRedirects: 0 });
  fetchers.push(fetcher);
  return async () => ({
    store: await openStore(join(dir, name)),
    fetcher,
    robots: new RobotsCache(robotsFetcher(), 'wildstream'),
    gate: new HostGate(2, 0),
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-robots-'));
});

afterAll(async () => {
  await Promise.all(fetchers.map((f) => f.close()));
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  await rm(dir, { recursive: true, force: true });
});

describe('robots.txt fetched successfully is followed (RFC 9309 2.3.1.1)', () => {
  it('whatever X-Robots-Tag the robots.txt response carries', async () => {
    for (const tag of ['noindex', 'none', 'noimageindex, noai', 'wildstream: noimageai']) {
      const base = await serve({
        robots: { body: 'User-agent: *\nDisallow: /private/\n', headers: { 'x-robots-tag': tag } },
      });
      const robots = new RobotsCache(robotsFetcher(), 'wildstream');
      expect(await robots.refusal(`${base}/page`), tag).toBeNull();
      expect(await robots.refusal(`${base}/private/x`), tag).toBe('robots_disallowed');
    }
  });

  it('whatever 2xx it comes with: a 206 prefix is followed, a 204 has no rules', async () => {
    const partial = await serve({ robots: { status: 206, body: 'User-agent: *\nDisallow: /private/\n' } });
    const empty = await serve({ robots: { status: 204, body: '' } });
    const robots = new RobotsCache(robotsFetcher(), 'wildstream');
    expect(await robots.refusal(`${partial}/page`)).toBeNull();
    expect(await robots.refusal(`${partial}/private/x`)).toBe('robots_disallowed');
    expect(await robots.refusal(`${empty}/private/x`)).toBeNull();
  });

  it('a crawl of a site whose robots.txt says noindex fetches its pages and finds their images', async () => {
    const base = await serve({
      robots: { body: 'User-agent: *\nAllow: /\n', headers: { 'x-robots-tag': 'noindex' } },
      pages: { '/': '<img src="/i/1.jpg" alt="one"><a href="/p2">p2</a>', '/p2': '<img src="/i/2.jpg">' },
    });
    const result = await crawl(await crawlDeps('noindex-robots')(), { seeds: [`${base}/`] });
    expect(result).toMatchObject({ pages: 2, fetched: 2, skipped: {} });
    expect(result.images.map((i) => new URL(i.url).pathname).sort()).toEqual(['/i/1.jpg', '/i/2.jpg']);
  });
});

describe('robots.txt paths are compared in one normal form (RFC 9309 2.2.2)', () => {
  it('decodes percent-encoded unreserved characters and upper-cases the rest, on both sides', () => {
    // RFC 9309 2.2.2's table, and the unreserved set of RFC 3986 2.3
    expect(robotsPath('/foo/bar/%62%61%7A')).toBe('/foo/bar/baz');
    expect(robotsPath('/foo/bar/%e3%83%84')).toBe('/foo/bar/%E3%83%84');
    expect(robotsPath('/foo/bar?baz=quz')).toBe('/foo/bar?baz=quz');
    expect(robotsPath('/%7efoo/%2D%2e%5F%30%41%7A')).toBe('/~foo/-._0Az');
    // reserved and other characters stay encoded, so a rule's `*` and `$` keep their meaning
    expect(robotsPath('/a%2Fb%2a%24%25%20%3f')).toBe('/a%2Fb%2A%24%25%20%3F');
    expect(normaliseRules('User-agent: *\n disallow : /%70%32 # /%70 kept\r\nAllow:/%7e*$\nSitemap: /%70')).toBe(
      'User-agent: *\n disallow : /p2 # /%70 kept\r\nAllow:/~*$\nSitemap: /%70',
    );
  });

  it('blocks a URL a rule names in another encoding, and keeps * and $ working', async () => {
    const base = await serve({
      robots: {
        body: [
          'User-agent: *',
          'Disallow: /%70%32', // = /p2
          'Disallow: /i/%31.jpg', // = /i/1.jpg
          'Disallow: /~foo',
          'Disallow: /foo/bar/%62%61%7A',
          'Disallow: /%e3%83%84', // ツ, lower-case hex
          'Disallow: /*.%67if$', // *.gif at the end only
          'Allow: /%6Fpen/', // = /open/
          'Disallow: /open',
        ].join('\n'),
      },
    });
    const robots = new RobotsCache(robotsFetcher(), 'wildstream');
    const refused = async (path: string) => (await robots.refusal(base + path)) !== null;
    for (const path of ['/p2', '/%70%32', '/%702', '/p2/x', '/i/1.jpg', '/i/%31.jpg', '/~foo', '/%7Efoo', '/%7efoo'])
      expect(await refused(path), path).toBe(true);
    for (const path of ['/foo/bar/baz', '/foo/bar/%62az', '/ツ', '/%E3%83%84', '/a/b.gif', '/x%2Egif', '/openly'])
      expect(await refused(path), path).toBe(true);
    for (const path of ['/', '/p3', '/i/2.jpg', '/foo', '/a/b.gif?x', '/a/b.gifs', '/open/', '/%6Fpen/x'])
      expect(await refused(path), path).toBe(false);
  });

  it('a crawl never requests a page or image that an encoded rule disallows', async () => {
    const base = await serve({
      robots: { body: 'User-agent: *\nDisallow: /%70%32\nDisallow: /i/%31.jpg\n' },
      pages: {
        '/': '<img src="/i/1.jpg" alt="one"><img src="/i/3.jpg"><a href="/p2">p2</a>',
        '/p2': '<img src="/i/2.jpg">',
      },
    });
    const result = await crawl(await crawlDeps('encoded-rules')(), { seeds: [`${base}/`] });
    expect(result.images.map((i) => new URL(i.url).pathname)).toEqual(['/i/3.jpg']);
    expect(result.skipped).toMatchObject({ robots_disallowed: 1, image_robots_disallowed: 1 });
    expect(hits.get(base)).toEqual(['/robots.txt', '/']);
  });
});

describe('robots meta tags in a crawl (robots-directives.ts)', () => {
  it('takes a page with max-image-preview:none as the index, follow it says', async () => {
    const base = await serve({
      pages: {
        '/mip':
          '<head><meta name="robots" content="index, follow, max-image-preview:none"></head><img src="/i/3.jpg"><a href="/p2">p2</a>',
        '/p2': '<img src="/i/2.jpg">',
      },
    });
    const result = await crawl(await crawlDeps('mip')(), { seeds: [`${base}/mip`] });
    expect(result).toMatchObject({ pages: 2, fetched: 2, skipped: {} });
    expect(result.images.map((i) => new URL(i.url).pathname).sort()).toEqual(['/i/2.jpg', '/i/3.jpg']);
  });

  it('takes no image from a page whose meta says noimageindex, and follows its links', async () => {
    const base = await serve({
      pages: {
        '/nii': '<head><meta name="robots" content="noimageindex"></head><img src="/i/4.jpg"><a href="/p2">p2</a>',
        '/p2': '<img src="/i/2.jpg">',
      },
    });
    const result = await crawl(await crawlDeps('nii')(), { seeds: [`${base}/nii`] });
    expect(result).toMatchObject({ pages: 2, skipped: { robots_meta: 1 } });
    expect(result.images.map((i) => new URL(i.url).pathname)).toEqual(['/i/2.jpg']);
  });
});

describe("a page's X-Robots-Tag in a crawl weighs as its meta tags do", () => {
  it.each([
    ['noindex', ['/i/2.jpg'], { robots_tag: 1 }],
    ['nofollow', ['/i/1.jpg'], {}],
    ['none', [], { robots_tag: 1 }],
    ['otherbot: noindex, nofollow', ['/i/1.jpg', '/i/2.jpg'], {}],
  ] as const)('X-Robots-Tag: %s', async (tag, images, skipped) => {
    const base = await serve({
      pages: { '/': '<img src="/i/1.jpg"><a href="/p2">p2</a>', '/p2': '<img src="/i/2.jpg">' },
      pageHeaders: { '/': { 'x-robots-tag': tag } },
    });
    const result = await crawl(await crawlDeps(`xrt-${tag.replace(/\W/g, '')}`)(), { seeds: [`${base}/`] });
    expect(result.skipped).toEqual(skipped);
    expect(result.images.map((i) => new URL(i.url).pathname).sort()).toEqual(images);
    // Its links are followed unless the header says nofollow (or none).
    expect(hits.get(base)!.includes('/p2')).toBe(!/nofollow|none/.test(tag) || tag.startsWith('otherbot'));
  });
});

describe('3xx that is no redirect to follow (RFC 9110 15.4)', () => {
  it('a crawled page answering 302 without Location or 304 is recorded by its status', async () => {
    const base = await serve({
      pages: { '/': '<a href="/noloc">a</a><a href="/nm">b</a><a href="/moved">c</a>', '/new': '<img src="/i/1.jpg">' },
      raw: {
        '/noloc': { status: 302 },
        '/nm': { status: 304, headers: { location: '/new' } },
        '/moved': { status: 301, headers: { location: '/new' } },
      },
    });
    const result = await crawl(await crawlDeps('3xx')(), { seeds: [`${base}/`] });
    expect(result.skipped).toEqual({ http_302: 1, http_304: 1, redirect: 1 });
    expect(result.images.map((i) => new URL(i.url).pathname)).toEqual(['/i/1.jpg']);
  });
});
