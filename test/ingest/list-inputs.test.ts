/**
 * URL list inputs as other tools write them (src/ingest/url-list.ts, list-text.ts, list-formats.ts): a `.gz` read
 * as `gzip -d` reads it (RFC 1952), list folders as Spark and Hadoop write them, and empty or tiny files.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { constants, gzipSync, inflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { runIngest } from '../../src/ingest/local.js';
import { listFiles, readUrlLists, type ListStats, type UrlRow } from '../../src/ingest/url-list.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-list-inputs-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes `bytes` to `name` under the test folder (making its folders), and returns its path. */
async function put(name: string, bytes: string | Uint8Array = ''): Promise<string> {
  const path = join(dir, name);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, bytes);
  return path;
}

async function rows(paths: string[], stats?: ListStats): Promise<UrlRow[]> {
  const out: UrlRow[] = [];
  for await (const row of readUrlLists(await listFiles(paths), {}, stats)) out.push(row);
  return out;
}

const url = (host: string, i: number) => `http://${host}.test/${i}.jpg`;
const text = (host: string, n: number) => Array.from({ length: n }, (_, i) => `${url(host, i)}\n`).join('');

/** The URLs of `rows`, checking that indices run 0, 1, 2...; list_corrupt rows as `!corrupt`. */
function urls(got: UrlRow[]): string[] {
  expect(got.map((r) => r.index)).toEqual(got.map((_, i) => i));
  return got.map((r) => (r.bad === 'list_corrupt' ? '!corrupt' : r.url));
}

describe('a .gz list is read as gzip -d reads it: every row of every whole member kept', () => {
  for (const n of [20, 200_000]) {
    const first = gzipSync(text('a', n));
    const second = gzipSync(text('b', n));
    const all = Array.from({ length: n }, (_, i) => url('a', i));
    /** The whole lines a member cut at `at` holds: all of its data that inflates, less the line the cut splits. */
    const cutLines = (at: number) => {
      const decoded = inflateRawSync(second.subarray(10, at), { finishFlush: constants.Z_SYNC_FLUSH }).toString();
      return decoded.split('\n').slice(0, -1);
    };
    const crc = Buffer.from(first);
    crc[crc.length - 8]! ^= 0x40;
    const cases: Array<[string, Buffer, string[]]> = [
      [
        'junk text after the member',
        Buffer.concat([first, Buffer.from('garbage trailing bytes')]),
        [...all, '!corrupt'],
      ],
      ['one byte after the member', Buffer.concat([first, Buffer.from('A')]), [...all, '!corrupt']],
      ['a newline after the member', Buffer.concat([first, Buffer.from('\n')]), [...all, '!corrupt']],
      ['zeros after the member (gzip ignores them silently)', Buffer.concat([first, Buffer.alloc(512)]), all],
      ['a second whole member', Buffer.concat([first, second]), [...all, ...text('b', n).split('\n').slice(0, -1)]],
      [
        'a second member cut short',
        Buffer.concat([first, second.subarray(0, second.length >> 1)]),
        [...all, ...cutLines(second.length >> 1), '!corrupt'],
      ],
      ['a second member cut in its header', Buffer.concat([first, second.subarray(0, 5)]), [...all, '!corrupt']],
      ['a flipped CRC', crc, [...all, '!corrupt']],
      ['a cut trailer', first.subarray(0, first.length - 3), [...all, '!corrupt']],
    ];
    // The large list only where the loss showed (node:zlib's gunzip dropped the output of its failing call).
    const large = [
      'junk text after the member',
      'one byte after the member',
      'a second member cut short',
      'a flipped CRC',
    ];
    for (const [name, bytes, expected] of cases.filter(([name]) => n < 1000 || large.includes(name))) {
      it(`${n} rows, then ${name}`, async () => {
        const stats: ListStats = { rows: 0, bad: {}, truncated: 0 };
        const got = urls(await rows([await put(`gz-${n}/${name.replace(/\W+/g, '-')}.txt.gz`, bytes)], stats));
        expect(got.length).toBe(expected.length);
        expect(got).toEqual(expected);
        expect(stats.bad.list_corrupt ?? 0).toBe(expected.at(-1) === '!corrupt' ? 1 : 0);
      });
    }
  }

  it('refuses only a .gz that is not gzip at all: one damaged before its first row is a damaged list', async () => {
    const path = await put('gz-none/not-gzip.txt.gz', 'http://a.test/1.jpg\n');
    await expect(rows([path])).rejects.toThrow(ConfigError);
    await expect(rows([path])).rejects.toThrow(/URL list .*not-gzip\.txt\.gz is not a gzip file/);
    // A download cut in its header: gzip, damaged; zero rows, then list_corrupt, as any cut download.
    const member = gzipSync(text('a', 3000));
    expect(urls(await rows([await put('gz-none/cut-header.txt.gz', member.subarray(0, 5))]))).toEqual(['!corrupt']);
  });

  it('keeps the rows decoded before corrupt data early in a member (gzip -d keeps them too)', async () => {
    // Corrupt DEFLATE data 10% into a 3000-row list: zlib's default 16 KiB output chunk held all rows before it.
    const bytes = Buffer.from(gzipSync(text('a', 3000)));
    const at = Math.floor(bytes.length * 0.1);
    bytes[at]! ^= 0xff;
    bytes[at + 1]! ^= 0x55;
    const got = urls(await rows([await put('gz-early/early.txt.gz', bytes)]));
    expect(got.at(-1)).toBe('!corrupt');
    expect(got.slice(0, -1)).toEqual(Array.from({ length: got.length - 1 }, (_, i) => url('a', i)));
    expect(got.length).toBeGreaterThan(100);
  });

  it('reads a 0-byte .gz as an empty list, as a 0-byte .txt, in a folder or alone', async () => {
    await put('gz-empty/a.txt', text('a', 2));
    const empty = await put('gz-empty/b.txt.gz');
    expect(urls(await rows([join(dir, 'gz-empty')]))).toEqual([url('a', 0), url('a', 1)]);
    expect(await rows([empty])).toEqual([]);
    const summary = await runIngest({ lists: [empty], out: join(dir, 'ds-gz-empty') });
    expect(summary.warnings.map((w) => w.code)).toEqual(['empty_list']);
  });
});

