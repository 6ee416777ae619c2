import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LAZY_SRC_ATTRIBUTES, LAZY_SRCSET_ATTRIBUTES } from '../../src/crawl/candidates.js';
import { crawl } from '../../src/crawl/crawler.js';
import { extractPage } from '../../src/crawl/html.js';
import { LINK_CAPTION_CHARS } from '../../src/crawl/links.js';
import { HostGate } from '../../src/ingest/host-gate.js';
import { RobotsCache } from '../../src/crawl/robots.js';
import { crawlFoundNothing } from '../../src/crawl/outcome.js';
import { Fetcher } from '../../src/ingest/fetch.js';
import { openStore } from '../../src/shards/store.js';

const PAGE = 'http://h/p/';
const page = (html: string) => extractPage(html, PAGE);
const urls = (html: string) => page(html).images.map((i) => i.url);
const GIF = 'data:image/gif;base64,R0lGODlhAQABAIAAAP,///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7';

describe('images a page offers', () => {
  it('fetches the largest srcset candidate, also when no space follows the comma', () => {
    expect(urls('<img src="a.jpg" srcset="a.jpg 1x,b.jpg 4x">')).toEqual(['http://h/p/b.jpg']);
    expect(urls('<img srcset="/s.jpg 320w,/l.jpg 1280w,/m.jpg 640w">')).toEqual(['http://h/l.jpg']);
    expect(
      urls('<img srcset="https://cdn.test/w_200,c_fill/x.jpg 200w, https://cdn.test/w_900,c_fill/x.jpg 900w">'),
    ).toEqual(['https://cdn.test/w_900,c_fill/x.jpg']);
  });

  it('never lets a data: or other unfetchable candidate win over a real one, and counts it', () => {
    const a = page(`<img src="real.jpg" srcset="${GIF} 4x">`);
    expect(a.images.map((i) => i.url)).toEqual(['http://h/p/real.jpg']);
    expect(a.skipped).toEqual({ data_uri: 1 });
    const b = page(`<img src="${GIF}" srcset="big.jpg 2x, javascript:alert(1) 9x, http://[::1 3x">`);
    expect(b.images.map((i) => i.url)).toEqual(['http://h/p/big.jpg']);
    expect(b.skipped).toEqual({ data_uri: 1, unsupported_scheme: 1, bad_url: 1 });
    const c = page('<img src="a.jpg" srcset="b.jpg 2x 3x, c.jpg 0w"><img><img src="  "><img src="ftp://h/x.jpg">');
    expect(c.images.map((i) => i.url)).toEqual(['http://h/p/a.jpg']);
    expect(c.skipped).toEqual({ bad_srcset_candidate: 2, no_url: 2, unsupported_scheme: 1 });
  });

  it('takes lazy-load attributes over the placeholder src, counting the placeholder', () => {
    for (const attr of LAZY_SRC_ATTRIBUTES) {
      const p = page(`<img src="spinner.gif" ${attr}="/real.jpg" alt="x">`);
      expect(p.images, attr).toEqual([{ url: 'http://h/real.jpg', caption: 'x' }]);
      expect(p.skipped, attr).toEqual({ lazy_placeholder: 1 });
    }
    for (const attr of LAZY_SRCSET_ATTRIBUTES) {
      const p = page(`<img src="${GIF}" ${attr}="/s.jpg 300w,/l.jpg 900w">`);
      expect(
        p.images.map((i) => i.url),
        attr,
      ).toEqual(['http://h/l.jpg']);
      expect(p.skipped, attr).toEqual({ data_uri: 1 });
    }
    // lazysizes: data-srcset beats data-src when it is larger; the lazy layer beats the eager srcset
    expect(urls('<img data-src="/m.jpg" data-srcset="/m.jpg 600w, /xl.jpg 2000w" srcset="/t.jpg 100w">')).toEqual([
      'http://h/xl.jpg',
    ]);
    // a lazy layer with nothing fetchable leaves the eager one in charge
    expect(urls(`<img data-src="${GIF}" src="/real.jpg">`)).toEqual(['http://h/real.jpg']);
  });

  it('finds <noscript> fallbacks and counts an image repeated on the page once', () => {
    const p =
      page(`<img class="lazyload" src="${GIF}" data-src="/a.jpg" alt="A"><noscript><img src="/a.jpg" alt="A"></noscript>
      <noscript><img src="/only-here.jpg" alt="fallback"></noscript>`);
    expect(p.images).toEqual([
      { url: 'http://h/a.jpg', caption: 'A' },
      { url: 'http://h/only-here.jpg', caption: 'fallback' },
    ]);
    expect(p.skipped).toEqual({ data_uri: 1, duplicate_on_page: 1 });
    expect(page('<noscript>&lt;img src="/escaped.jpg"&gt;</noscript>').images).toEqual([]); // text, not markup
  });

  it('gives each og:image the og:image:alt that follows it, and twitter:image its twitter:image:alt', () => {
    const p = page(`<head><meta property="og:image:alt" content="stray">
      <meta property="og:image" content="/one.jpg"><meta property="og:image:width" content="800"><meta property="og:image:alt" content=" First  image ">
      <meta property="og:image" content="/two.jpg">
      <meta property="og:image" content="/three.jpg"><meta property="og:image:alt" content="Third">
      <meta name="twitter:image" content="/tw.jpg"><meta name="twitter:image:alt" content="Tweeted">
      <meta property="og:image" content="${GIF}"><meta property="og:image:alt" content="lost with its image"></head>`);
    expect(p.images).toEqual([
      { url: 'http://h/one.jpg', caption: 'First image' },
      { url: 'http://h/two.jpg', caption: null },
      { url: 'http://h/three.jpg', caption: 'Third' },
      { url: 'http://h/tw.jpg', caption: 'Tweeted' },
    ]);
    expect(p.skipped).toEqual({ data_uri: 1 });
  });

  it('gives every <source> of a <picture> the alt of its <img>, and a figure its figcaption', () => {
    const p = page(`<picture><source media="(min-width: 800px)" srcset="/wide.avif 1x, /wide2.avif 2x">
        <source data-srcset="/narrow.webp"><img src="/fallback.jpg" alt="A heron"></picture>
      <picture><source srcset="/other.webp"><img src="/other.jpg"></picture>
      <figure><picture><source srcset="/fig.webp"><img src="/fig.jpg"></picture><figcaption> Caption  text </figcaption></figure>
      <figure><img src="/alt-wins.jpg" alt="own alt"><figcaption>figure text</figcaption></figure>
      <source srcset="/no-picture.jpg">`);
    expect(p.images).toEqual([
      { url: 'http://h/wide2.avif', caption: 'A heron' },
      { url: 'http://h/narrow.webp', caption: 'A heron' },
      { url: 'http://h/fallback.jpg', caption: 'A heron' },
      { url: 'http://h/other.webp', caption: null },
      { url: 'http://h/other.jpg', caption: null },
      { url: 'http://h/fig.webp', caption: 'Caption text' },
      { url: 'http://h/fig.jpg', caption: 'Caption text' },
      { url: 'http://h/alt-wins.jpg', caption: 'own alt' },
    ]);
  });

  it('resolves against the first <base href> and bounds the images taken', () => {
    expect(urls('<base href="/assets/"><base href="/other/"><img src="x.jpg">')).toEqual(['http://h/assets/x.jpg']);
    expect(urls('<base href="http://[bad"><img src="x.jpg">')).toEqual(['http://h/p/x.jpg']);
    const many = extractPage(Array.from({ length: 50 }, (_, i) => `<img src="/${i}.jpg">`).join(''), PAGE, {
      maxImages: 10,
    });
    expect(many.images).toHaveLength(10);
    expect(many.truncated).toBe(true);
  });
});

