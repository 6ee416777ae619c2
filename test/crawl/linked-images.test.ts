/**
 * A link straight to an image (`<a href="full.jpg"><img src="thumb.jpg"></a>`, the gallery pattern) is kept as
 * an image of the page that links it, as a browser shows it: decided by the response's Content-Type and bytes
 * (mime.ts), never the extension, through robots.txt, the address guard, redirects and de-duplication as the
 * page's `<img>`s are, and ingested as they are. Links to other files (a PDF) stay page statuses.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crawl, type CrawlOptions } from '../../src/crawl/crawler.js';
import { RobotsCache } from '../../src/crawl/robots.js';
import { Fetcher } from '../../src/ingest/fetch.js';
import { HostGate } from '../../src/ingest/host-gate.js';
import { listUnits } from '../../src/shards/dataset.js';
import { ShardReader } from '../../src/shards/reader.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { runCli } from '../helpers/cli.js';
import { faultyStore } from '../helpers/faulty-store.js';
import { fixtureImages, startFixture, type Fixture } from '../helpers/fixture-server.js';

type Route = (req: IncomingMessage, res: ServerResponse, match: RegExpExecArray) => void;

const html = (body: string) => (_q: IncomingMessage, res: ServerResponse) =>
  void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(body);

/** Pages served beside the fixture's images (/photo.jpg, /img/N.jpg, /redirect/N, /html-as-jpeg.jpg ...). */
const PAGES: Record<string, string> = {
  '/gallery': `<html><body>
    <a href="/photo.jpg"><img src="/img/11.jpg" alt="A red kite"></a>
    <figure><img src="/img/12.jpg" alt="Thumb twelve"><a href="/img/12.jpg">Full size</a></figure>
    <a href="/moved/13">Heron, full size</a>
    <a href="/html-as-jpeg.jpg">broken</a>
    <a href="/manual.pdf">Manual</a>
    <a href="/untyped-photo">Untyped</a>
    <a href="/image.svg">vector</a>
    <a href="/noai.jpg">opted out</a>
    <a href="/misnamed.txt">text</a>
    <a href="/private/full.jpg">private</a>
    <a href="/page">next page</a>
  </body></html>`,
  '/page': '<a href="/photo.jpg">the kite again</a><a href="/redirect/1">to the photo</a>',
  '/opted-out': '<meta name="robots" content="noimageindex"><a href="/img/21.jpg">full</a><img src="/img/22.jpg">',
  '/open-21': '<a href="/img/21.jpg">Twenty-one</a>',
  '/opted-out-23': '<meta name="robots" content="noimageindex"><a href="/img/23.jpg">x</a><a href="/open-23">on</a>',
  '/open-23': '<a href="/img/23.jpg">Twenty-three</a>',
  '/three': '<a href="/img/31.jpg">a</a> <a href="/img/32.jpg">b</a> <a href="/img/33.jpg">c</a>',
  '/resume': '<a href="/moved/41">Forty-one</a>',
  '/small': '<a href="/photo.jpg"><img src="/img/7.jpg" alt="A red kite"></a>',
  '/poster': '<a href="/poster.jpg">Poster, full size</a>',
  '/bucket': '<a href="/bucket/photo">Kite, original</a> <a href="/bucket/notes">Notes</a>',
};

const OCTET = 'application/octet-stream';

/** A linked image of 1 MiB and more: the crawl's page fetcher below takes at most 64 KiB. */
const POSTER_BYTES = 1024 * 1024;

let dir: string;
let site: Fixture;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-crawl-linked-'));
  const { photo } = await fixtureImages();
  const poster = Buffer.concat([photo, Buffer.alloc(POSTER_BYTES)]);
  const extra: Array<[RegExp, Route]> = [
    [/^\/robots\.txt$/, (_q, res) => void res.writeHead(200).end('User-agent: *\nDisallow: /private/\n')],
    ...Object.entries(PAGES).map(([path, body]): [RegExp, Route] => [new RegExp(`^${path}$`), html(body)]),
    [/^\/moved\/(\d+)$/, (_q, res, m) => void res.writeHead(302, { location: `/img/${m[1]}.jpg` }).end()],
    [/^\/manual\.pdf$/, (_q, res) => void res.writeHead(200, { 'content-type': 'application/pdf' }).end('%PDF-1.4\n')],
    [/^\/untyped-photo$/, (_q, res) => void res.writeHead(200).end(photo)], // no Content-Type: sniffed
    [/^\/poster\.jpg$/, (_q, res) => void res.writeHead(200, { 'content-type': 'image/jpeg' }).end(poster)],
    [/^\/private\//, (_q, res) => void res.writeHead(200, { 'content-type': 'image/jpeg' }).end(photo)],
    // What an object store sends for an upload nobody typed: a photo (1 MiB and more) and a text file.
    [/^\/bucket\/photo$/, (_q, res) => void res.writeHead(200, { 'content-type': OCTET }).end(poster)],
    [/^\/bucket\/notes$/, (_q, res) => void res.writeHead(200, { 'content-type': OCTET }).end('<html>notes')],
  ];
  site = await startFixture(extra);
});