describe('list folders, as Spark and Hadoop write them', () => {
  // Refused before any fetch (url_scheme), so a job over them runs offline.
  const url = (host: string, i: number) => `ftp://${host}.test/${i}.jpg`;

  /**
   * `df.write.csv('urls.csv')` and friends: part files with their `.crc` checksums and `_SUCCESS` marker, an
   * unfinished `_temporary/`, a macOS AppleDouble `._` file holding binary junk, nested folders, a README.
   */
  async function sparkFolder(root: string): Promise<void> {
    const csv = (host: string) => `url,caption\n${url(host, 0)},x\n${url(host, 1)},y\n`;
    // Written out of order: the order read is the names', not the disk's.
    await put(`${root}/urls.csv/part-00001-9f2c.csv`, csv('p1'));
    await put(`${root}/urls.csv/part-00000-9f2c.csv`, csv('p0'));
    await put(`${root}/urls.csv/_SUCCESS`);
    await put(`${root}/urls.csv/.part-00000-9f2c.csv.crc`, new Uint8Array([0x63, 0x72, 0x63, 0, 0xff, 0xfe]));
    await put(`${root}/urls.csv/_temporary/0/part-00002-9f2c.csv`, csv('temp'));
    await put(`${root}/other.csv`, csv('other'));
    await put(`${root}/._other.csv`, new Uint8Array([0, 5, 0x16, 7, 0, 2, 0, 0, 0x4d, 0x61, 0x63, 0xff]));
    await put(`${root}/.hidden/h.txt`, `${url('hidden', 0)}\n`);
    await put(`${root}/2024/a.txt.gz`, gzipSync(`${url('a', 0)}\n`));
    await put(`${root}/2024/01/b.txt`, `${url('b', 0)}\n`);
    await put(`${root}/README.md`, 'not a list');
  }

  it('reads a sub-folder as the lists in it, at any depth, in name order, skipping names starting with . or _', async () => {
    await sparkFolder('spark');
    const root = join(dir, 'spark');
    expect(await listFiles([root])).toEqual(
      [
        '2024/01/b.txt',
        '2024/a.txt.gz',
        'other.csv',
        'urls.csv/part-00000-9f2c.csv',
        'urls.csv/part-00001-9f2c.csv',
      ].map((f) => join(root, f)),
    );
    expect(urls(await rows([root]))).toEqual([
      url('b', 0),
      url('a', 0),
      url('other', 0),
      url('other', 1),
      url('p0', 0),
      url('p0', 1),
      url('p1', 0),
      url('p1', 1),
    ]);
    // A path given by name is read whatever its name: hiding applies to what a folder holds.
    expect(await listFiles([join(root, 'urls.csv', '_temporary')])).toEqual([
      join(root, 'urls.csv/_temporary/0/part-00002-9f2c.csv'),
    ]);
  });

  it('resumes a job over the same folder: the same files in the same order make the same job', async () => {
    await sparkFolder('spark-resume');
    const options = { lists: [join(dir, 'spark-resume')], out: join(dir, 'ds-spark-resume'), unitSize: 3 };
    const first = await runIngest(options);
    const again = await runIngest(options);
    expect(first).toMatchObject({ unitsTotal: 3, resumed: false });
    expect(again).toMatchObject({ unitsTotal: 3, unitsSkipped: 3, resumed: true });
  });

  it('refuses what it cannot read as one error naming the path, never a bare errno', async () => {
    await put('broken/a.txt', `${url('a', 0)}\n`);
    await symlink(join(dir, 'broken', 'gone'), join(dir, 'broken', 'b.txt'));
    await expect(listFiles([join(dir, 'broken')])).rejects.toThrow(ConfigError);
    await expect(listFiles([join(dir, 'broken')])).rejects.toThrow(/cannot read URL list .*broken\/b\.txt: ENOENT/);

    await put('loop/a.txt', `${url('a', 0)}\n`);
    await symlink(join(dir, 'loop'), join(dir, 'loop', 'again'));
    await expect(listFiles([join(dir, 'loop')])).rejects.toThrow(/URL list folder .*loop\/again links back to/);

    await put('fifo/a.txt', `${url('a', 0)}\n`);
    execFileSync('mkfifo', [join(dir, 'fifo', 'b.txt')]);
    await expect(listFiles([join(dir, 'fifo')])).rejects.toThrow(/URL list .*fifo\/b\.txt is not a regular file/);

    await put('only-hidden/_SUCCESS');
    await put('only-hidden/.urls.csv.crc');
    await expect(listFiles([join(dir, 'only-hidden')])).rejects.toThrow(
      /no URL lists .* in .*only-hidden \(names starting with \. or _ are skipped\)/,
    );
  });
});