describe('the caption a link gives what it points to', () => {
  const captions = (html: string) => Object.fromEntries(page(html).linkCaptions);

  it("is its accessible name: its text and the alt of its <img>s, else its title, else its figure's caption", () => {
    expect(
      captions(`<a href="/1.jpg"><img src="/t1.jpg" alt="A red kite"></a>
        <a href="/2.jpg"> Heron,
          <b>full</b> size </a>
        <a href="/3.jpg"><img src="/t3.jpg" alt="Owl"> (4000 px)</a>
        <a href="/4.jpg" title="By title"><img src="/t4.jpg"></a>
        <a href="/5.jpg" title="not used">text wins</a>
        <figure><a href="/6.jpg"><img src="/t6.jpg" alt=""></a><figcaption> Figure  six </figcaption></figure>
        <figure><a href="/7.jpg">own text</a><figcaption>figure seven</figcaption></figure>
        <map><area href="/8.jpg" alt="Area eight"></map>
        <a href="/9.jpg"><img src="/t9.jpg"></a>`),
    ).toEqual({
      'http://h/1.jpg': 'A red kite',
      'http://h/2.jpg': 'Heron, full size',
      'http://h/3.jpg': 'Owl (4000 px)',
      'http://h/4.jpg': 'By title',
      'http://h/5.jpg': 'text wins',
      'http://h/6.jpg': 'Figure six',
      'http://h/7.jpg': 'own text',
      'http://h/8.jpg': 'Area eight',
    });
  });

  it('is taken once per URL, the first link to name it, and never from <noscript> or an anchor closed by the next', () => {
    expect(
      captions(`<a href="/a.jpg"><img src="/ta.jpg"></a><a href="/a.jpg">second</a><a href="/a.jpg">third</a>
        <a href="/lazy.jpg"><img data-src="/tl.jpg" alt="Lazy"><noscript><img src="/tl.jpg" alt="Lazy"></noscript></a>
        <a href="/open.jpg">open <a href="/next.jpg">next</a>`),
    ).toEqual({
      'http://h/a.jpg': 'second',
      'http://h/lazy.jpg': 'Lazy',
      'http://h/open.jpg': 'open',
      'http://h/next.jpg': 'next',
    });
  });

  it('follows a link resolved against a <base href> after it, and is bounded', () => {
    const p = page(`<a href="x.jpg">before base</a><base href="/b/"><a href="y.jpg">after</a>`);
    expect(p.links).toEqual(['http://h/b/x.jpg', 'http://h/b/y.jpg']);
    expect(Object.fromEntries(p.linkCaptions)).toEqual({
      'http://h/b/x.jpg': 'before base',
      'http://h/b/y.jpg': 'after',
    });
    const long = captions(`<a href="/long.jpg">${'word '.repeat(5000)}</a>`)['http://h/long.jpg']!;
    expect(long.length).toBeLessThanOrEqual(LINK_CAPTION_CHARS);
    expect(long.startsWith('word word')).toBe(true);
  });
});

