import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentTypeCharset, decodePage } from '../../src/crawl/charset.js';
import { readPage } from '../../src/crawl/html.js';
import { resolveUrl } from '../../src/crawl/url.js';
import { patternJpeg } from '../../src/fixtures/images.js';
import { ShardReader } from '../../src/shards/reader.js';
import { listUnits } from '../../src/shards/dataset.js';
import { openStore } from '../../src/shards/store.js';
import { runCli } from '../helpers/cli.js';

/** Page bytes from ASCII markup and raw byte runs (the encoded text, written out so no encoder is trusted). */
function bytes(...parts: Array<string | number[]>): Buffer {
  return Buffer.concat(
    parts.map((p) => {
      if (Array.isArray(p)) return Buffer.from(p);
      if (/[^\x00-\x7f]/.test(p)) throw new Error(`non-ASCII markup: ${p}`);
      return Buffer.from(p, 'latin1');
    }),
  );
}
const hex = (h: string) => [...Buffer.from(h, 'hex')];
const CP1251 = { photo: hex('d4eef2eee3f0e0f4e8ff'), test: hex('f2e5f1f2'), hello: hex('cff0e8e2e5f2') }; // Фотография, тест, Привет
const SJIS = { photo: hex('8eca905e82c582b7'), cat: hex('944c') }; // 写真です, 猫
const utf16 = (text: string, be = false) => {
  const le = Buffer.from(`\ufeff${text}`, 'utf16le');
  return be ? Buffer.from(le).swap16() : le;
};

/** Fixture pages: [bytes, Content-Type]. */
const PAGES: Record<string, [Buffer, string]> = {
  '/': [
    bytes(
      '<html><head><meta charset="windows-1251"><title>x</title></head><body>',
      '<a href="/sjis">s</a><a href="/utf16">u</a><a href="/latin1">l</a><a href="/conflict">c</a>',
      '<img src="/img/',
      CP1251.photo,
      '.jpg?q=',
      CP1251.test,
      '" alt="',
      CP1251.photo,
      '"></body></html>',
    ),
    'text/html',
  ],
  '/sjis': [
    bytes('<html><body><img src="/img/', SJIS.cat, '.jpg?q=', SJIS.cat, '" alt="', SJIS.photo, '"></body></html>'),
    'text/html; charset=Shift_JIS',
  ],
  '/utf16': [
    utf16(
      '<html><head><meta charset="windows-1251"></head><body><img src="/img/\u00fc.jpg" alt="\u00dcn\u00efc\u00f8d\u00e9 \u{1F426}"></body></html>',
    ),
    'text/html',
  ],
  '/latin1': [
    bytes(
      '<html><head><meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1"></head><body><img src="/img/l.jpg" alt="',
      [0x93],
      'caf',
      [0xe9],
      [0x94],
      '"></body></html>',
    ),
    'text/html',
  ],
  '/conflict': [
    bytes(
      '<html><head><meta charset="koi8-r"></head><body><img src="/img/c.jpg" alt="',
      CP1251.hello,
      '"></body></html>',
    ),
    'text/html; charset=windows-1251',
  ],
};
/** The raw request targets a browser sends for the images above: path in UTF-8, query in the page's encoding. */
const IMAGES = [
  '/img/%D0%A4%D0%BE%D1%82%D0%BE%D0%B3%D1%80%D0%B0%D1%84%D0%B8%D1%8F.jpg?q=%F2%E5%F1%F2',
  '/img/%E7%8C%AB.jpg?q=%94L',
  '/img/%C3%BC.jpg',
  '/img/l.jpg',
  '/img/c.jpg',
];