describe('list folders: each file once, in an order that survives a copy', () => {
  it('sorts names by their NFC form, so a folder copied from macOS (NFD names) numbers its rows the same', async () => {
    // é decomposed (e + U+0301) sorts before f by code units; composed (U+00E9), after it.
    for (const [form, e] of [
      ['nfc', '\u00e9'],
      ['nfd', 'e\u0301'],
    ] as const) {
      await put(`${form}/${e}.txt`, `${url('e', 0)}\n`);
      await put(`${form}/f.txt`, `${url('f', 0)}\n`);
      await put(`${form}/d.txt`, `${url('d', 0)}\n`);
    }
    const nfc = urls(await rows([join(dir, 'nfc')]));
    expect(nfc).toEqual([url('d', 0), url('f', 0), url('e', 0)]);
    expect(urls(await rows([join(dir, 'nfd')]))).toEqual(nfc);
  });

  it('reads a file met twice (a path given again, a link to a folder already listed) once, in its first place', async () => {
    await put('twice/real/a.txt', `${url('a', 0)}\n`);
    await put('twice/real/b.txt', `${url('b', 0)}\n`);
    await symlink(join(dir, 'twice', 'real'), join(dir, 'twice', 'zlink'));
    const a = join(dir, 'twice/real/a.txt');
    const b = join(dir, 'twice/real/b.txt');
    expect(await listFiles([join(dir, 'twice')])).toEqual([a, b]);
    expect(await listFiles([b, join(dir, 'twice'), b])).toEqual([b, a]);
    expect(await listFiles([join(dir, 'twice/zlink'), join(dir, 'twice/real')])).toEqual([
      join(dir, 'twice/zlink/a.txt'),
      join(dir, 'twice/zlink/b.txt'),
    ]);
    expect(urls(await rows([a, a]))).toEqual([url('a', 0)]);
  });
});

describe('empty and tiny list files', () => {
  it('reads a 0-byte list of every type, parquet too, as an empty list', async () => {
    for (const type of ['txt', 'csv', 'tsv', 'jsonl', 'parquet']) {
      const stats: ListStats = { rows: 0, bad: {}, truncated: 0 };
      expect(await rows([await put(`empty/empty.${type}`)], stats), type).toEqual([]);
      expect(stats.rows).toBe(0);
    }
    const summary = await runIngest({ lists: [join(dir, 'empty/empty.parquet')], out: join(dir, 'ds-empty') });
    expect(summary.warnings.map((w) => w.code)).toEqual(['empty_list']);
  });

  it('refuses a file too short to be Parquet, or not framed as Parquet, saying so plainly', async () => {
    for (const [name, bytes, message] of [
      ['four.parquet', 'PAR1', /four\.parquet: not a Parquet file: 4 bytes, too short for its footer/],
      ['eleven.parquet', 'PAR1\0\0\0PAR1', /eleven\.parquet: not a Parquet file: 11 bytes, too short for its footer/],
      ['text.parquet', 'url\nhttp://a.test/1.jpg\n', /text\.parquet: not a Parquet file: it does not begin with PAR1/],
      ['nofooter.parquet', 'PAR1\0\0\0\0PAR1', /nofooter\.parquet: corrupt Parquet footer: it claims 0 bytes/],
      ['cut.parquet', 'PAR1 some column data', /cut\.parquet: not a whole Parquet file: it does not end with PAR1/],
    ] as const) {
      const path = await put(`tiny/${name}`, bytes);
      await expect(rows([path])).rejects.toThrow(ConfigError);
      await expect(rows([path])).rejects.toThrow(message);
    }
  });
});
