// URL lists in every format, junk rows kept as rows (so they are counted), deterministic indices.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { groupUnits } from '../../src/ingest/job.js';
import { runIngest } from '../../src/ingest/local.js';
import {
  checkUrl,
  columnName,
  extraColumnsOf,
  listFiles,
  MAX_FIELD_LENGTH,
  MAX_LINE_LENGTH,
  MAX_ROW_TEXT,
  readUrlLists,
  type ListStats,
  type UrlListOptions,
} from '../../src/ingest/url-list.js';
import { listUnits } from '../../src/shards/dataset.js';
import { openStore } from '../../src/shards/store.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-lists-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function rows(files: string[], options: UrlListOptions = {}, stats?: ListStats) {
  const out = [];
  for await (const row of readUrlLists(await listFiles(files), options, stats)) out.push(row);
  return out;
}

/** Writes `text` (a string, or bytes) to a new file named `name`, and returns its path. */
async function file(name: string, text: string | Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

describe('URL lists', () => {
  it('reads txt with comments and blank lines, and gzipped txt', async () => {
    const text = '# a comment\nhttp://a.test/1.jpg\n\n  https://a.test/2.jpg  \njavascript:alert(1)\n';
    await writeFile(join(dir, 'l.txt'), text);
    await writeFile(join(dir, 'l2.txt.gz'), gzipSync(text));
    const got = await rows([join(dir, 'l.txt'), join(dir, 'l2.txt.gz')]);
    expect(got.map((r) => [r.index, r.url])).toEqual([
      [0, 'http://a.test/1.jpg'],
      [1, 'https://a.test/2.jpg'],
      [2, 'javascript:alert(1)'],
      [3, 'http://a.test/1.jpg'],
      [4, 'https://a.test/2.jpg'],
      [5, 'javascript:alert(1)'],
    ]);
  });

  it('reads csv and tsv with quoted fields, choosing columns by name and keeping the rest', async () => {
    await writeFile(
      join(dir, 'l.csv'),
      'URL,TEXT,license\n"http://a.test/x.jpg","a ""quoted"", caption",cc-by\nhttp://a.test/y.jpg,,\n',
    );
    const got = await rows([join(dir, 'l.csv')], { urlCol: 'URL', captionCol: 'TEXT' });
    expect(got).toEqual([
      {
        index: 0,
        url: 'http://a.test/x.jpg',
        caption: 'a "quoted", caption',
        sourcePage: null,
        extra: { license: 'cc-by' },
      },
      { index: 1, url: 'http://a.test/y.jpg', caption: null, sourcePage: null, extra: { license: '' } },
    ]);
    await writeFile(join(dir, 'l.tsv'), 'url\tcaption\nhttp://a.test/t.jpg\thello\n');
    expect((await rows([join(dir, 'l.tsv')]))[0]).toMatchObject({ url: 'http://a.test/t.jpg', caption: 'hello' });
    await expect(rows([join(dir, 'l.csv')])).rejects.toThrow(/column "url" not found .*URL, TEXT, license/);
    // A source_page column (crawls write one) fills the shard's own column, not an extra one.
    await writeFile(join(dir, 'p.csv'), 'url,source_page,site\nhttp://a.test/s.jpg,http://a.test/page,a\n');
    expect((await rows([join(dir, 'p.csv')]))[0]).toMatchObject({
      sourcePage: 'http://a.test/page',
      extra: { site: 'a' },
    });
  });

  it('reads jsonl, counting junk lines as rows', async () => {
    await writeFile(
      join(dir, 'l.jsonl'),
      '{"url":"http://a.test/j.jpg","caption":"c","width":640}\nnot json\n[1,2]\n{"url":"http://a.test/k.jpg"}\n',
    );
    const got = await rows([join(dir, 'l.jsonl')]);
    expect(got.map((r) => [r.url, r.caption, r.extra])).toEqual([
      ['http://a.test/j.jpg', 'c', { extra_width: '640' }],
      ['', null, {}],
      ['', null, {}],
      ['http://a.test/k.jpg', null, {}],
    ]);
    expect(await extraColumnsOf(await listFiles([join(dir, 'l.jsonl')]))).toEqual(['extra_width']);
  });

  it('makes a column of every jsonl key, also one first met after the first object, in the order met', async () => {
    const path = await file(
      'optional.jsonl',
      [
        '{"url":"http://a.test/1.jpg","license":"cc"}',
        '{"url":"http://a.test/2.jpg","author":"bob","license":"x"}',
        '{"url":"http://a.test/3.jpg","tags":["a","b"],"n":5}',
      ].join('\n'),
    );
    expect(await extraColumnsOf([path])).toEqual(['license', 'author', 'tags', 'n']);
    expect((await rows([path])).map((r) => r.extra)).toEqual([
      { license: 'cc' },
      { author: 'bob', license: 'x' },
      { tags: '["a","b"]', n: '5' },
    ]);
  });

  it('gives columns whose safe names collide, or that repeat, names of their own: no value overwrites another', async () => {
    const csv = await file('clash.csv', 'url,a b,a_b,x,x,key,extra_key,__proto__\nhttp://a.test/1.jpg,1,2,3,4,5,6,7\n');
    const jsonl = await file(
      'clash.jsonl',
      '{"url":"http://a.test/1.jpg","a b":"1","a_b":"2","key":"5","extra_key":"6"}\n',
    );
    // fromEntries: in a literal, `__proto__: '7'` would set the prototype instead of a key.
    const want = Object.fromEntries([
      ['a_b', '1'],
      ['a_b_2', '2'],
      ['x', '3'],
      ['x_2', '4'],
      ['extra_key', '5'],
      ['extra_key_2', '6'],
      ['__proto__', '7'],
    ]);
    for (const [path, expected] of [
      [csv, want],
      [jsonl, { a_b: '1', a_b_2: '2', extra_key: '5', extra_key_2: '6' }],
    ] as const) {
      const [row] = await rows([path]);
      expect(Object.entries(row!.extra)).toEqual(Object.entries(expected));
      expect(Object.getPrototypeOf(row!.extra)).toBe(Object.prototype); // __proto__ is a column, not a prototype
      expect(await extraColumnsOf([path])).toEqual(Object.keys(expected));
    }
  });

  it('names a column, never an object method: --url-col constructor and --caption-col toString', async () => {
    const path = await file('methods.csv', 'url,caption\nhttp://a.test/1.jpg,hello\n');
    await expect(rows([path], { captionCol: 'toString' })).rejects.toThrow(/caption column "toString" not found/);
    await expect(rows([path], { urlCol: 'constructor' })).rejects.toThrow(/URL column "constructor" not found/);
    const jsonl = await file('methods.jsonl', '{"url":"http://a.test/1.jpg"}\n');
    await expect(rows([jsonl], { urlCol: 'constructor' })).rejects.toThrow(/column "constructor" not found/);
    await expect(rows([jsonl], { captionCol: 'valueOf' })).rejects.toThrow(/caption column "valueOf" not found/);
  });

  it('refuses a caption column named on purpose that the list lacks (a typo would leave every caption null)', async () => {
    const csv = await file('cap.csv', 'url,text\nhttp://a.test/1.jpg,hello\n');
    await expect(rows([csv], { captionCol: 'captoin' })).rejects.toThrow(
      /^caption column "captoin" not found in .*cap\.csv; columns: url, text$/,
    );
    expect((await rows([csv], { captionCol: 'text' }))[0]!.caption).toBe('hello');
    expect((await rows([csv]))[0]!.caption).toBeNull(); // the default "caption" column may be absent
    // JSONL has no header: the column must be in some object, not in every one.
    const jsonl = await file('cap.jsonl', '{"url":"http://a.test/1.jpg"}\n{"url":"http://a.test/2.jpg","alt":"x"}\n');
    expect((await rows([jsonl], { captionCol: 'alt' })).map((r) => r.caption)).toEqual([null, 'x']);
    await expect(rows([jsonl], { captionCol: 'text' })).rejects.toThrow(
      /caption column "text" not found in any object/,
    );
  });

  it('reads parquet', async () => {
    const { parquetWriteBuffer } = await import('hyparquet-writer');
    const buffer = parquetWriteBuffer({
      columnData: [
        { name: 'url', data: ['http://a.test/p1.jpg', 'http://a.test/p2.jpg'], type: 'STRING' },
        { name: 'caption', data: ['one', null], type: 'STRING' },
        { name: 'similarity', data: [0.5, 0.25], type: 'DOUBLE' },
      ],
    });
    await writeFile(join(dir, 'l.parquet'), Buffer.from(buffer));
    const got = await rows([join(dir, 'l.parquet')]);
    expect(got).toEqual([
      { index: 0, url: 'http://a.test/p1.jpg', caption: 'one', sourcePage: null, extra: { similarity: '0.5' } },
      { index: 1, url: 'http://a.test/p2.jpg', caption: null, sourcePage: null, extra: { similarity: '0.25' } },
    ]);
  });

  it('expands directories in sorted order and refuses unknown files', async () => {
    const sub = join(dir, 'sub');
    await mkdir(sub);
    await writeFile(join(sub, 'b.txt'), 'http://a.test/b\n');
    await writeFile(join(sub, 'a.txt'), 'http://a.test/a\n');
    await writeFile(join(sub, 'notes.md'), 'ignored');
    expect((await rows([sub])).map((r) => r.url)).toEqual(['http://a.test/a', 'http://a.test/b']);
    await expect(listFiles([join(sub, 'notes.md')])).rejects.toBeInstanceOf(ConfigError);
    await expect(listFiles([join(dir, 'absent.txt')])).rejects.toThrow(/not found/);
    await expect(listFiles(['absent.txt'])).rejects.toThrow(`(looked for ${join(process.cwd(), 'absent.txt')})`);
    await expect(listFiles([])).rejects.toBeInstanceOf(ConfigError);
  });

  it('refuses a missing list before the output folder is made', async () => {
    const out = join(dir, 'never-made');
    await expect(runIngest({ lists: [join(dir, 'absent.txt')], out })).rejects.toThrow(/URL list not found/);
    await expect(readFile(out)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('classifies junk URLs', () => {
    expect(checkUrl('https://a.test/x.jpg')).toBeNull();
    expect(checkUrl('file:///etc/passwd')).toBe('url_scheme');
    expect(checkUrl('javascript:alert(1)')).toBe('url_scheme');
    expect(checkUrl('not a url')).toBe('url_invalid');
    expect(checkUrl(`http://a.test/${'x'.repeat(9000)}`)).toBe('url_too_long');
    expect(columnName('similarity score')).toBe('similarity_score');
    expect(columnName('key')).toBe('extra_key');
  });
});

// One table of text cases, written in every format (plain and gzipped) and read back: the same bytes must give
// the same rows whatever the format. A piece is text (escaped as the format escapes), raw bytes written as they
// are, or a lone surrogate (JSON spells it `\ud800`; byte formats hold the ED A0 80 a WTF-8 writer emits).
type Piece = string | Uint8Array | { lone: number };
interface TextCase {
  name: string;
  rows: Array<{ url: Piece[]; caption: Piece[] }>;
  /** How the file is framed: parquet has no lines or byte order marks, so framing cases skip it. */
  framing?: { bom?: 'utf-8' | 'utf-16le' | 'utf-16be'; eol?: string };
  /** txt has no empty rows (a blank line is no row), so cases about empty cells skip it. */
  notTxt?: boolean;
  expect: Array<{ url: string; caption: string | null; bad?: string }>;
}

const TEXT_CASES: TextCase[] = [
  {
    name: 'plain text',
    rows: [{ url: ['http://h.test/a.jpg'], caption: ['hello, world'] }],
    expect: [{ url: 'http://h.test/a.jpg', caption: 'hello, world' }],
  },
  ...(['utf-8', 'utf-16le', 'utf-16be'] as const).map((bom) => ({
    name: `${bom} byte order mark`,
    rows: [{ url: ['http://h.test/é.jpg'], caption: ['café ☕'] }],
    framing: { bom },
    expect: [{ url: 'http://h.test/é.jpg', caption: 'café ☕' }],
  })),
  {
    name: 'CRLF line ends',
    rows: [{ url: ['http://h.test/a.jpg'], caption: ['c'] }],
    framing: { eol: '\r\n' },
    expect: [{ url: 'http://h.test/a.jpg', caption: 'c' }],
  },
  {
    name: 'non-ASCII kept exactly',
    rows: [{ url: ['http://h.test/ñ/🙂.jpg'], caption: ['naïve 🙂 日本'] }],
    expect: [{ url: 'http://h.test/ñ/🙂.jpg', caption: 'naïve 🙂 日本' }],
  },
  {
    name: 'invalid UTF-8 in a caption',
    rows: [{ url: ['http://h.test/a.jpg'], caption: ['caf', new Uint8Array([0xff]), 'e'] }],
    expect: [{ url: 'http://h.test/a.jpg', caption: 'caf\uFFFDe' }],
  },
  {
    name: 'invalid UTF-8 in a URL',
    rows: [{ url: ['http://h.test/', new Uint8Array([0xc3]), '.jpg'], caption: ['c'] }],
    expect: [{ url: 'http://h.test/\uFFFD.jpg', caption: 'c', bad: 'url_encoding' }],
  },
  {
    name: 'lone surrogate in a caption',
    rows: [{ url: ['http://h.test/a.jpg'], caption: ['a', { lone: 0xd800 }, 'b'] }],
    expect: [{ url: 'http://h.test/a.jpg', caption: 'a\uFFFDb' }],
  },
  {
    name: 'lone surrogate in a URL',
    rows: [{ url: ['http://h.test/', { lone: 0xdc00 }], caption: ['c'] }],
    expect: [{ url: 'http://h.test/\uFFFD', caption: 'c', bad: 'url_encoding' }],
  },
  {
    name: 'caption opening with a quote',
    rows: [{ url: ['http://h.test/a.jpg'], caption: ['"quoted" start'] }],
    expect: [{ url: 'http://h.test/a.jpg', caption: '"quoted" start' }],
  },
  {
    name: 'spaces and controls around a URL (the URL standard strips them)',
    rows: [{ url: ['  http://h.test/sp.jpg \u0001 '], caption: ['c'] }],
    expect: [{ url: 'http://h.test/sp.jpg', caption: 'c' }],
  },
  {
    name: 'empty URL',
    rows: [{ url: [''], caption: ['c'] }],
    notTxt: true,
    expect: [{ url: '', caption: 'c', bad: 'url_missing' }],
  },
];
/** Every case ends with this row, which must come through whatever came before it. */
const LAST = { url: ['http://h.test/last.jpg'], caption: ['last'] };
const LAST_ROW = { url: 'http://h.test/last.jpg', caption: 'last' };

const FORMATS = ['txt', 'csv', 'tsv', 'jsonl', 'parquet'] as const;

function pieceBytes(
  piece: Piece,
  escape: (s: string) => string,
  encode: (s: string) => Buffer,
  jsonl: boolean,
): Buffer {
  if (typeof piece === 'string') return encode(escape(piece));
  if (piece instanceof Uint8Array) return Buffer.from(piece);
  if (jsonl) return encode(`\\u${piece.lone.toString(16)}`);
  return Buffer.from([0xe0 | (piece.lone >> 12), 0x80 | ((piece.lone >> 6) & 0x3f), 0x80 | (piece.lone & 0x3f)]);
}

function encoder(bom: string | undefined): (s: string) => Buffer {
  if (bom === 'utf-16le') return (s) => Buffer.from(s, 'utf16le');
  if (bom === 'utf-16be') return (s) => Buffer.from(s, 'utf16le').swap16();
  return (s) => Buffer.from(s, 'utf8');
}

/** The case as a file of `format`. */
async function textFile(c: TextCase, format: (typeof FORMATS)[number]): Promise<Uint8Array> {
  const rows = [...c.rows, LAST];
  if (format === 'parquet') {
    const cell = (pieces: Piece[]) =>
      pieces.every((p) => typeof p === 'string')
        ? pieces.join('')
        : Buffer.concat(pieces.map((p) => pieceBytes(p, (s) => s, encoder(undefined), false)));
    const { parquetWriteBuffer } = await import('hyparquet-writer');
    return new Uint8Array(
      parquetWriteBuffer({
        columnData: [
          { name: 'url', data: rows.map((r) => cell(r.url)), type: 'STRING' },
          { name: 'caption', data: rows.map((r) => cell(r.caption)), type: 'STRING' },
        ],
      }),
    );
  }
  const encode = encoder(c.framing?.bom);
  const eol = encode(c.framing?.eol ?? '\n');
  const field = (pieces: Piece[], escape: (s: string) => string) =>
    Buffer.concat(pieces.map((p) => pieceBytes(p, escape, encode, format === 'jsonl')));
  const quoted = (pieces: Piece[]) =>
    Buffer.concat([encode('"'), field(pieces, (s) => s.replaceAll('"', '""')), encode('"')]);
  const jsonString = (pieces: Piece[]) =>
    Buffer.concat([encode('"'), field(pieces, (s) => JSON.stringify(s).slice(1, -1)), encode('"')]);
  const lines: Buffer[] = [];
  if (format === 'csv') lines.push(encode('url,caption'));
  if (format === 'tsv') lines.push(encode('url\tcaption'));
  for (const r of rows) {
    if (format === 'txt') lines.push(field(r.url, (s) => s));
    if (format === 'csv') lines.push(Buffer.concat([quoted(r.url), encode(','), quoted(r.caption)]));
    if (format === 'tsv') lines.push(Buffer.concat([field(r.url, (s) => s), encode('\t'), field(r.caption, (s) => s)]));
    if (format === 'jsonl')
      lines.push(
        Buffer.concat([
          encode('{"url":'),
          jsonString(r.url),
          encode(',"caption":'),
          jsonString(r.caption),
          encode('}'),
        ]),
      );
  }
  const bom = c.framing?.bom ? encode('\uFEFF') : Buffer.alloc(0);
  return Buffer.concat([bom, ...lines.flatMap((l) => [l, eol])]);
}

const oneReplacement = (s: string | null) => s?.replace(/\uFFFD+/g, '\uFFFD') ?? null;

describe('one text rule in every list format', () => {
  for (const c of TEXT_CASES) {
    for (const format of FORMATS) {
      if ((c.framing && format === 'parquet') || (c.notTxt && format === 'txt')) continue;
      for (const gz of format === 'parquet' ? [false] : [false, true]) {
        it(`${c.name}: ${format}${gz ? '.gz' : ''}`, async () => {
          const bytes = await textFile(c, format);
          const name = `${c.name.replace(/\W+/g, '-')}.${format}${gz ? '.gz' : ''}`;
          const got = await rows([await file(name, gz ? gzipSync(bytes) : bytes)]);
          const want = [...c.expect, LAST_ROW].map((e) => ({ ...e, caption: format === 'txt' ? null : e.caption }));
          expect(
            got.map((r) => ({
              url: oneReplacement(r.url),
              caption: oneReplacement(r.caption),
              ...(r.bad ? { bad: r.bad } : {}),
            })),
          ).toEqual(want);
          expect(got.map((r) => r.index)).toEqual(want.map((_, i) => i));
        });
      }
    }
  }
});

describe('a bad row never fails the list', () => {
  const good = (n: number) => `http://h.test/${n}.jpg`;

  it('keeps a CSV row with a 1.2 MB caption, cut to MAX_FIELD_LENGTH, and every row after it', async () => {
    const huge = 'w'.repeat(1_200_000);
    const path = await file(
      'huge.csv',
      `url,caption,license\n${good(0)},a\n${good(1)},"${huge}",cc\n${good(2)},${huge}\n${good(3)},d\n`,
    );
    const stats: ListStats = { rows: 0, bad: {}, truncated: 0 };
    const got = await rows([path], {}, stats);
    expect(got.map((r) => [r.index, r.url, r.bad ?? null, r.caption?.length])).toEqual([
      [0, good(0), null, 1],
      [1, good(1), null, MAX_FIELD_LENGTH],
      [2, good(2), null, MAX_FIELD_LENGTH],
      [3, good(3), null, 1],
    ]);
    expect(got[1]).toMatchObject({ truncated: true, extra: { license: 'cc' } });
    expect(stats).toEqual({ rows: 4, bad: {}, truncated: 2 });
  });

  it('costs one CSV row for an unclosed quote, mid-file or at the end', async () => {
    const text = `url,caption\n${good(0)},"unclosed\n${good(1)},fine\n${good(2)},"quoted, with comma"\n${good(3)},"open at the end\n`;
    const got = await rows([await file('unclosed.csv', text)]);
    expect(got.map((r) => [r.index, r.url, r.caption, r.bad ?? null])).toEqual([
      [0, '', null, 'bad_row'],
      [1, good(1), 'fine', null],
      [2, good(2), 'quoted, with comma', null],
      [3, '', null, 'bad_row'],
    ]);
  });

  it('reads CSV quoting as RFC 4180 has it, with bare quotes in unquoted fields as text', async () => {
    const text = `url,caption\r\n"${good(0)}","two\r\nlines, ""quoted"""\r\n${good(1)},a 12" screen\r\n\r\n${good(2)},"a"b\r\n${good(3)},\r\n${good(4)}\r\n`;
    const got = await rows([await file('rfc.csv', text)]);
    expect(got.map((r) => [r.index, r.url, r.caption, r.bad ?? null])).toEqual([
      [0, good(0), 'two\nlines, "quoted"', null],
      [1, good(1), 'a 12" screen', null],
      [2, '', null, 'bad_row'], // a closing quote followed by text: ambiguous, so not guessed at
      [3, good(3), null, null],
      [4, good(4), null, null], // a short record: its missing fields are null
    ]);
  });

  it('ends txt, CSV and TSV lines at a lone CR too (universal newlines); JSONL only at LF or CRLF', async () => {
    const urls = async (name: string, text: string) =>
      (await rows([await file(name, text)])).map((r) => [r.url, r.caption, r.bad ?? null]);
    expect(await urls('cr.txt', `${good(0)}\r${good(1)}\r\n${good(2)}`)).toEqual(
      [0, 1, 2].map((i) => [good(i), null, null]),
    );
    expect(await urls('cr.csv', `url,caption\r${good(0)},a\r${good(1)},"two\rlines"\r\n${good(2)},c`)).toEqual([
      [good(0), 'a', null],
      [good(1), 'two\nlines', null],
      [good(2), 'c', null],
    ]);
    expect(await urls('cr.tsv', `url\tcaption\r${good(0)}\ta\r${good(1)}\tb`)).toEqual([
      [good(0), 'a', null],
      [good(1), 'b', null],
    ]);
    // In JSON a CR is whitespace: the record is whole, and its line ends at LF.
    expect(await urls('cr.jsonl', `{"url":"${good(0)}",\r"caption":"c"}\n{"url":"${good(1)}"}`)).toEqual([
      [good(0), 'c', null],
      [good(1), null, null],
    ]);
    // A CRLF split between two reads (64 KiB apart) is one line end, not a CR and then an empty line.
    const head = `url,pad,caption\n${good(0)},`;
    const pad = 'x'.repeat(65535 - head.length - 2); // the quote's ',"' then the CR end the first 64 KiB
    expect(await urls('split.csv', `${head}${pad},"\r\nrest"\n${good(1)},,d`)).toEqual([
      [good(0), '\nrest', null],
      [good(1), 'd', null],
    ]);
  });

  it('reads a quoted CSV field over any number of lines as RFC 4180 does: its lines are never rows', async () => {
    // 70 lines, one of them shaped like a row: Python's csv and pandas read one caption, so must this.
    const lines = Array.from({ length: 70 }, (_, i) => (i === 35 ? `${good(9)},injected caption` : `line ${i}`));
    const caption = lines.join('\n');
    const got = await rows([await file('lines.csv', `url,caption\n${good(0)},"${caption}"\n${good(1)},next\n`)]);
    expect(got.map((r) => [r.index, r.url, r.caption, r.bad ?? null])).toEqual([
      [0, good(0), caption, null],
      [1, good(1), 'next', null],
    ]);
  });

  it('costs one CSV row for a quote never closed, however many lines follow it', async () => {
    const after = Array.from({ length: 100 }, (_, i) => good(100 + i));
    const got = await rows([await file('open.csv', `url,caption\n${good(0)},"never closed\n${after.join('\n')}\n`)]);
    expect(got[0]).toMatchObject({ index: 0, url: '', bad: 'bad_row' });
    expect(got.slice(1).map((r) => r.url)).toEqual(after); // read again as rows of their own
    expect(got.map((r) => r.index)).toEqual(got.map((_, i) => i));
  });

  it('never lets a TSV quote swallow rows: TSV has no quoting', async () => {
    const got = await rows([
      await file('quote.tsv', `url\tcaption\n${good(0)}\t"opens\n${good(1)}\tb "c"\n"${good(2)}"\tquoted url\n`),
    ]);
    expect(got.map((r) => [r.url, r.caption, r.bad ?? null])).toEqual([
      [good(0), '"opens', null],
      [good(1), 'b "c"', null],
      [`"${good(2)}"`, 'quoted url', 'url_invalid'],
    ]);
  });

  for (const format of ['txt', 'csv', 'tsv', 'jsonl'] as const) {
    it(`takes a ${format} line over MAX_LINE_LENGTH as one row_too_long row, and reads on`, async () => {
      const line = (url: string) =>
        format === 'jsonl'
          ? JSON.stringify({ url, caption: 'c' })
          : format === 'txt'
            ? url
            : `${url}${format === 'csv' ? ',' : '\t'}c`;
      const header = format === 'csv' ? 'url,caption\n' : format === 'tsv' ? 'url\tcaption\n' : '';
      const long = line(`http://h.test/${'x'.repeat(MAX_LINE_LENGTH)}`);
      const got = await rows([
        await file(`long.${format}.gz`, gzipSync(`${header}${line(good(0))}\n${long}\n${line(good(1))}\n${long}`)),
      ]);
      expect(got.map((r) => [r.index, r.url, r.bad ?? null])).toEqual([
        [0, good(0), null],
        [1, '', 'row_too_long'],
        [2, good(1), null],
        [3, '', 'row_too_long'],
      ]);
    });
  }

  it('keeps the rows of a gzip cut short, then counts one list_corrupt row; refuses a .gz that is not gzip', async () => {
    const body = Array.from({ length: 3000 }, (_, i) => `${good(i)}\n`).join('');
    const zipped = gzipSync(body);
    const got = await rows([await file('cut.txt.gz', zipped.subarray(0, zipped.length - 40))]);
    expect(got.slice(0, -1).map((r) => r.url)).toEqual(Array.from({ length: got.length - 1 }, (_, i) => good(i)));
    expect(got.at(-1)).toMatchObject({ index: got.length - 1, url: '', bad: 'list_corrupt' });
    expect(got.length).toBeGreaterThan(2000);
    await expect(rows([await file('fake.txt.gz', body)])).rejects.toThrow(
      /URL list .*fake\.txt\.gz is not a gzip file: it does not open with a gzip member header/,
    );
  });

  it('counts jsonl rows without the URL key, and refuses a URL column no object has', async () => {
    const got = await rows([
      await file(
        'keys.jsonl',
        `{"caption":"no url"}\n{"url":"${good(1)}"}\n{"url":null}\n{"url":42}\n"str"\n{"url":"http://h.test/\\ud800"}\n`,
      ),
    ]);
    expect(got.map((r) => [r.index, r.bad ?? null])).toEqual([
      [0, 'url_missing'],
      [1, null],
      [2, 'url_missing'],
      [3, 'url_invalid'],
      [4, 'bad_row'],
      [5, 'url_encoding'],
    ]);
    await expect(rows([await file('nokey.jsonl', '{"link":"http://h.test/a"}\nnot json\n')])).rejects.toThrow(
      /column "url" not found in any object/,
    );
  });

  it('bounds the text kept per row: MAX_FIELD_LENGTH per cell, MAX_ROW_TEXT per row, later columns cut first', async () => {
    const cells = Array.from({ length: 8 }, (_, i) => `c${i}`);
    const big = 'y'.repeat(MAX_FIELD_LENGTH + 5);
    const got = await rows([
      await file('wide.csv', `url,${cells.join(',')}\n${good(0)},${cells.map(() => big).join(',')}\n`),
    ]);
    const lengths = cells.map((c) => got[0]!.extra[c]!.length);
    expect(lengths.reduce((a, b) => a + b)).toBe(MAX_ROW_TEXT);
    expect(lengths).toEqual(
      cells.map((_, i) => Math.max(0, Math.min(MAX_FIELD_LENGTH, MAX_ROW_TEXT - i * MAX_FIELD_LENGTH))),
    );
  });

  it('keeps a cut surrogate pair whole: no lone half at the cut', async () => {
    const caption = `${'a'.repeat(MAX_FIELD_LENGTH - 1)}🙂tail`;
    const [row] = await rows([await file('pair.jsonl', `${JSON.stringify({ url: good(0), caption })}\n`)]);
    expect(row!.caption).toBe('a'.repeat(MAX_FIELD_LENGTH - 1));
  });

  it('gives every row, bad or good, its own stable index, so units are the same on every read', async () => {
    const lines = [
      'url,caption',
      `${good(0)},a`,
      `${good(1)},"open`,
      `${good(2)},"b"c`,
      `javascript:x,d`,
      `${good(3)},e`,
      `,f`,
      `${good(4)},g`,
    ];
    const path = await file('stable.csv', `${lines.join('\n')}\n`);
    const units = async () => {
      const out: Array<[number, string[]]> = [];
      for await (const [unit, members] of groupUnits(readUrlLists([path]), 3, 0))
        out.push([unit, members.map((r) => r.bad ?? r.url)]);
      return out;
    };
    const first = await units();
    expect(first).toEqual([
      [0, [good(0), 'bad_row', 'bad_row']],
      [1, ['url_scheme', good(3), 'url_missing']],
      [2, [good(4)]],
    ]);
    expect(await units()).toEqual(first);
  });

  it('reports an empty list as zero rows: no rows, a header alone, blank lines alone', async () => {
    for (const [name, text] of [
      ['empty.txt', ''],
      ['header.csv', 'url,caption\n'],
      ['blank.jsonl', '\n\n \n'],
      ['bom.tsv', '\uFEFFurl\tcaption\r\n'],
    ]) {
      const stats: ListStats = { rows: 0, bad: {}, truncated: 0 };
      expect(await rows([await file(name!, text!)], {}, stats)).toEqual([]);
      expect(stats.rows).toBe(0);
    }
  });

  it('counts rows by reason in ListStats', async () => {
    const stats: ListStats = { rows: 0, bad: {}, truncated: 0 };
    await rows([await file('stats.jsonl', `{"url":"${good(0)}"}\nnope\n{"url":"ftp://h.test/x"}\n`)], {}, stats);
    expect(stats).toEqual({ rows: 3, bad: { bad_row: 1, url_scheme: 1 }, truncated: 0 });
  });

  it('refuses what spoils a whole list: an unreadable header, too many columns', async () => {
    await expect(rows([await file('badhead.csv', 'url,"cap\n')])).rejects.toThrow(
      /cannot read the header of URL list .*badhead\.csv \(bad_row\)/,
    );
    await expect(
      rows([await file('manycols.tsv', `url\t${Array.from({ length: 1100 }, (_, i) => `c${i}`).join('\t')}\n`)]),
    ).rejects.toThrow(/1101 columns; at most 1024/);
  });
});

/**
 * Compressors for the codecs Node 20's zlib lacks, as valid streams that store the bytes: a ZSTD frame of raw
 * blocks (RFC 8878), an LZ4 block of literals only, and Hadoop's LZ4 framing of one (what Parquet's LZ4 means).
 * Real compressed streams of each codec are the decoders' own tests (hyparquet-compressors).
 */
function zstdStored(bytes: Uint8Array): Uint8Array {
  const out = [0x28, 0xb5, 0x2f, 0xfd, 0xa0, ...u32le(bytes.length)]; // single segment, 4-byte content size
  for (let at = 0; at === 0 || at < bytes.length; at += 0x20000) {
    const block = bytes.subarray(at, at + 0x20000);
    const header = (block.length << 3) | (at + block.length >= bytes.length ? 1 : 0); // raw block, last flag
    out.push(header & 0xff, (header >> 8) & 0xff, header >> 16, ...block);
  }
  return new Uint8Array(out);
}
function lz4Literals(bytes: Uint8Array): Uint8Array {
  const out = [Math.min(bytes.length, 15) << 4];
  if (bytes.length >= 15) {
    let rest = bytes.length - 15;
    for (; rest >= 255; rest -= 255) out.push(255);
    out.push(rest);
  }
  return new Uint8Array([...out, ...bytes]);
}
function lz4Hadoop(bytes: Uint8Array): Uint8Array {
  const block = lz4Literals(bytes);
  return new Uint8Array([...u32le(bytes.length).reverse(), ...u32le(block.length).reverse(), ...block]);
}
function u32le(n: number): number[] {
  return [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24];
}

const COMPRESSORS = {
  GZIP: (b: Uint8Array) => new Uint8Array(gzipSync(b)),
  BROTLI: (b: Uint8Array) => new Uint8Array(brotliCompressSync(b)),
  ZSTD: zstdStored,
  LZ4: lz4Hadoop,
  LZ4_RAW: lz4Literals,
  LZO: (b: Uint8Array) => b, // no decoder reads it: stored bytes under its name
};

describe('parquet lists', () => {
  const url = (n: number) => `http://h.test/p${n}.jpg`;
  const N = 5;

  async function parquet(name: string, codec: keyof typeof COMPRESSORS | 'SNAPPY') {
    const { parquetWriteBuffer } = await import('hyparquet-writer');
    const bytes = parquetWriteBuffer({
      codec,
      compressors: COMPRESSORS,
      rowGroupSize: 2, // several groups, each its own pages
      columnData: [
        { name: 'url', data: Array.from({ length: N }, (_, i) => url(i)), type: 'STRING' },
        { name: 'caption', data: Array.from({ length: N }, (_, i) => (i === 1 ? null : `c${i}`)), type: 'STRING' },
        { name: 'n', data: Array.from({ length: N }, (_, i) => i), type: 'INT32' },
      ],
    });
    return file(name, new Uint8Array(bytes));
  }

  it.each(['GZIP', 'BROTLI', 'ZSTD', 'LZ4', 'LZ4_RAW'] as const)('reads every row of a %s list', async (codec) => {
    const got = await rows([await parquet(`${codec}.parquet`, codec)]);
    expect(got).toEqual(
      Array.from({ length: N }, (_, i) => ({
        index: i,
        url: url(i),
        caption: i === 1 ? null : `c${i}`,
        sourcePage: null,
        extra: { n: String(i) },
      })),
    );
  });

  it('refuses a codec it cannot read (LZO) as one error naming the file and the codec', async () => {
    const path = await parquet('lzo.parquet', 'LZO');
    await expect(rows([path])).rejects.toThrow(ConfigError);
    await expect(rows([path])).rejects.toThrow(/lzo\.parquet is compressed with LZO, which cannot be read/);
  });

  it('refuses a corrupt or truncated file as one error naming it: no row becomes bad_row, no unit is committed', async () => {
    const { parquetMetadata } = await import('hyparquet');
    const good = new Uint8Array(await readFile(await parquet('whole.parquet', 'SNAPPY')));
    const pageOf = (group: number) => {
      const meta = parquetMetadata(good.buffer).row_groups[group]!.columns[0]!.meta_data!;
      return Number(meta.dictionary_page_offset ?? meta.data_page_offset);
    };
    // A later group's page header spoilt: the groups before it read well, the file does not.
    const header = good.slice();
    header.fill(0xff, pageOf(1), pageOf(1) + 12);
    // A page whose compressed bytes are cut: the decompressor fails.
    const { parquetWriteBuffer } = await import('hyparquet-writer');
    const cut = parquetWriteBuffer({
      codec: 'GZIP',
      compressors: { GZIP: (b: Uint8Array) => COMPRESSORS.GZIP(b).subarray(0, 12) },
      columnData: [{ name: 'url', data: [url(0), url(1)], type: 'STRING' }],
    });
    const cases: Array<[string, Uint8Array, RegExp]> = [
      [
        'header.parquet',
        header,
        /cannot read parquet URL list .*header\.parquet: corrupt page in row group 1 \(rows 2 to 3\), column "url": /,
      ],
      [
        'cut.parquet',
        new Uint8Array(cut),
        /cannot read parquet URL list .*cut\.parquet: corrupt page in row group 0 \(rows 0 to 1\), column "url": /,
      ],
      ['truncated.parquet', good.subarray(0, good.length - 30), /cannot read parquet URL list .*truncated\.parquet: /],
    ];
    for (const [name, bytes, message] of cases) {
      const path = await file(name, bytes);
      await expect(rows([path])).rejects.toThrow(message);
      const out = join(dir, `ds-${name}`);
      const ingest = runIngest({ lists: [path], out, unitSize: 2 });
      await expect(ingest).rejects.toThrow(ConfigError);
      await expect(ingest).rejects.toThrow(message);
      expect(await listUnits(await openStore(out))).toEqual([]);
    }
  });
});