describe('page encodings, as browsers determine them', () => {
  it('decodes by BOM, then Content-Type charset, then meta prescan, then UTF-8 if valid, else windows-1252', () => {
    const page = (path: string) => readPage(PAGES[path]![0], PAGES[path]![1], `http://h${path}`);
    expect(page('/')).toMatchObject({ encoding: 'windows-1251', images: [{ caption: 'Фотография' }] });
    expect(page('/sjis')).toMatchObject({ encoding: 'Shift_JIS', images: [{ caption: '写真です' }] });
    expect(page('/utf16')).toMatchObject({ encoding: 'UTF-16LE', images: [{ caption: 'Ünïcødé 🐦' }] }); // BOM beats the meta
    expect(page('/latin1')).toMatchObject({ encoding: 'windows-1252', images: [{ caption: '“café”' }] }); // the label means windows-1252
    expect(page('/conflict')).toMatchObject({ encoding: 'windows-1251', images: [{ caption: 'Привет' }] }); // the header beats the meta
    const be = utf16('<img src="/b.jpg" alt="\u00e9t\u00e9">', true);
    expect(readPage(be, 'text/html; charset=windows-1251', 'http://h/')).toMatchObject({
      encoding: 'UTF-16BE',
      images: [{ caption: 'été' }],
    });
  });

  it('follows the prescan rules: first 1024 bytes, comments skipped, utf-16 and x-user-defined remapped, unknown labels ignored', () => {
    const cyr = (head: string, header: string | null = 'text/html') =>
      decodePage(bytes(head, '<p>', CP1251.hello), header);
    expect(cyr('<meta http-equiv=content-type content="text/html;charset=windows-1251">')).toEqual({
      encoding: 'windows-1251',
      text: expect.stringContaining('Привет'),
    });
    expect(cyr('<!-- <meta charset="koi8-r"> --><meta charset=windows-1251>').encoding).toBe('windows-1251');
    expect(cyr(`${' '.repeat(1100)}<meta charset="windows-1251">`).encoding).toBe('windows-1252'); // too late to count
    expect(cyr('<meta charset="utf-16">')).toEqual({ encoding: 'UTF-8', text: expect.stringContaining('\uFFFD') }); // a meta saying UTF-16 means UTF-8
    expect(cyr('<meta charset="x-user-defined">').encoding).toBe('windows-1252');
    expect(cyr('<meta charset="windows-1251">', 'text/html; charset=no-such-label').encoding).toBe('windows-1251');
    expect(cyr('<meta charset="iso-2022-kr">')).toEqual({ encoding: 'replacement', text: '\uFFFD' }); // never decoded
    expect(decodePage(Buffer.from('<p>déjà vu'), 'text/html')).toEqual({ encoding: 'UTF-8', text: '<p>déjà vu' });
    expect(decodePage(bytes('<p>', [0x80, 0x93, 0xe9, 0x81]), null)).toEqual({
      encoding: 'windows-1252',
      text: '<p>€“é\u0081',
    });
  });

  it('reads the charset of a Content-Type header as the Fetch standard extracts it', () => {
    expect(contentTypeCharset('text/html; charset="Shift_JIS"')).toBe('Shift_JIS');
    expect(contentTypeCharset('text/html;charset=gbk, text/html')).toBe('gbk');
    expect(contentTypeCharset('text/html;charset=gbk, text/plain')).toBeNull();
    expect(contentTypeCharset('text/html; charset=koi8-r, */*')).toBe('koi8-r');
    expect(contentTypeCharset('nonsense')).toBeNull();
    expect(contentTypeCharset(null)).toBeNull();
  });

  it('resolves URLs as the URL standard does: path as UTF-8, query in the page encoding', () => {
    const url = (raw: string, enc: string, base = 'http://h/dir/') =>
      (resolveUrl(raw, base, enc) as { url: string }).url;
    expect(url('фото.jpg?q=тест#frag', 'windows-1251')).toBe(
      'http://h/dir/%D1%84%D0%BE%D1%82%D0%BE.jpg?q=%F2%E5%F1%F2',
    );
    expect(url('фото.jpg?q=тест', 'UTF-8')).toBe(
      'http://h/dir/%D1%84%D0%BE%D1%82%D0%BE.jpg?q=%D1%82%D0%B5%D1%81%D1%82',
    );
    expect(url('?q=猫', 'Shift_JIS', 'http://h/dir/?old')).toBe('http://h/dir/?q=%94L');
    expect(url('x?q=€&r=✓', 'windows-1251')).toBe('http://h/dir/x?q=%88&r=%26%2310003%3B'); // ✓ is not in windows-1251
    expect(url('x?q=тест', 'UTF-16LE')).toBe('http://h/dir/x?q=%D1%82%D0%B5%D1%81%D1%82');
    expect(url('x?a=%41 "b"\'', 'windows-1252')).toBe('http://h/dir/x?a=%41%20%22b%22%27');
    expect(url('', 'windows-1251', 'http://h/dir/?q=%F2')).toBe('http://h/dir/?q=%F2'); // the base's query, as it is
    expect(resolveUrl('data:image/png;base64,AA', 'http://h/')).toEqual({ skip: 'data_uri' });
    expect(resolveUrl('mailto:a@b', 'http://h/')).toEqual({ skip: 'unsupported_scheme' });
    expect(resolveUrl('http://exa mple.com/', 'http://h/')).toEqual({ skip: 'bad_url' });
  });
});

describe('crawling pages in legacy encodings', () => {
  let server: Server, base: string, dir: string;
  const hits: string[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-charset-'));
    const jpegs = new Map(
      await Promise.all(IMAGES.map(async (p, i) => [p, await patternJpeg(i, { width: 96, height: 80 })] as const)),
    );
    server = createServer((req, res) => {
      hits.push(req.url!);
      const page = PAGES[req.url!];
      if (page) return void res.writeHead(200, { 'content-type': page[1] }).end(page[0]);
      const jpeg = jpegs.get(req.url!);
      if (jpeg) return void res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpeg);
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('fetches non-ASCII image URLs as browsers request them and keeps their captions in the right script', async () => {
    const out = join(dir, 'ds');
    const r = await runCli([
      'crawl',
      `${base}/`,
      '--out',
      out,
      '--allow-address',
      '127.0.0.1',
      '--delay-ms',
      '0',
      '--retries',
      '0',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.split('\n').find((l) => l.includes('crawl_done'))!)).toMatchObject({
      pages: 5,
      images: 5,
    });
    expect(hits.filter((h) => h.startsWith('/img/')).sort()).toEqual([...IMAGES].sort()); // each once, none a 404
    const store = await openStore(out);
    const records = [];
    for (const unit of await listUnits(store))
      for await (const rec of (await ShardReader.open(store, unit.shard)).records()) records.push(rec);
    expect(records.map((x) => [new URL(x.url).pathname + new URL(x.url).search, x.caption]).sort()).toEqual(
      [
        ['/img/%C3%BC.jpg', 'Ünïcødé 🐦'],
        [IMAGES[0], 'Фотография'],
        ['/img/%E7%8C%AB.jpg?q=%94L', '写真です'],
        ['/img/c.jpg', 'Привет'],
        ['/img/l.jpg', '“café”'],
      ].sort(),
    );
  }, 120_000);
});