afterAll(async () => {
  await site.close();
  await rm(dir, { recursive: true, force: true });
});

/** Crawls as `wildstream crawl` does (pages fetched without following redirects), recording each link's status. */
async function crawlSite(options: Partial<CrawlOptions> & { seeds: string[] }, store?: Store, maxBytes?: number) {
  const fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxRedirects: 0, maxBytes });
  const deps = {
    store: store ?? (await openStore(await mkdtemp(join(dir, 'crawl-')))),
    fetcher,
    robots: new RobotsCache(fetcher, 'wildstream'),
    gate: new HostGate(2, 0),
  };
  const statuses: Record<string, string> = {};
  const onPage = (url: string, status: string) => void (statuses[new URL(url).pathname] = status);
  const result = await crawl(deps, { onPage, ...options }).finally(() => fetcher.close());
  const images = Object.fromEntries(
    result.images.map((i) => [new URL(i.url).pathname, { caption: i.caption, from: new URL(i.source_page).pathname }]),
  );
  return { result, statuses, images };
}

const requested = (path: string) => site.log.filter((p) => p === path).length;

describe('a link to an image', () => {
  it('keeps a linked JPEG as an image of its page, once, through redirects, and drops what is no image with a status', async () => {
    const { result, statuses, images } = await crawlSite({ seeds: [`${site.base}/gallery`] });
    expect(statuses).toEqual({
      '/gallery': 'ok',
      '/photo.jpg': 'image', // an <a href> to a JPEG: kept, captioned by the <img alt> inside the link
      '/moved/13': 'redirect',
      '/img/13.jpg': 'image', // the redirect's target, still the gallery's image with the link's caption
      '/html-as-jpeg.jpg': 'image_not_an_image', // typed image/jpeg, bytes an HTML page
      '/manual.pdf': 'not_html',
      '/untyped-photo': 'image', // no Content-Type: JPEG bytes sniff as an image, as browsers sniff them
      '/image.svg': 'image_svg_refused', // the image rule refuses SVG
      '/noai.jpg': 'image_robots_tag', // its own X-Robots-Tag opts out, as ingest would find
      '/misnamed.txt': 'not_html', // text/plain is text to a browser, whatever its bytes
      '/private/full.jpg': 'robots_disallowed', // never requested
      '/page': 'ok', // its links to /photo.jpg, directly and by a redirect, are that image again
      '/redirect/1': 'redirect',
    });
    expect(images).toEqual({
      '/img/11.jpg': { caption: 'A red kite', from: '/gallery' },
      '/img/12.jpg': { caption: 'Thumb twelve', from: '/gallery' },
      '/photo.jpg': { caption: 'A red kite', from: '/gallery' },
      '/img/13.jpg': { caption: 'Heron, full size', from: '/gallery' },
      '/untyped-photo': { caption: 'Untyped', from: '/gallery' },
    });
    expect(result.images).toHaveLength(5);
    // The link to the page's own <img> /img/12.jpg found it taken: never requested, and no page spent on it.
    expect(result).toMatchObject({ pages: 13, fetched: 2 });
    expect(result.skipped).toEqual({
      image_found_before: 1,
      redirect: 2,
      image_not_an_image: 1,
      not_html: 2,
      image_svg_refused: 1,
      image_robots_tag: 1,
      robots_disallowed: 1,
    });
    expect(requested('/img/12.jpg')).toBe(0);
    expect(requested('/private/full.jpg')).toBe(0);
    expect(requested('/photo.jpg')).toBe(1);
  });

  it('keeps a linked image larger than the page limit, reading only its head (ingest downloads it)', async () => {
    const { result, statuses, images } = await crawlSite({ seeds: [`${site.base}/poster`] }, undefined, 64 * 1024);
    expect(statuses).toEqual({ '/poster': 'ok', '/poster.jpg': 'image' });
    expect(images).toEqual({ '/poster.jpg': { caption: 'Poster, full size', from: '/poster' } });
    expect(result.skipped).toEqual({});
  });

  it('keeps a linked download (application/octet-stream) whose bytes are an image, reading only its head', async () => {
    const { result, statuses, images } = await crawlSite({ seeds: [`${site.base}/bucket`] }, undefined, 64 * 1024);
    expect(statuses).toEqual({ '/bucket': 'ok', '/bucket/photo': 'image', '/bucket/notes': 'not_html' });
    expect(images).toEqual({ '/bucket/photo': { caption: 'Kite, original', from: '/bucket' } });
    expect(result.skipped).toEqual({ not_html: 1 });
  });

  it('keeps a seed that is an image as its own page, typed, untyped, a download or redirected to', async () => {
    const seeds = ['/photo.jpg', '/untyped-photo', '/bucket/photo', '/moved/51', '/manual.pdf', '/image.svg'];
    const { result, statuses, images } = await crawlSite({ seeds: seeds.map((p) => site.base + p) });
    expect(statuses).toEqual({
      '/photo.jpg': 'image',
      '/untyped-photo': 'image',
      '/bucket/photo': 'image',
      '/moved/51': 'redirect',
      '/img/51.jpg': 'image', // the redirect's target is the page it was found on
      '/manual.pdf': 'not_html',
      '/image.svg': 'image_svg_refused',
    });
    expect(images).toEqual({
      '/photo.jpg': { caption: null, from: '/photo.jpg' },
      '/untyped-photo': { caption: null, from: '/untyped-photo' },
      '/bucket/photo': { caption: null, from: '/bucket/photo' },
      '/img/51.jpg': { caption: null, from: '/img/51.jpg' },
    });
    expect(result.skipped).toEqual({ redirect: 1, not_html: 1, image_svg_refused: 1 });
  });

  it('keeps an image that a page opting out of its images links to out, as it keeps its <img>s out', async () => {
    const { result, statuses } = await crawlSite({ seeds: [`${site.base}/opted-out`] });
    expect(statuses).toEqual({ '/opted-out': 'robots_meta', '/img/21.jpg': 'image_robots_meta' });
    expect(result.images).toEqual([]);
  });

  it('keeps an image that an opted-out page links when another page links it too, queued or dropped before', async () => {
    // Both seeds link /img/21.jpg before it is requested: the open page's link is the one it is taken for.
    const queued = await crawlSite({ seeds: [`${site.base}/opted-out`, `${site.base}/open-21`], concurrency: 1 });
    expect(queued.images).toEqual({ '/img/21.jpg': { caption: 'Twenty-one', from: '/open-21' } });
    // /img/23.jpg was requested and dropped for the opted-out page; the open page one hop on takes it.
    const dropped = await crawlSite({ seeds: [`${site.base}/opted-out-23`], concurrency: 1 });
    expect(dropped.images).toEqual({ '/img/23.jpg': { caption: 'Twenty-three', from: '/open-23' } });
    expect(dropped.statuses).toMatchObject({ '/opted-out-23': 'robots_meta', '/img/23.jpg': 'image' });
    // An image whose own X-Robots-Tag opts out stays out, however many pages link it.
    const refused = await crawlSite({ seeds: [`${site.base}/gallery`], concurrency: 1 });
    expect(refused.statuses['/noai.jpg']).toBe('image_robots_tag');
  });

  it('counts each linked image against --max-pages as the request it is, and as one hop against --max-depth', async () => {
    const capped = await crawlSite({ seeds: [`${site.base}/three`], maxPages: 3 });
    expect(Object.keys(capped.images)).toEqual(['/img/31.jpg', '/img/32.jpg']);
    expect(capped.result).toMatchObject({ pages: 3, fetched: 1, skipped: { beyond_max_pages: 1 } });

    const before = requested('/img/31.jpg');
    const shallow = await crawlSite({ seeds: [`${site.base}/three`], maxDepth: 0 });
    expect(shallow.result).toMatchObject({ pages: 1, images: [] });
    expect(requested('/img/31.jpg')).toBe(before);
  });

  it('carries its page and caption through a redirect in a committed unit to a resumed crawl', async () => {
    const inner = await openStore(join(dir, 'resume'));
    // Unit 2 (the image /img/41.jpg) fails to commit: the crawl stops with the image, queued by unit 1's redirect
    // /moved/41, on its frontier; the resumed crawl requests it again with nothing but that entry to go by.
    const failing = faultyStore(inner, (method, args) =>
      method === 'put' && args[0] === 'crawl/units/000002.json' ? new Error('disk full') : undefined,
    );
    const options = { seeds: [`${site.base}/resume`], pagesPerUnit: 1, concurrency: 1 };
    await expect(crawlSite(options, failing)).rejects.toThrow('disk full');
    const resumed = await crawlSite(options, inner);
    expect(resumed.result.resumed).toBe(true);
    expect(resumed.images).toEqual({ '/img/41.jpg': { caption: 'Forty-one', from: '/resume' } });
  });

  it('is ingested as the page images are, with its caption and page', async () => {
    const out = join(dir, 'ingested');
    const r = await runCli([
      ...['crawl', `${site.base}/small`, '--out', out, '--allow-address', '127.0.0.1', '--delay-ms', '0'],
      ...['--retries', '0'],
    ]);
    expect(r.code, r.stderr).toBe(0);
    const done = JSON.parse(r.stdout.split('\n').find((l) => l.includes('crawl_done'))!);
    expect(done).toMatchObject({ pages: 2, fetched: 1, images: 2 });
    expect(done.skipped).toEqual({});
    const store = await openStore(out);
    const [unit] = await listUnits(store);
    const records = [];
    for await (const rec of (await ShardReader.open(store, unit!.shard)).records()) records.push(rec);
    const kept = records.map((x) => ({ path: new URL(x.url).pathname, caption: x.caption, page: x.sourcePage }));
    expect(kept.sort((a, b) => (a.path < b.path ? -1 : 1))).toEqual([
      { path: '/img/7.jpg', caption: 'A red kite', page: `${site.base}/small` },
      { path: '/photo.jpg', caption: 'A red kite', page: `${site.base}/small` },
    ]);
  }, 120_000);
});
