/**
 * The hostile inputs of bench/hostile.ts: image files, HTTP behaviours and URL spellings for ingest, and pages
 * for crawl, each modelled on a public bug report against img2dataset, undici, sharp, crawlers or CSV/JSON
 * tools. Every case is served by one node:http server on 127.0.0.1; SSRF spellings embed 127.0.0.2 (loopback,
 * not in the bench's allow list), so a guard that fails connects to nothing outside this machine.
 *
 * `expect` is the outcome a correct ingest reports: `kept` or a failure reason (regex over the reason);
 * cases without it only have to be classified (any reason, no hang).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { brotliCompressSync, constants, crc32, deflateSync, gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { photoJpeg } from '../src/fixtures/images.js';

export type Route = (req: IncomingMessage, res: ServerResponse) => void;

export interface UrlCase {
  name: string;
  /** The URL for the list, given the server's base (http://127.0.0.1:PORT). */
  url: (base: string, port: number) => string;
  expect?: RegExp;
  /** A list row other than {url}: e.g. a huge caption (the row written to the JSONL list as is). */
  row?: (url: string) => string;
}

export interface PageCase {
  name: string;
  /** Path of the seed page. */
  seed: string;
  /** Checks the crawl's image list (rows of crawl/images.jsonl) and the server's request log. */
  check: (images: Array<{ url: string; caption: string | null }>, log: string[]) => string | null;
}

const SIZE = { width: 320, height: 240 };
let seed = 100;
/** A distinct photo per case, so kept images are never each other's duplicates. */
const photo = () => photoJpeg(seed++, SIZE);

function send(res: ServerResponse, body: Buffer, type = 'image/jpeg', headers: Record<string, string | number> = {}) {
  res.writeHead(200, { 'content-type': type, 'content-length': body.length, ...headers });
  res.end(body);
}

/** Writes raw bytes to the socket, bypassing node:http's response framing. */
function raw(req: IncomingMessage, text: string | Buffer) {
  req.socket.end(text);
}

function png(
  ihdr: { width: number; height: number; depth: number; colour: number; interlace: number },
  idat: Buffer,
  badCrc = false,
): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(badCrc ? 0 : crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const h = Buffer.alloc(13);
  h.writeUInt32BE(ihdr.width, 0);
  h.writeUInt32BE(ihdr.height, 4);
  h.set([ihdr.depth, ihdr.colour, 0, 0, ihdr.interlace], 8);
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', h),
    chunk('IDAT', idat),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A JPEG whose SOF0 frame header claims width x height (the scan data stays the small photo's). */
function jpegClaiming(jpeg: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(jpeg);
  for (let i = 2; i + 9 < out.length;) {
    const marker = out[i + 1]!;
    if (marker >= 0xc0 && marker <= 0xc2) {
      out.writeUInt16BE(height, i + 5);
      out.writeUInt16BE(width, i + 7);
      return out;
    }
    i += 2 + out.readUInt16BE(i + 2);
  }
  throw new Error('no SOF marker');
}

/** A GIF whose logical screen is 65535 x 65535 with a 1 x 1 frame. */
function gifScreenBomb(): Buffer {
  return Buffer.from('474946383961ffffffff000000002c000000000100010000020144003b', 'hex');
}

/** Streams `total` bytes of a gzip member of zeros without holding it: a decompression bomb. */
function gzipBomb(res: ServerResponse, encoding: string) {
  const block = gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 }); // 64 MiB of zeros in ~65 KB
  res.writeHead(200, { 'content-type': 'image/jpeg', 'content-encoding': encoding });
  let left = 16; // 16 gzip members back to back: 1 GiB decoded (gunzip reads concatenated members)
  const pump = () => {
    while (left > 0) {
      left--;
      if (!res.write(block)) return void res.once('drain', pump);
    }
    res.end();
  };
  res.on('close', () => (left = 0));
  pump();
}

