/**
 * What a crawl takes from servers that answer oddly: a repeated Content-Type (Fetch: the last valid type counts),
 * a 206 nobody asked for, a Location that is no fetchable URL, and the links a browser follows that are no
 * `<a>` (`<area href>`, `<meta http-equiv=refresh>`, a Refresh header). Each is a page status or a link, never a silent loss.
 */
import { createServer, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crawl } from '../../src/crawl/crawler.js';
import { extractPage, refreshTarget } from '../../src/crawl/html.js';
import { isHtmlResponse, responseKind } from '../../src/crawl/mime.js';
import { RobotsCache } from '../../src/crawl/robots.js';
import { Fetcher } from '../../src/ingest/fetch.js';
import { HostGate } from '../../src/ingest/host-gate.js';
import { openStore } from '../../src/shards/store.js';

const html = (res: ServerResponse, body: string) => res.writeHead(200, { 'content-type': 'text/html' }).end(body);

const ROUTES: Record<string, (res: ServerResponse) => void> = {
  '/': (res) =>
    html(
      res,
      [
        '/two-types',
        '/image-type',
        '/partial',
        '/bad-location',
        '/ftp-location',
        '/refresh',
        '/refresh-header',
        '/untyped',
      ]
        .map((p) => `<a href="${p}">x</a>`)
        .join('') + '<map><area href="/area" alt="a"></map>',
    ),
  // Two Content-Type headers: the body is the JPEG the last one says, with a link-like string in it (its bytes
  // are no JPEG: a string's \xff is sent as UTF-8, so it is a typed image that is not one).
  '/two-types': (res) => {
    res.setHeader('content-type', ['text/html', 'image/jpeg']);
    res.writeHead(200).end('\xff\xd8\xff<a href="/from-jpeg">');
  },
  '/image-type': (res) => res.writeHead(200, { 'content-type': 'image/x-html' }).end('<a href="/from-image">'),
  '/partial': (res) => res.writeHead(206, { 'content-type': 'text/html' }).end('<img src="/cut.jpg">'),
  '/bad-location': (res) => res.writeHead(302, { location: 'http://[zz' }).end(),
  '/ftp-location': (res) => res.writeHead(302, { location: 'ftp://127.0.0.1/x' }).end(),
  '/refresh': (res) => html(res, `<meta http-equiv="Refresh" content="0; URL='/target'">`),
  '/target': (res) => html(res, '<img src="/target.jpg">'),
  '/refresh-header': (res) =>
    res.writeHead(200, { 'content-type': 'text/html', refresh: '1;url=by-header' }).end('<base href="/elsewhere/">'),
  '/by-header': (res) => html(res, '<img src="/by-header.jpg">'),
  // A static server that names no type: browsers sniff it as HTML.
  '/untyped': (res) => res.writeHead(200).end('<!DOCTYPE html><img src="/untyped.jpg">'),
  '/area': (res) => html(res, '<img src="/area.jpg">'),
};

