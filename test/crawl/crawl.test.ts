import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractPage } from '../../src/crawl/html.js';
import { largestCandidate, parseSrcset } from '../../src/crawl/srcset.js';
import { patternJpeg } from '../../src/fixtures/images.js';
import { ShardReader } from '../../src/shards/reader.js';
import { listUnits } from '../../src/shards/dataset.js';
import { openStore } from '../../src/shards/store.js';
import { BIN, runCli } from '../helpers/cli.js';

interface Hit {
  path: string;
  at: number;
}
let dir: string;
let site: Server, external: Server;
let base: string, ext: string;
const hits: Hit[] = [],
  externalHits: Hit[] = [];
const jpegs = new Map<string, Buffer>();

function pages(extBase: string): Record<string, string> {
  return {
    '/': `<html><head><meta property="og:image" content="/img/og.jpg"></head><body>
      <a href="/a">a</a> <a href="/b#frag">b</a> <a href="/old">old</a> <a href="${extBase}/page">elsewhere</a>
      <a href="/private/page">private</a> <a href="mailto:x@y">mail</a>
      <img src="/img/1.jpg" alt="one"> <img srcset="/img/2s.jpg 100w, /img/2.jpg 400w" src="/img/2s.jpg">
      <picture><source srcset="/img/3.jpg 1x, /img/3@2x.jpg 2x"><img src="/img/3.jpg"></picture>
      <img src="/private/secret.jpg"> <figure><img src="/img/4.jpg"><figcaption> four </figcaption></figure></body></html>`,
    '/a': '<html><head><base href="/sub/"></head><body><a href="/">home</a><a href="/b">b</a><img src="rel.jpg" alt="relative"></body></html>',
    '/b': '<html><head><meta name="robots" content="noai"></head><body><img src="/img/5.jpg"><a href="/">home</a></body></html>',
    '/new': '<html><body><img src="/img/6.jpg"></body></html>',
  };
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-crawl-'));
  // Made before serving: generating them in the handler would block the server's loop and skew its timestamps.
  const paths = ['og', '1', '2s', '2', '3', '3@2x', '4', '5', '6']
    .map((n) => `/img/${n}.jpg`)
    .concat('/sub/rel.jpg', '/private/secret.jpg');
  for (const [i, path] of paths.entries()) jpegs.set(path, await patternJpeg(i, { width: 96, height: 80 }));
  external = createServer((req, res) => {
    externalHits.push({ path: req.url!, at: Date.now() });
    res.writeHead(200, { 'content-type': 'text/html' }).end('<img src="/x.jpg">');
  });
  ext = await listen(external);
  site = createServer(async (req, res) => {
    const path = req.url!;
    hits.push({ path, at: Date.now() });
    if (path === '/robots.txt')
      return void res.writeHead(200, { 'content-type': 'text/plain' }).end('User-agent: *\nDisallow: /private/\n');
    if (path === '/old') return void res.writeHead(301, { location: '/new' }).end();
    const html = pages(ext)[path];
    if (html) return void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
    const image = jpegs.get(path);
    if (image) return void res.writeHead(200, { 'content-type': 'image/jpeg' }).end(image);
    res.writeHead(404).end();
  });
  base = await listen(site);
});

afterAll(async () => {
  site.close();
  external.close();
  await rm(dir, { recursive: true, force: true });
});

