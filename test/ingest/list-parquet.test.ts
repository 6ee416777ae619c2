/**
 * Damaged parquet lists (src/ingest/list-parquet.ts): every one is its rows or one ConfigError naming the file
 * and what is wrong in Parquet terms, and none leaves a rejection unhandled (which would end the process).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { PARQUET_CODECS, readList } from '../../src/ingest/list-formats.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-list-parquet-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const N = 300;
/** 300 rows in 3 row groups of 100, SNAPPY pages (hyparquet-writer's default): 3498 bytes. */
const good = Buffer.from(
  parquetWriteBuffer({
    columnData: [
      { name: 'url', data: Array.from({ length: N }, (_, i) => `http://h/${i}.jpg`) },
      { name: 'caption', data: Array.from({ length: N }, (_, i) => `c${i}`) },
    ],
    rowGroupSize: 100,
  }),
);

/** `good` with the bytes at `edits` ([offset, value]) replaced, written to `name`. */
async function damaged(name: string, edits: Array<[number, number]>): Promise<string> {
  const bytes = Buffer.from(good);
  for (const [at, value] of edits) bytes[at] = value;
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

/** The rows read, or the error thrown. */
async function read(path: string): Promise<number | Error> {
  let rows = 0;
  try {
    for await (const item of readList(path, 'parquet')) if (item.kind === 'row') rows++;
    return rows;
  } catch (err) {
    return err as Error;
  }
}

/** Rejections nobody handled while `run` ran, and until every timer and I/O callback after it. */
async function unhandledDuring(run: () => Promise<void>): Promise<unknown[]> {
  const unhandled: unknown[] = [];
  const listener = (reason: unknown) => void unhandled.push(reason);
  process.on('unhandledRejection', listener);
  try {
    await run();
    await new Promise((resolve) => setTimeout(resolve, 50));
  } finally {
    process.off('unhandledRejection', listener);
  }
  return unhandled;
}

describe('damaged parquet lists', () => {
  it('reads a damaged file as its rows or one ConfigError, never an unhandled rejection (100 random edits)', async () => {
    // hyparquet starts every column chunk of a group, then plans the next synchronously; a throw there leaves a
    // chunk whose page is corrupt too to reject with nobody awaiting it (these three edits make such a file).
    const cases: Array<Array<[number, number]>> = [
      [
        [1511, 19],
        [3264, 213],
        [3425, 156],
      ],
    ];
    let seed = 12345;
    const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    for (let t = 0; t < 100; t++) {
      const edits: Array<[number, number]> = [];
      for (let k = 1 + Math.floor(random() * 3); k > 0; k--) {
        // Mostly in the footer (metadata), else anywhere in the pages.
        const at =
          random() < 0.7 ? good.length - 9 - Math.floor(random() * 400) : 4 + Math.floor(random() * (good.length - 12));
        edits.push([at, Math.floor(random() * 256)]);
      }
      cases.push(edits);
    }
    const outcomes: Array<number | Error> = [];
    const unhandled = await unhandledDuring(async () => {
      for (const [i, edits] of cases.entries()) outcomes.push(await read(await damaged(`fuzz-${i}.parquet`, edits)));
    });
    expect(unhandled).toEqual([]);
    for (const [i, outcome] of outcomes.entries()) {
      // A file that reads reads whole: no footer count may drop or invent rows.
      if (typeof outcome === 'number') expect(outcome, `case ${i}`).toBe(N);
      else {
        expect(outcome, `case ${i}: ${outcome.message}`).toBeInstanceOf(ConfigError);
        expect(outcome.message).toMatch(/^(cannot read parquet URL list|parquet URL list) .*fuzz-\d+\.parquet/);
      }
    }
    expect(outcomes.filter((o) => typeof o !== 'number').length).toBeGreaterThan(50);
  });

  it('says what is wrong in Parquet terms, keeping the decoder’s words as the cause', async () => {
    for (const [name, edits, message] of [
      // The footer's thrift: a field of the wrong type.
      [
        'footer.parquet',
        [
          [1215, 171],
          [3287, 179],
          [3409, 240],
        ],
        /footer\.parquet: corrupt Parquet footer \(its metadata does not parse\): /,
      ],
      // Row group 1's num_rows 100 -> 28: 72 rows would be dropped.
      [
        'rows.parquet',
        [[3312, 56]],
        /rows\.parquet: corrupt Parquet footer: row group 1 claims 28 rows, but its column "url" holds 100 values/,
      ],
      // A byte of a SNAPPY page in row group 1.
      ['page.parquet', [[1451, 209]], /page\.parquet: corrupt page in row group 1 \(rows 100 to 199\), column "url": /],
      // A column chunk's name in row group 1.
      [
        'name.parquet',
        [[3264, 213]],
        /name\.parquet: corrupt Parquet footer: column chunk 1 of row group 1 names a column "/,
      ],
    ] as const) {
      const got = await read(await damaged(name, edits as unknown as Array<[number, number]>));
      expect(got).toBeInstanceOf(ConfigError);
      expect((got as Error).message).toMatch(message);
      if (name !== 'rows.parquet' && name !== 'name.parquet') expect((got as Error).cause).toBeInstanceOf(Error);
    }
  });

  it('names each codec it reads once', () => {
    expect(new Set(PARQUET_CODECS).size).toBe(PARQUET_CODECS.length);
    expect(PARQUET_CODECS).toContain('SNAPPY');
  });
});
