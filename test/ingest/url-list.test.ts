// URL lists in every format, junk rows kept as rows (so they are counted), deterministic indices.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { checkUrl, columnName, extraColumnsOf, listFiles, readUrlLists } from '../../src/ingest/url-list.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-lists-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function rows(files: string[], options = {}) {
  const out = [];
  for await (const row of readUrlLists(await listFiles(files), options)) out.push(row);
  return out;
}

describe('URL lists', () => {
  it('reads txt with comments and blank lines, and gzipped txt', async () => {
    const text = '# a comment\nhttp://a.test/1.jpg\n\n  https://a.test/2.jpg  \njavascript:alert(1)\n';
    await writeFile(join(dir, 'l.txt'), text);
    await writeFile(join(dir, 'l2.txt.gz'), gzipSync(text));
    const got = await rows([join(dir, 'l.txt'), join(dir, 'l2.txt.gz')]);
    expect(got.map((r) => [r.index, r.url])).toEqual([
      [0, 'http://a.test/1.jpg'], [1, 'https://a.test/2.jpg'], [2, 'javascript:alert(1)'],
      [3, 'http://a.test/1.jpg'], [4, 'https://a.test/2.jpg'], [5, 'javascript:alert(1)'],
    ]);
  });

  it('reads csv and tsv with quoted fields, choosing columns by name and keeping the rest', async () => {
    await writeFile(join(dir, 'l.csv'), 'URL,TEXT,license\n"http://a.test/x.jpg","a ""quoted"", caption",cc-by\nhttp://a.test/y.jpg,,\n');
    const got = await rows([join(dir, 'l.csv')], { urlCol: 'URL', captionCol: 'TEXT' });
    expect(got).toEqual([
      { index: 0, url: 'http://a.test/x.jpg', caption: 'a "quoted", caption', sourcePage: null, extra: { license: 'cc-by' } },
      { index: 1, url: 'http://a.test/y.jpg', caption: null, sourcePage: null, extra: { license: '' } },
    ]);
    await writeFile(join(dir, 'l.tsv'), 'url\tcaption\nhttp://a.test/t.jpg\thello\n');
    expect((await rows([join(dir, 'l.tsv')]))[0]).toMatchObject({ url: 'http://a.test/t.jpg', caption: 'hello' });
    await expect(rows([join(dir, 'l.csv')])).rejects.toThrow(/column "url" not found .*URL, TEXT, license/);
    // A source_page column (crawls write one) fills the shard's own column, not an extra one.
    await writeFile(join(dir, 'p.csv'), 'url,source_page,site\nhttp://a.test/s.jpg,http://a.test/page,a\n');
    expect((await rows([join(dir, 'p.csv')]))[0]).toMatchObject({ sourcePage: 'http://a.test/page', extra: { site: 'a' } });
  });

  it('reads jsonl, counting junk lines as rows', async () => {
    await writeFile(join(dir, 'l.jsonl'), '{"url":"http://a.test/j.jpg","caption":"c","width":640}\nnot json\n[1,2]\n{"url":"http://a.test/k.jpg"}\n');
    const got = await rows([join(dir, 'l.jsonl')]);
    expect(got.map((r) => [r.url, r.caption, r.extra])).toEqual([
      ['http://a.test/j.jpg', 'c', { extra_width: '640' }],
      ['', null, {}],
      ['', null, {}],
      ['http://a.test/k.jpg', null, {}],
    ]);
    expect(await extraColumnsOf(await listFiles([join(dir, 'l.jsonl')]))).toEqual(['extra_width']);
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
    await import('node:fs/promises').then((fs) => fs.mkdir(sub));
    await writeFile(join(sub, 'b.txt'), 'http://a.test/b\n');
    await writeFile(join(sub, 'a.txt'), 'http://a.test/a\n');
    await writeFile(join(sub, 'notes.md'), 'ignored');
    expect((await rows([sub])).map((r) => r.url)).toEqual(['http://a.test/a', 'http://a.test/b']);
    await expect(listFiles([join(sub, 'notes.md')])).rejects.toBeInstanceOf(ConfigError);
    await expect(listFiles([join(dir, 'absent.txt')])).rejects.toThrow(/not found/);
    await expect(listFiles([])).rejects.toBeInstanceOf(ConfigError);
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