describe('image counts in a crawl', () => {
  it('reach the crawl summary and each committed unit, and a resumed crawl reports them again', async () => {
    const site: Record<string, string> = {
      '/': `<a href="/2">2</a><img src="${GIF}" data-src="/a.jpg"><img src="/b.jpg"><img src="/b.jpg"><img src="javascript:void(0)">`,
      '/2': `<img src="/a.jpg"><img srcset="/c.jpg 1x,/d.jpg 4x"><img>`,
    };
    const server = createServer((req, res) => {
      const html = site[req.url!];
      res.writeHead(html ? 200 : 404, { 'content-type': 'text/html' }).end(html ?? '');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const dir = await mkdtemp(join(tmpdir(), 'ws-crawl-counts-'));
    const fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxRedirects: 0 });
    const deps = async () => ({
      store: await openStore(dir),
      fetcher,
      robots: new RobotsCache(fetcher, 'test'),
      gate: new HostGate(2, 0),
    });
    try {
      const result = await crawl(await deps(), { seeds: [`${base}/`], pagesPerUnit: 1, concurrency: 1 });
      expect(result.images.map((i) => new URL(i.url).pathname)).toEqual(['/a.jpg', '/b.jpg', '/d.jpg']);
      const expected = {
        image_data_uri: 1,
        image_duplicate_on_page: 1,
        image_unsupported_scheme: 1,
        image_found_before: 1,
        image_no_url: 1,
      };
      expect(result.skipped).toEqual(expected);
      const units = await Promise.all(
        ['000000', '000001'].map(async (n) =>
          JSON.parse(await readFile(join(dir, 'crawl', 'units', `${n}.json`), 'utf8')),
        ),
      );
      expect(units.map((u) => u.skipped)).toEqual([
        { image_data_uri: 1, image_duplicate_on_page: 1, image_unsupported_scheme: 1 },
        { image_found_before: 1, image_no_url: 1 },
      ]);
      const again = await crawl(await deps(), { seeds: [`${base}/`], pagesPerUnit: 1, concurrency: 1 });
      expect(again).toMatchObject({ resumed: true, skipped: expected });
    } finally {
      await fetcher.close();
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('what robots.txt cannot tell', () => {
  it('names our own refusal of a robots.txt fetch (blocked_address), not the site, and the crawl says what to change', async () => {
    // Only 127.0.0.1 is allowed: 127.0.0.2 (loopback, never reached) is refused by the guard, robots.txt included.
    const robotsSeen: string[] = [];
    const server = createServer((req, res) => {
      if (req.url === '/robots.txt') robotsSeen.push(req.url);
      if (req.url === '/page.html')
        return void res
          .writeHead(200, { 'content-type': 'text/html' })
          .end('<head><base href="http://127.0.0.2/"></head><body><img src="fx/img22.png">');
      if (req.url === '/other.html')
        return void res
          .writeHead(200, { 'content-type': 'text/html' })
          .end('<a href="http://127.0.0.2/p.html">p</a><img src="/x.png">');
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const dir = await mkdtemp(join(tmpdir(), 'ws-crawl-own-'));
    const fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxRedirects: 0 });
    const robots = new RobotsCache(fetcher, 'test');
    try {
      expect(await robots.refusal('http://127.0.0.2/fx/img22.png')).toBe('blocked_address');
      expect(await robots.refusal(`${base}/x.png`)).toBeNull(); // robots.txt 404: allow all
      const result = await crawl(
        { store: await openStore(join(dir, 'a')), fetcher, robots, gate: new HostGate(2, 0) },
        { seeds: [`${base}/page.html`], maxDepth: 0 },
      );
      expect(result).toMatchObject({ pages: 1, fetched: 1, images: [], skipped: { image_blocked_address: 1 } });
      const warning = crawlFoundNothing(result);
      expect(warning.reason).toBe('image_blocked_address');
      expect(warning.message).toMatch(
        /^the crawl found no image to ingest: 1 of 1 page fetched, 1 image found, 1 skipped; top reasons: image_blocked_address 1 \(.*--allow-private-network/,
      );
      // A page on the refused host, reached through --hosts, is blocked_address too, not robots_disallowed.
      const pages = await crawl(
        { store: await openStore(join(dir, 'b')), fetcher, robots, gate: new HostGate(2, 0) },
        { seeds: [`${base}/other.html`], hosts: [new URL(base).host, '127.0.0.2'], maxDepth: 1 },
      );
      expect(pages).toMatchObject({ pages: 2, fetched: 1, skipped: { blocked_address: 1 } });
      expect(robotsSeen).toEqual(['/robots.txt']);
    } finally {
      await fetcher.close();
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