describe('crawl', () => {
  it('extracts img, srcset, picture, og:image, base href, captions and robots meta from HTML', () => {
    const page = extractPage(pages('http://elsewhere')['/']!, 'http://h/');
    expect(page.images.map((i) => i.url)).toEqual([
      'http://h/img/og.jpg',
      'http://h/img/1.jpg',
      'http://h/img/2.jpg',
      'http://h/img/3@2x.jpg',
      'http://h/img/3.jpg',
      'http://h/private/secret.jpg',
      'http://h/img/4.jpg',
    ]);
    expect(page.images.find((i) => i.url.endsWith('/1.jpg'))!.caption).toBe('one');
    expect(page.images.find((i) => i.url.endsWith('/4.jpg'))!.caption).toBe('four');
    expect(page.links).toContain('http://h/b');
    expect(page.links).not.toContain('mailto:x@y');
    expect(extractPage(pages('x')['/a']!, 'http://h/a').images[0]!.url).toBe('http://h/sub/rel.jpg');
    expect(extractPage(pages('x')['/b']!, 'http://h/b').optedOut).toBe(true);
    expect(largestCandidate(parseSrcset('a.jpg 1x, b.jpg 3x, c.jpg 2x').candidates)?.url).toBe('b.jpg');
    const many = `<a href="/1">x</a>`.repeat(100_000); // a page with 100k links: bounded work and output
    const bounded = extractPage(
      many.replace(/\/1/g, () => `/${Math.random()}`),
      'http://h/',
      { maxLinks: 100 },
    );
    expect(bounded.links).toHaveLength(100);
    expect(bounded.truncated).toBe(true);
  });

  it('crawls politely, never requests what robots.txt disallows or other hosts, and ingests what it found; a rerun redoes nothing', async () => {
    const out = join(dir, 'ds');
    const args = [
      'crawl',
      `${base}/`,
      '--out',
      out,
      '--allow-address',
      '127.0.0.1',
      '--delay-ms',
      '250',
      '--unit-size',
      '100',
    ];
    const r = await runCli(args);
    expect(r.code, r.stderr).toBe(0);
    const done = JSON.parse(r.stdout.split('\n').find((l) => l.includes('crawl_done'))!);
    expect(done).toMatchObject({ pages: 6, images: 8, resumed: false }); // the 6th, /private/page, is visited but never fetched
    expect(done.skipped).toMatchObject({
      robots_disallowed: 1,
      image_robots_disallowed: 1,
      robots_meta: 1,
      redirect: 1,
      external_link: 1,
    });
    expect(hits.filter((h) => h.path.startsWith('/private/'))).toEqual([]);
    expect(hits.filter((h) => h.path === '/img/5.jpg')).toEqual([]);
    expect(externalHits).toEqual([]);
    for (const page of ['/', '/a', '/b', '/old', '/new', '/robots.txt'])
      expect(
        hits.filter((h) => h.path === page),
        page,
      ).toHaveLength(1);
    const starts = hits.map((h) => h.at).sort((a, b) => a - b);
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    // The gate spaces request starts by 250 ms in the client; connection setup and scheduling on a loaded
    // machine shift when a request reaches the server (a late one followed by a prompt one: gaps of 177 and
    // 110 ms were seen in full parallel runs beside other work). The span below holds the 250 ms spacing on
    // average; each gap only has to show that no two requests went out back to back (without the gate the gaps
    // are ~2 ms).
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(50);
    expect(starts[starts.length - 1]! - starts[0]!).toBeGreaterThanOrEqual(250 * (starts.length - 1) - 100);

    const store = await openStore(out);
    const [unit] = await listUnits(store);
    const records = [];
    for await (const rec of (await ShardReader.open(store, unit!.shard)).records()) records.push(rec);
    expect(records.map((x) => new URL(x.url).pathname).sort()).toEqual([
      '/img/1.jpg',
      '/img/2.jpg',
      '/img/3.jpg',
      '/img/3@2x.jpg',
      '/img/4.jpg',
      '/img/6.jpg',
      '/img/og.jpg',
      '/sub/rel.jpg',
    ]);
    expect(records.find((x) => x.url.endsWith('/1.jpg'))).toMatchObject({ caption: 'one', sourcePage: `${base}/` });

    const before = hits.length;
    const again = await runCli(args);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/"event":"crawl_done".*"resumed":true/);
    expect(again.stdout).toMatch(/"unitsSkipped":1/);
    expect(hits.length).toBe(before);
  }, 120_000);

  it('treats robots.txt as RFC 9309 says (5xx or timeout: disallow all; binary: no rules; only the first 500 KiB) and bounds huge pages', async () => {
    let mode = '';
    const seen: string[] = [];
    const hostile = createServer((req, res) => {
      seen.push(`${mode} ${req.url}`);
      if (req.url === '/robots.txt') {
        if (mode === '503') return void res.writeHead(503).end();
        if (mode === 'timeout') return; // never answers
        if (mode === 'huge') {
          // 2 MB: a rule at the top, then comments, then "Disallow: /" past the 500 KiB that are parsed
          return void res
            .writeHead(200, { 'content-type': 'text/plain' })
            .end(`User-agent: *\nDisallow: /big\n${'# filler line\n'.repeat(150_000)}Disallow: /\n`);
        }
        return void res
          .writeHead(200, { 'content-type': 'text/plain' })
          .end(Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 37) % 256)));
      }
      if (req.url === '/')
        return void res.writeHead(200, { 'content-type': 'text/html' }).end('<a href="/big">big</a><img src="/i.jpg">');
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'text/html' });
        const chunk = Buffer.alloc(1 << 20, 'a');
        let sent = 0;
        const pump = () => {
          while (sent < 50 && res.write(chunk)) sent++;
          if (sent < 50) res.once('drain', pump);
          else res.end();
        };
        return void pump();
      }
      res.writeHead(404).end();
    });
    const url = await listen(hostile);
    try {
      for (const m of ['503', 'timeout', 'binary', 'huge']) {
        mode = m;
        const r = await runCli([
          'crawl',
          `${url}/`,
          '--out',
          join(dir, `hostile-${m}`),
          '--allow-address',
          '127.0.0.1',
          '--delay-ms',
          '0',
          '--timeout',
          '1',
          '--retries',
          '0',
          '--max-page-bytes',
          '1048576',
        ]);
        // The one image, /i.jpg, is a 404 (or never found): each job holds no image, which exits 3.
        expect(r.code, r.stderr).toBe(3);
        const done = JSON.parse(r.stdout.split('\n').find((l) => l.includes('crawl_done'))!);
        if (m === 'huge') {
          expect(done).toMatchObject({ pages: 2, images: 1, skipped: { robots_disallowed: 1 } });
          expect(seen).not.toContain('huge /big');
        } else if (m === 'binary') {
          expect(done).toMatchObject({ pages: 2, images: 1 });
          expect(done.skipped).toMatchObject({ too_large: 1 }); // the 50 MB page stopped at the 1 MiB cap
        } else {
          expect(done, m).toMatchObject({ pages: 1, images: 0, skipped: { robots_disallowed: 1 } });
          expect(
            seen.filter((s) => s.startsWith(`${m} `) && !s.endsWith('/robots.txt')),
            m,
          ).toEqual([]);
        }
      }
    } finally {
      hostile.closeAllConnections();
      hostile.close();
    }
  }, 120_000);

  it('a crawl that finds nothing exits 3 and says why in crawl terms: an image on a refused loopback host is blocked_address, with the fix', async () => {
    const local = createServer((req, res) => {
      if (req.url === '/page.html')
        return void res
          .writeHead(200, { 'content-type': 'text/html' })
          .end('<head><base href="http://127.0.0.2/"></head><body><img src="fx/img22.png">');
      res.writeHead(404).end();
    });
    const url = await listen(local);
    try {
      const r = await runCli([
        'crawl',
        `${url}/page.html`,
        '--out',
        join(dir, 'refused'),
        '--allow-address',
        '127.0.0.1',
        '--max-depth',
        '0',
        '--delay-ms',
        '0',
      ]);
      expect(r.code, r.stderr).toBe(3); // README, "Exit codes": 3 the job holds no image, as ingest exits
      const done = JSON.parse(r.stdout.split('\n').find((l) => l.includes('crawl_done'))!);
      expect(done).toMatchObject({ pages: 1, fetched: 1, images: 0, skipped: { image_blocked_address: 1 } });
      expect(r.stderr).not.toMatch(/URL lists|--url-col/);
      expect(r.stderr.trim()).toMatch(
        /^wildstream: the crawl found no image to ingest: 1 of 1 page fetched, 1 image found, 1 skipped; top reasons: image_blocked_address 1 \(.*pass --allow-private-network \(or --allow-address CIDR\)[^\n]*$/,
      );
      const summary = JSON.parse(r.stdout.split('\n').find((l) => l.includes('ingest_done'))!);
      expect(summary.warnings).toEqual([
        expect.objectContaining({ code: 'empty_list', reason: 'image_blocked_address' }),
      ]);
    } finally {
      local.close();
    }
  }, 60_000);

  it('a crawl whose images all fail exits 3 as ingest does, its units committed, with no --retry-failed hint (crawl has none)', async () => {
    const gone = createServer((req, res) => {
      if (req.url === '/') return void res.writeHead(200, { 'content-type': 'text/html' }).end('<img src="/gone.jpg">');
      res.writeHead(404).end();
    });
    const url = await listen(gone);
    const out = join(dir, 'all-failed');
    const args = [
      'crawl',
      `${url}/`,
      '--out',
      out,
      '--allow-address',
      '127.0.0.1',
      '--delay-ms',
      '0',
      '--retries',
      '0',
    ];
    try {
      const r = await runCli(args);
      expect(r.code, r.stderr).toBe(3);
      const summary = JSON.parse(r.stdout.split('\n').find((l) => l.includes('ingest_done'))!);
      expect(summary.warnings).toEqual([expect.objectContaining({ code: 'kept_nothing', reason: 'http_404' })]);
      expect(r.stderr).toMatch(/^wildstream: kept no image: 1 URL failed, most with http_404/m);
      expect(r.stderr).not.toMatch(/--retry-failed/);
      expect(await listUnits(await openStore(out))).toHaveLength(1);
      // A rerun resumes the committed job and still holds no image: the same status, nothing fetched again.
      const again = await runCli(args);
      expect(again.code, again.stderr).toBe(3);
      expect(again.stdout).toMatch(/"unitsSkipped":1/);
    } finally {
      gone.close();
    }
  }, 120_000);

  it('--hosts refuses a URL (exit 2, nothing requested) with the host:port to write, which then follows the seed', async () => {
    const host = new URL(base).host;
    const args = (hosts: string, out: string) => [
      ...['crawl', `${base}/`, '--out', join(dir, out), '--allow-address', '127.0.0.1'],
      ...['--delay-ms', '0', '--max-depth', '0', '--hosts', hosts],
    ];
    const before = hits.length;
    const refused = await runCli(args(base, 'hosts-url'));
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(`got "${base}": write ${host} instead`);
    expect(hits.length).toBe(before);
    expect(existsSync(join(dir, 'hosts-url'))).toBe(false);

    const r = await runCli(args(host, 'hosts-ok'));
    expect(r.code, r.stderr).toBe(0);
    const done = JSON.parse(r.stdout.split('\n').find((l) => l.includes('crawl_done'))!);
    expect(done).toMatchObject({ pages: 1, fetched: 1 });
    expect(done.skipped.external_link).toBeUndefined();
  }, 120_000);

  it('a crawl killed mid-way continues from its last committed unit', async () => {
    // Each page's image is served (made first, off the server's loop): the job holds images, so the crawl exits 0.
    const images = await Promise.all(
      Array.from({ length: 30 }, (_, n) => patternJpeg(100 + n, { width: 96, height: 80 })),
    );
    const chain = createServer((req, res) => {
      chainHits.push(req.url!);
      const image = images[Number(/^\/i(\d+)\.jpg$/.exec(req.url!)?.[1] ?? NaN)];
      if (image) return void res.writeHead(200, { 'content-type': 'image/jpeg' }).end(image);
      const m = /^\/p(\d+)$/.exec(req.url!);
      if (req.url === '/robots.txt') return void res.writeHead(404).end();
      if (!m) return void res.writeHead(404).end();
      const n = Number(m[1]);
      setTimeout(
        () =>
          res
            .writeHead(200, { 'content-type': 'text/html' })
            .end(`<a href="/p${n + 1}">next</a><img src="/i${n}.jpg" alt="${n}">`),
        30,
      );
    });
    const chainHits: string[] = [];
    const url = await listen(chain);
    const out = join(dir, 'chain');
    const args = [
      'crawl',
      `${url}/p0`,
      '--out',
      out,
      '--allow-address',
      '127.0.0.1',
      '--delay-ms',
      '20',
      '--max-pages',
      '30',
      '--max-depth',
      '100',
      '--pages-per-unit',
      '5',
      '--retries',
      '0',
    ];
    try {
      const child = spawn(process.execPath, [BIN, ...args], { stdio: 'ignore' });
      const unit2 = join(out, 'crawl', 'units', '000002.json');
      // Up to 60 s: the CLI alone takes ~20 s to start on a loaded 2-core machine (measured at load 24).
      for (let i = 0; i < 3000 && !existsSync(unit2); i++) await sleep(20);
      child.kill('SIGKILL');
      await new Promise((resolve) => child.on('close', resolve));
      expect(existsSync(join(out, 'crawl', 'done.json'))).toBe(false);
      const before = chainHits.filter((h) => h.startsWith('/p')).length;
      const r = await runCli(args);
      expect(r.code, r.stderr).toBe(0);
      const done = JSON.parse(r.stdout.split('\n').find((l) => l.includes('crawl_done'))!);
      expect(done).toMatchObject({ pages: 30, images: 30, resumed: true });
      const pages = chainHits.filter((h) => h.startsWith('/p'));
      expect(new Set(pages).size).toBe(30);
      expect(pages.length - 30, 'pages fetched twice: at most those in flight at the kill').toBeLessThanOrEqual(2);
      expect(before).toBeGreaterThanOrEqual(15);
    } finally {
      chain.close();
    }
  }, 120_000);
});