/** Sends `total` bytes one byte per write, yielding between bursts: a body that arrives in tiny chunks. */
function byteDrip(res: ServerResponse, body: Buffer) {
  res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length });
  res.socket?.setNoDelay(true);
  let i = 0;
  let closed = false;
  res.on('close', () => (closed = true));
  const burst = () => {
    if (closed) return;
    for (const end = Math.min(body.length, i + 4096); i < end; i++) res.write(body.subarray(i, i + 1));
    if (i < body.length) setImmediate(burst);
    else res.end();
  };
  burst();
}

const CACHE = new URL('./out/hostile-cache/', import.meta.url).pathname;

/** The large flat images take seconds each to encode: made once, kept in bench/out (git-ignored). */
async function cached(name: string, make: () => Promise<Buffer>): Promise<Buffer> {
  const path = join(CACHE, name);
  const hit = await readFile(path).catch(() => null);
  if (hit) return hit;
  const bytes = await make();
  await mkdir(CACHE, { recursive: true });
  await writeFile(path, bytes);
  return bytes;
}

export interface HostileSet {
  routes: Map<string, Route>;
  urls: UrlCase[];
  pages: PageCase[];
}

/** Builds every input (a few seconds: the large images are flat, so they encode small). */
export async function hostileSet(): Promise<HostileSet> {
  const routes = new Map<string, Route>();
  const urls: UrlCase[] = [];
  const at = (path: string, route: Route) => routes.set(path, route);
  const file = async (name: string, body: Buffer | Promise<Buffer>, type: string, expect?: RegExp) => {
    const bytes = await body;
    at(`/f/${name}`, (_q, res) => send(res, bytes, type));
    urls.push({ name: `file: ${name}`, url: (b) => `${b}/f/${name}`, expect });
  };
  const http = (name: string, route: Route, expect?: RegExp) => {
    at(`/h/${name}`, route);
    urls.push({ name: `http: ${name}`, url: (b) => `${b}/h/${name}`, expect });
  };
  const KEPT = /^kept$/;
  const NOT_IMAGE = /not_an_image|decode_error|unsupported|too_small/;
  await addFiles(file, KEPT, NOT_IMAGE);
  await addHttp(http, KEPT);
  addUrls(urls, routes);
  // Eight at once: the decoder's memory, not one image's, is what must stay within the budget.
  for (let k = 2; k <= 8; k++)
    urls.push({
      name: `file: interlaced-16bit-10k.png (copy ${k})`,
      url: (b) => `${b}/f/interlaced-16bit-10k.png?copy=${k}`,
    });
  const pages = await addPages(at);
  return { routes, urls, pages };
}

type AddFile = (name: string, body: Buffer | Promise<Buffer>, type: string, expect?: RegExp) => Promise<void>;
type AddHttp = (name: string, route: Route, expect?: RegExp) => void;