let dir: string;
let server: Server;
let base: string;
const hits: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-hostile-pages-'));
  server = createServer((req, res) => {
    hits.push(req.url!);
    const route = ROUTES[req.url!];
    if (route) route(res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('a crawl of a hostile site', () => {
  it('records odd answers by status and follows the links a browser follows', async () => {
    const fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxRedirects: 0 });
    const deps = {
      store: await openStore(join(dir, 'site')),
      fetcher,
      robots: new RobotsCache(fetcher, 'wildstream'),
      gate: new HostGate(2, 0),
    };
    const pages = new Map<string, string>();
    const result = await crawl(deps, {
      seeds: [`${base}/`],
      onPage: (url, status) => pages.set(new URL(url).pathname, status),
    }).finally(() => fetcher.close());
    expect(Object.fromEntries(pages)).toEqual({
      '/': 'ok',
      '/two-types': 'image_not_an_image',
      '/image-type': 'image_not_an_image',
      '/partial': 'http_206',
      '/bad-location': 'url_invalid',
      '/ftp-location': 'url_scheme',
      '/refresh': 'ok',
      '/target': 'ok',
      '/refresh-header': 'ok',
      '/by-header': 'ok',
      '/untyped': 'ok',
      '/area': 'ok',
    });
    const images = result.images.map((i) => new URL(i.url).pathname).sort();
    expect(images).toEqual(['/area.jpg', '/by-header.jpg', '/target.jpg', '/untyped.jpg']);
    expect(hits).not.toContain('/from-jpeg');
    expect(hits).not.toContain('/from-image');
  });
});

describe('an image two pages find while its robots.txt is fetched', () => {
  it('is taken once, with the first page to take it, in the crawl and in its committed unit', async () => {
    // The image host answers robots.txt slowly, so both pages wait on it with the image not yet taken.
    const cdn = createServer((req, res) => {
      if (req.url === '/robots.txt') setTimeout(() => res.writeHead(200).end('User-agent: *\nAllow: /\n'), 200);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve));
    const image = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}/x.jpg`;
    const site = createServer((req, res) => {
      if (req.url === '/') return html(res, '<a href="/a">a</a><a href="/b">b</a>');
      if (req.url === '/a' || req.url === '/b') return html(res, `<img src="${image}" alt="${req.url}">`);
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    const fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxRedirects: 0 });
    const out = join(dir, 'shared-image');
    const deps = { store: await openStore(out), fetcher, robots: new RobotsCache(fetcher, 'wildstream') };
    const seed = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
    const result = await crawl({ ...deps, gate: new HostGate(4, 0) }, { seeds: [seed] }).finally(async () => {
      await fetcher.close();
      for (const s of [cdn, site]) s.close();
    });
    // Which page comes first depends on the network; the image is one, with that page's caption.
    expect(result.images).toHaveLength(1);
    const [found] = result.images;
    expect(found).toEqual({
      url: image,
      caption: new URL(found!.source_page).pathname,
      source_page: found!.source_page,
    });
    expect(result.skipped).toEqual({ image_found_before: 1 });
    const unit = JSON.parse(await readFile(join(out, 'crawl/units/000000.json'), 'utf8'));
    expect(unit.images).toEqual(result.images);
  });
});

describe('pages and links', () => {
  it('takes a response as HTML by the Content-Type Fetch extracts, sniffing one without a type', () => {
    const isHtml = (type: string | null, body = '') => isHtmlResponse(type, Buffer.from(body));
    expect(isHtml('text/html; charset=utf-8')).toBe(true);
    expect(isHtml('application/xhtml+xml')).toBe(true);
    expect(isHtml('image/jpeg, text/html')).toBe(true);
    expect(isHtml('text/html, image/jpeg')).toBe(false);
    expect(isHtml('text/html, nonsense')).toBe(true);
    expect(isHtml('image/x-html', '<html>')).toBe(false);
    // No type, or an unknown one: MIME Sniffing's HTML patterns, after whitespace, ended by a space or `>`.
    expect(isHtml(null, '\r\n  <!doctype html><p>')).toBe(true);
    expect(isHtml('unknown/unknown', '<HTML lang=en>')).toBe(true);
    expect(isHtml(null, '<a href="/x">x</a>')).toBe(true);
    expect(isHtml(null, '<!-- x -->')).toBe(true);
    expect(isHtml(null, '<address>')).toBe(false);
    expect(isHtml(null, '\ufeff<html>')).toBe(false); // a BOM sniffs as text/plain
    expect(isHtml(null, '\xff\xd8\xff<html>')).toBe(false);
    expect(isHtml('application/octet-stream', '<html>')).toBe(false); // downloaded, never a page
    expect(isHtml('binary/octet-stream', '<!doctype html>')).toBe(false);
  });

  it('takes a response as an image by its Content-Type and its bytes under the image rule, never its name', () => {
    const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10]);
    const png = Buffer.from('\x89PNG\r\n\x1a\n\0\0', 'latin1');
    const kind = (type: string | null, body: Uint8Array | string) =>
      responseKind(type, typeof body === 'string' ? Buffer.from(body) : body);
    expect(kind('image/jpeg', jpeg)).toBe('image');
    expect(kind('image/png', jpeg)).toBe('image'); // a browser decodes the bytes it got, not the type named
    expect(kind('text/html, image/png', png)).toBe('image');
    expect(kind('image/jpeg', '<!doctype html><p>not found')).toBe('not_an_image'); // an error page typed as a JPEG
    expect(kind('image/svg+xml', '<svg xmlns="http://www.w3.org/2000/svg"/>')).toBe('svg_refused');
    // No type, or an unknown one: HTML sniffed first, then an image, as MIME Sniffing 7.1 orders them.
    expect(kind(null, jpeg)).toBe('image');
    expect(kind('unknown/unknown', png)).toBe('image');
    expect(kind(null, '<html><img src=x>')).toBe('html');
    expect(kind(null, '<svg xmlns="http://www.w3.org/2000/svg"/>')).toBe('other');
    // Other files stay what they are, whatever their bytes.
    expect(kind('application/pdf', '%PDF-1.4')).toBe('other');
    expect(kind('video/mp4', jpeg)).toBe('other');
    expect(kind('application/zip', jpeg)).toBe('other');
    expect(kind('text/plain', jpeg)).toBe('other');
    // A download (an object store's default type) is an image when its bytes are one, as an `<img>` shows it.
    expect(kind('application/octet-stream', jpeg)).toBe('image');
    expect(kind('binary/octet-stream; charset=binary', png)).toBe('image');
    expect(kind('application/octet-stream', '%PDF-1.4')).toBe('other');
    expect(kind('application/octet-stream', '<svg xmlns="http://www.w3.org/2000/svg"/>')).toBe('other');
    expect(kind('application/octet-stream', '<html><img src=x>')).toBe('other');
  });

  it('reads <meta http-equiv=refresh> as the HTML standard does', () => {
    const cases: Array<[string, string | null]> = [
      ['0; url=/a', '/a'],
      [`0;URL='/b'`, '/b'],
      ['0 ; url = "/c" x', '/c'],
      ['1.5, /d', '/d'],
      ['.5;/e', '/e'],
      [`3;'/f'`, '/f'],
      ['0; u/g', 'u/g'], // no whole `url=`: the rest is the URL
      ['0\turl=/h', '/h'],
      ['5', null], // a reload of the page itself
      ['0;', null],
      ['0;URL=', null],
      ['x; url=/i', null], // no time: invalid
    ];
    for (const [content, url] of cases) expect([content, refreshTarget(content)]).toEqual([content, url]);
    const page = extractPage(
      '<meta http-equiv=REFRESH content="0;url=next.html"><area href="map.html">',
      'http://h/d/',
    );
    expect(page.links).toEqual(['http://h/d/next.html', 'http://h/d/map.html']);
  });
});

describe('a <base href> after links', () => {
  it('is the base of every link on the page, as the document base URL is; an invalid one leaves the page URL', () => {
    const links = (html: string) => extractPage(html, 'http://h/d/').links;
    expect(links('<a href="a.html">a</a><base href="/b/"><a href="c.html">c</a><base href="/x/">')).toEqual([
      'http://h/b/a.html',
      'http://h/b/c.html',
    ]);
    expect(links('<a href="a.html">a</a><base href="http://[bad"><a href="c.html">c</a>')).toEqual([
      'http://h/d/a.html',
      'http://h/d/c.html',
    ]);
    expect(links('<a href="a.html">a</a>')).toEqual(['http://h/d/a.html']);
  });
});

describe('seeds', () => {
  it('refuses a seed that is no http(s) URL by name, even beside valid ones, before anything is requested', async () => {
    const fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxRedirects: 0 });
    const deps = { store: await openStore(join(dir, 'seeds')), fetcher, robots: new RobotsCache(fetcher, 'x') };
    const before = hits.length;
    const run = crawl({ ...deps, gate: new HostGate(1, 0) }, { seeds: [`${base}/target`, 'example.org/gallery'] });
    await expect(run.finally(() => fetcher.close())).rejects.toThrow(
      /seeds that are no http\(s\) URL: "example.org\/gallery"/,
    );
    expect(hits.length).toBe(before);
  });
});