async function addFiles(file: AddFile, KEPT: RegExp, NOT_IMAGE: RegExp): Promise<void> {
  const p = await photo();
  const flat = (w: number, h: number, channels: 3 | 4 = 3) =>
    sharp({ create: { width: w, height: h, channels, background: { r: 90, g: 120, b: 40, alpha: 1 } } });
  await file('plain.jpg', p, 'image/jpeg', KEPT);
  await file('zero-bytes.jpg', Buffer.alloc(0), 'image/jpeg', NOT_IMAGE);
  await file(
    'random-bytes.jpg',
    Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919) & 255)),
    'image/jpeg',
    NOT_IMAGE,
  );
  await file('truncated.jpg', (await photo()).subarray(0, 3000), 'image/jpeg', NOT_IMAGE);
  await file('trailing-garbage.jpg', Buffer.concat([await photo(), Buffer.alloc(20_000, 0x41)]), 'image/jpeg');
  await file('html-as-jpeg.jpg', Buffer.from('<!doctype html><title>x</title>'), 'image/jpeg', NOT_IMAGE);
  await file(
    'svg.svg',
    Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="300"><rect width="300" height="300"/></svg>',
    ),
    'image/svg+xml',
    /svg_refused/,
  );
  await file(
    'svg-entity-bomb.svg',
    Buffer.from(
      `<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaaaaaaaa">${Array.from({ length: 9 }, (_, i) => `<!ENTITY ${String.fromCharCode(98 + i)} "${`&${String.fromCharCode(97 + i)};`.repeat(10)}">`).join('')}]><svg xmlns="http://www.w3.org/2000/svg" width="9"><text>&j;</text></svg>`,
    ),
    'image/svg+xml',
    NOT_IMAGE,
  );
  await file(
    'png-header-60k.png',
    png(
      { width: 60_000, height: 60_000, depth: 8, colour: 2, interlace: 0 },
      deflateSync(Buffer.alloc(1 + 60_000 * 3)),
    ),
    'image/png',
    /too_many_pixels|too_large|decode_error|memory/,
  );
  await file(
    'jpeg-header-65k.jpg',
    jpegClaiming(await photo(), 65_000, 65_000),
    'image/jpeg',
    /too_many_pixels|too_large|decode_error|memory/,
  );
  await file('gif-screen-65k.gif', gifScreenBomb(), 'image/gif');
  await file(
    'png-bad-crc.png',
    png({ width: 100, height: 100, depth: 8, colour: 2, interlace: 0 }, deflateSync(Buffer.alloc(100 * 301)), true),
    'image/png',
    NOT_IMAGE,
  );
  await file(
    'interlaced-16bit-10k.png',
    cached('interlaced-16bit-10k.png', () =>
      flat(10_000, 10_000).toColourspace('rgb16').png({ progressive: true, compressionLevel: 9 }).toBuffer(),
    ),
    'image/png',
  );
  await file(
    'progressive-100mp.jpg',
    cached('progressive-100mp.jpg', () => flat(10_000, 10_000).jpeg({ progressive: true, quality: 50 }).toBuffer()),
    'image/jpeg',
  );
  await file(
    'flat-256mp.png',
    cached('flat-256mp.png', () => flat(16_000, 16_000).png({ compressionLevel: 9 }).toBuffer()),
    'image/png',
  );
  await file(
    'cmyk.jpg',
    sharp(await photo())
      .toColourspace('cmyk')
      .jpeg()
      .toBuffer(),
    'image/jpeg',
    KEPT,
  );
  await file(
    'rgb16.png',
    sharp(await photo())
      .toColourspace('rgb16')
      .png()
      .toBuffer(),
    'image/png',
    KEPT,
  );
  await file(
    'alpha.png',
    sharp(await photo())
      .ensureAlpha(0.5)
      .png()
      .toBuffer(),
    'image/png',
    KEPT,
  );
  await file(
    'grey.png',
    sharp(await photo())
      .greyscale()
      .png()
      .toBuffer(),
    'image/png',
    KEPT,
  );
  await file(
    'exif-rotated.jpg',
    sharp(await photo())
      .withMetadata({ orientation: 6 })
      .jpeg()
      .toBuffer(),
    'image/jpeg',
    KEPT,
  );
  await file(
    'animated.gif',
    sharp([await photo(), await photo()], { join: { animated: true } })
      .gif()
      .toBuffer(),
    'image/gif',
    KEPT,
  );
  await file(
    'webp.webp',
    sharp(await photo())
      .webp()
      .toBuffer(),
    'image/webp',
    KEPT,
  );
  await file(
    'avif.avif',
    sharp(await photo())
      .avif({ effort: 0 })
      .toBuffer(),
    'image/avif',
  );
  await file(
    'tiff.tiff',
    sharp(await photo())
      .tiff()
      .toBuffer(),
    'image/tiff',
  );
  await file('bmp.bmp', Buffer.concat([Buffer.from('BM'), Buffer.alloc(60)]), 'image/bmp', NOT_IMAGE);
  await file('one-pixel.png', flat(1, 1).png().toBuffer(), 'image/png', /too_small/);
  await file('aspect-1000.png', flat(10_000, 10).png().toBuffer(), 'image/png', /aspect|too_small/);
  await file(
    'huge-comment.jpg',
    sharp(await photo())
      .withMetadata({ exif: { IFD0: { ImageDescription: 'x'.repeat(60_000) } } })
      .jpeg()
      .toBuffer(),
    'image/jpeg',
    KEPT,
  );
  await file('wrong-type-text.jpg', await photo(), 'text/plain');
}

async function addHttp(http: AddHttp, KEPT: RegExp): Promise<void> {
  const img = async () => await photo();
  http('404', (_q, res) => void res.writeHead(404).end(), /http_404/);
  http('410', (_q, res) => void res.writeHead(410).end(), /http_410/);
  http('500', (_q, res) => void res.writeHead(500).end(), /http_500/);
  http('503-retry-after-hour', (_q, res) => void res.writeHead(503, { 'retry-after': '3600' }).end(), /http_503/);
  http(
    '429-retry-after-date',
    (_q, res) => void res.writeHead(429, { 'retry-after': new Date(Date.now() + 86_400_000).toUTCString() }).end(),
    /http_429/,
  );
  http('redirect-loop', (_q, res) => void res.writeHead(302, { location: '/h/redirect-loop' }).end(), /redirect/);
  http('redirect-no-location', (_q, res) => void res.writeHead(302).end());
  http('redirect-to-ftp', (_q, res) => void res.writeHead(302, { location: 'ftp://127.0.0.1/x.jpg' }).end());
  http('redirect-to-file', (_q, res) => void res.writeHead(302, { location: 'file:///etc/passwd' }).end());
  http(
    'redirect-to-127.0.0.2',
    (q, res) => void res.writeHead(302, { location: `http://127.0.0.2:${q.socket.localPort}/f/plain.jpg` }).end(),
    /blocked_address/,
  );
  http(
    'redirect-to-mapped-v6',
    (q, res) =>
      void res.writeHead(302, { location: `http://[::ffff:127.0.0.2]:${q.socket.localPort}/f/plain.jpg` }).end(),
    /blocked_address/,
  );
  http(
    'redirect-to-compat-v6',
    (q, res) => void res.writeHead(302, { location: `http://[::7f00:2]:${q.socket.localPort}/f/plain.jpg` }).end(),
    /blocked_address/,
  );
  http(
    'redirect-to-decimal-ip',
    (q, res) => void res.writeHead(302, { location: `http://2130706434:${q.socket.localPort}/f/plain.jpg` }).end(),
    /blocked_address/,
  );
  const relative = await img();
  http(
    'redirect-relative',
    (q, res) =>
      q.url!.endsWith('?to')
        ? send(res, relative)
        : void res.writeHead(301, { location: 'redirect-relative?to' }).end(),
    KEPT,
  );
  http('hang-before-headers', () => {}, /timeout/);
  const slow = await img();
  http(
    'slow-body',
    (_q, res) => {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': slow.length });
      res.write(slow.subarray(0, 100));
      const t = setInterval(() => res.write(Buffer.alloc(1)), 2000);
      res.on('close', () => clearInterval(t));
    },
    /timeout/,
  );
  http(
    'endless-body',
    (_q, res) => {
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      const chunk = Buffer.alloc(64 * 1024, 7);
      let open = true;
      res.on('close', () => (open = false));
      const pump = () => {
        while (open && res.write(chunk));
      };
      res.on('drain', pump);
      pump();
    },
    /too_large/,
  );
  const short = await img();
  http('content-length-too-long', (_q, res) => {
    res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': short.length + 5000 });
    res.write(short, () => res.destroy());
  });
  http(
    'content-length-10GB',
    (q) => raw(q, 'HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 10737418240\r\n\r\nabc'),
    /too_large/,
  );
  http('reset-before-headers', (q) => q.socket.destroy(), /connection_error/);
  const mid = await img();
  http('reset-mid-body', (_q, res) => {
    res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': mid.length });
    res.write(mid.subarray(0, 1000), () => res.socket?.resetAndDestroy());
  });
  http('garbage-status-line', (q) => raw(q, 'SSH-2.0-OpenSSH_9.2\r\n\r\n'));
  http('bad-content-length', (q) => raw(q, 'HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nxyz'));
  http('both-length-and-chunked', (q) =>
    raw(q, 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'),
  );
  http('bad-chunk-size', (q) => raw(q, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'));
  http('header-100KB', (q) => raw(q, `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(100_000)}\r\nContent-Length: 0\r\n\r\n`));
  http(
    'http-1.0-close-delimited',
    async (q) =>
      raw(q, Buffer.concat([Buffer.from('HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\n\r\n'), await img()])),
    KEPT,
  );
  const gz = gzipSync(await img());
  http('gzip-image', (_q, res) => send(res, gz, 'image/jpeg', { 'content-encoding': 'gzip' }), KEPT);
  const br = brotliCompressSync(await img(), { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } });
  http('br-image', (_q, res) => send(res, br, 'image/jpeg', { 'content-encoding': 'br' }), KEPT);
  const df = deflateSync(await img());
  http('deflate-image', (_q, res) => send(res, df, 'image/jpeg', { 'content-encoding': 'deflate' }), KEPT);
  const stacked = brotliCompressSync(gzipSync(await img()));
  http('gzip-then-br-image', (_q, res) => send(res, stacked, 'image/jpeg', { 'content-encoding': 'gzip, br' }), KEPT);
  http('gzip-bomb-1GiB', (_q, res) => gzipBomb(res, 'gzip'), /too_large/);
  http('corrupt-gzip', (_q, res) =>
    send(res, Buffer.from('1f8b0800000000000003ffffffff', 'hex'), 'image/jpeg', { 'content-encoding': 'gzip' }),
  );
  const unknown = await img();
  http('unknown-encoding', (_q, res) => send(res, unknown, 'image/jpeg', { 'content-encoding': 'x-snappy' }));
  const drip = await sharp({
    create: {
      width: 1200,
      height: 900,
      channels: 3,
      background: '#000',
      noise: { type: 'gaussian', mean: 128, sigma: 40 },
    },
  })
    .jpeg({ quality: 95 })
    .toBuffer();
  for (let i = 1; i <= 4; i++)
    http(`one-byte-chunks-${i}`, (_q, res) => byteDrip(res, drip), i === 1 ? KEPT : /kept|duplicate/);
  const untyped = await img();
  http(
    'no-content-type',
    (q) =>
      raw(q, Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${untyped.length}\r\n\r\n`), untyped])),
    KEPT,
  );
}

function addUrls(urls: UrlCase[], routes: Map<string, Route>): void {
  const blocked = /blocked_address/;
  const spell = (name: string, host: string, expect = blocked) =>
    urls.push({ name: `ssrf: ${name}`, url: (_b, port) => `http://${host}:${port}/f/plain.jpg`, expect });
  spell('127.0.0.2', '127.0.0.2');
  spell('decimal 2130706434', '2130706434');
  spell('hex 0x7f000002', '0x7f000002');
  spell('octal 0177.0.0.2', '0177.0.0.2');
  spell('short 127.2', '127.2');
  spell('IPv4-mapped [::ffff:127.0.0.2]', '[::ffff:127.0.0.2]');
  spell('IPv4-mapped hex [::ffff:7f00:2]', '[::ffff:7f00:2]');
  spell('IPv4-compatible [::7f00:2]', '[::7f00:2]');
  spell('IPv4-compatible [::127.0.0.2]', '[::127.0.0.2]');
  spell('NAT64 [64:ff9b::7f00:2]', '[64:ff9b::7f00:2]');
  spell('6to4 [2002:7f00:2::]', '[2002:7f00:2::]');
  spell('Teredo client 127.0.0.2', '[2001:0:4136:e378:8000:63bf:80ff:fffd]');
  spell('IPv6 loopback [::1]', '[::1]');
  spell('unspecified 0.0.0.0', '0.0.0.0');
  spell('unspecified [::]', '[::]');
  urls.push({ name: 'url: data URI', url: () => 'data:image/png;base64,iVBORw0KGgo=', expect: /url_scheme|bad_url/ });
  urls.push({ name: 'url: javascript', url: () => 'javascript:alert(1)', expect: /url_scheme|bad_url/ });
  urls.push({ name: 'url: file', url: () => 'file:///etc/passwd', expect: /url_scheme|bad_url/ });
  urls.push({ name: 'url: ftp', url: () => 'ftp://127.0.0.1/x.jpg', expect: /url_scheme|bad_url/ });
  urls.push({ name: 'url: unparsable', url: () => 'http://[::1', expect: /bad_url|url/ });
  urls.push({ name: 'url: 100 KB long', url: (b) => `${b}/f/plain.jpg?${'q'.repeat(100_000)}` });
  urls.push({
    name: 'url: userinfo',
    url: (b) => b.replace('http://', 'http://user:pass@') + '/f/userinfo.jpg',
    expect: /kept|duplicate/,
  });
  routes.set('/f/userinfo.jpg', routes.get('/f/plain.jpg')!);
  urls.push({ name: 'url: spaces and unicode path', url: (b) => `${b}/f/ünï cödé.jpg`, expect: /kept|duplicate/ });
  routes.set(encodeURI('/f/ünï cödé.jpg'), routes.get('/f/plain.jpg')!);
  urls.push({
    name: 'row: 1.2 MB caption',
    url: (b) => `${b}/f/plain.jpg?caption`,
    row: (url) => JSON.stringify({ url, caption: 'c'.repeat(1_200_000) }),
    expect: /kept|duplicate/,
  });
  urls.push({
    name: 'row: invalid JSON',
    url: () => '',
    row: () => '{"url": "http://127.0.0.1/x.jpg", ',
    expect: /bad_row|bad_url|row/,
  });
  urls.push({
    name: 'row: url not a string',
    url: () => '',
    row: () => '{"url": 12345}',
    expect: /bad_row|bad_url|row|url/,
  });
  urls.push({
    name: 'row: lone surrogate caption',
    url: (b) => `${b}/f/plain.jpg?surrogate`,
    row: (url) => `{"url": ${JSON.stringify(url)}, "caption": "a\\ud800b"}`,
    expect: /kept|duplicate/,
  });
}

async function addPages(at: (path: string, route: Route) => void): Promise<PageCase[]> {
  const pages: PageCase[] = [];
  const html = (body: string) => `<!doctype html><html><head><meta charset="utf-8"></head><body>${body}</body></html>`;
  const page = (
    name: string,
    body: Buffer | string,
    check: PageCase['check'],
    headers: Record<string, string> = {},
  ) => {
    const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
    at(`/p/${name}`, (_q, res) => send(res, bytes, 'text/html', headers));
    pages.push({ name: `page: ${name}`, seed: `/p/${name}`, check });
  };
  const img = async (path: string) => {
    const bytes = await photo();
    at(path, (_q, res) => send(res, bytes));
  };
  const has = (images: Array<{ url: string }>, path: string) => images.some((i) => new URL(i.url).pathname === path);
  for (const p of [
    '/i/small.jpg',
    '/i/big.jpg',
    '/i/real.jpg',
    '/i/lazy.jpg',
    '/i/lazyset.jpg',
    '/i/noscript.jpg',
    '/i/og.jpg',
    '/i/pic.jpg',
    '/i/src.jpg',
  ])
    await img(p);
  page('srcset-no-space', html('<img srcset="/i/small.jpg 1x,/i/big.jpg 4x">'), (i) =>
    has(i, '/i/big.jpg') && !has(i, '/i/small.jpg') ? null : 'want big.jpg only',
  );
  page(
    'srcset-data-placeholder',
    html('<img src="/i/real.jpg" srcset="data:image/gif;base64,R0lGODlhAQABAAAAACw= 1x">'),
    (i) => (has(i, '/i/real.jpg') ? null : 'want real.jpg'),
  );
  page('lazy-data-src', html('<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="/i/lazy.jpg">'), (i) =>
    has(i, '/i/lazy.jpg') ? null : 'want lazy.jpg',
  );
  page('lazy-data-srcset', html('<img data-srcset="/i/small.jpg 100w, /i/lazyset.jpg 800w">'), (i) =>
    has(i, '/i/lazyset.jpg') ? null : 'want lazyset.jpg',
  );
  page('noscript-fallback', html('<noscript><img src="/i/noscript.jpg" alt="ns"></noscript>'), (i) =>
    has(i, '/i/noscript.jpg') ? null : 'want noscript.jpg',
  );
  page(
    'og-image-alt',
    `<html><head><meta property="og:image" content="/i/og.jpg"><meta property="og:image:alt" content="a red boat"></head><body></body></html>`,
    (i) =>
      i.find((x) => x.url.endsWith('/i/og.jpg'))?.caption === 'a red boat'
        ? null
        : 'want og.jpg captioned "a red boat"',
  );
  page(
    'picture-source-alt',
    html('<picture><source srcset="/i/pic.jpg"><img src="/i/src.jpg" alt="a cat"></picture>'),
    (i) => (i.find((x) => x.url.endsWith('/i/pic.jpg'))?.caption === 'a cat' ? null : 'want pic.jpg captioned "a cat"'),
  );
  const cyr = 'Кошка на крыше';
  page(
    'windows-1251-meta',
    Buffer.concat([
      Buffer.from('<html><head><meta charset="windows-1251"></head><body><img src="/i/real.jpg" alt="'),
      win1251(cyr),
      Buffer.from('"></body></html>'),
    ]),
    (i) => (i.find((x) => x.url.endsWith('/i/real.jpg'))?.caption === cyr ? null : `want caption "${cyr}"`),
  );
  page(
    'windows-1251-header',
    Buffer.concat([
      Buffer.from('<html><body><img src="/i/real.jpg" alt="'),
      win1251(cyr),
      Buffer.from('"></body></html>'),
    ]),
    (i) => (i.find((x) => x.url.endsWith('/i/real.jpg'))?.caption === cyr ? null : `want caption "${cyr}"`),
    { 'content-type': 'text/html; charset=windows-1251' },
  );
  page(
    'utf16-bom',
    Buffer.concat([
      Buffer.from([0xff, 0xfe]),
      Buffer.from(`<html><body><img src="/i/real.jpg" alt="${cyr}"></body></html>`, 'utf16le'),
    ]),
    (i) => (i.find((x) => x.url.endsWith('/i/real.jpg'))?.caption === cyr ? null : `want caption "${cyr}"`),
  );
  page(
    'gzip-page',
    gzipSync(html('<img src="/i/real.jpg">')),
    (i) => (has(i, '/i/real.jpg') ? null : 'want real.jpg'),
    { 'content-encoding': 'gzip' },
  );
  page(
    'br-page',
    brotliCompressSync(html('<img src="/i/real.jpg">')),
    (i) => (has(i, '/i/real.jpg') ? null : 'want real.jpg'),
    { 'content-encoding': 'br' },
  );
  const uniPath = '/i/фото.jpg';
  await img(encodeURI(uniPath));
  page(
    'non-ascii-image-path',
    Buffer.concat([
      Buffer.from('<html><head><meta charset="windows-1251"></head><body><img src="'),
      win1251(uniPath),
      Buffer.from('"></body></html>'),
    ]),
    (i, log) => (log.includes(encodeURI(uniPath)) && i.length === 1 ? null : 'want /i/фото.jpg fetched'),
  );
  page('100k-images', html(Array.from({ length: 100_000 }, (_, k) => `<img src="/i/n${k}.jpg">`).join('')), (i) =>
    i.length <= 1000 ? null : `${i.length} images taken (limit 1000)`,
  );
  page('deep-nesting', html('<div>'.repeat(100_000) + '<img src="/i/real.jpg">'), (i) =>
    has(i, '/i/real.jpg') ? null : 'want real.jpg',
  );
  page('malformed', '<html><body><img src="/i/real.jpg" alt="unclosed <img src=/i/src.jpg <<<>>> </body', () => null);
  page('50MB-page', Buffer.alloc(50 * 1024 * 1024, 0x20), () => null);
  return pages;
}

/** windows-1251 bytes of ASCII and basic Cyrillic (А..я, Ё, ё): enough for the cases above. */
function win1251(text: string): Buffer {
  return Buffer.from(
    Array.from(text, (ch) => {
      const c = ch.codePointAt(0)!;
      if (c < 0x80) return c;
      if (c >= 0x410 && c <= 0x44f) return c - 0x410 + 0xc0;
      if (c === 0x401) return 0xa8;
      if (c === 0x451) return 0xb8;
      throw new Error(`no windows-1251 byte for ${ch}`);
    }),
  );
}
