/**
 * URL list reading benchmark: rows per second (and per CPU second) that planning reads from a Parquet list
 * (url + caption, row groups of 100k, as img2dataset's inputs are written) and from a gzipped text list, through
 * readList, the reader ingest plans with. Every row of a job's lists is read before its first unit.
 *
 *   npx tsx bench/lists.ts [--rows 1000000] [--repeats 5]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { readList, type Format } from '../src/ingest/list-formats.js';

const { values } = parseArgs({
  options: { rows: { type: 'string', default: '1000000' }, repeats: { type: 'string', default: '5' } },
});
const rows = Number(values.rows);
const repeats = Number(values.repeats);

const url = (i: number) => `https://example.org/images/${i}/photo-${i * 7}.jpg`;
const caption = (i: number) => `a caption for image number ${i}, with some words`;

/** Median seconds and CPU seconds of reading `file` whole, `repeats` times; checks the row count. */
async function measure(file: string, format: Format): Promise<{ wall: number; cpu: number }> {
  const runs: Array<{ wall: number; cpu: number }> = [];
  for (let r = 0; r < repeats; r++) {
    const [t0, c0] = [performance.now(), process.cpuUsage()];
    let n = 0;
    for await (const item of readList(file, format)) if (item.kind === 'row') n++;
    const c = process.cpuUsage(c0);
    if (n !== rows) throw new Error(`${file}: read ${n} rows, wrote ${rows}`);
    runs.push({ wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 });
  }
  runs.sort((a, b) => a.wall - b.wall);
  return runs[Math.floor(runs.length / 2)]!;
}

const dir = await mkdtemp(join(tmpdir(), 'ws-bench-lists-'));
try {
  const ids = Array.from({ length: rows }, (_, i) => i);
  const parquet = join(dir, 'list.parquet');
  const columnData = [
    { name: 'url', data: ids.map(url), type: 'STRING' as const },
    { name: 'caption', data: ids.map(caption), type: 'STRING' as const },
  ];
  await writeFile(parquet, Buffer.from(parquetWriteBuffer({ columnData, rowGroupSize: 100_000 })));
  const gz = join(dir, 'list.txt.gz');
  await writeFile(gz, gzipSync(ids.map(url).join('\n') + '\n'));
  console.log(`list reading: ${rows} rows per list, median of ${repeats}`);
  for (const [name, file, format] of [
    ['parquet (url, caption)', parquet, 'parquet'],
    ['txt.gz (url)', gz, 'txt'],
  ] as const) {
    const m = await measure(file, format);
    const perCore = rows / m.cpu;
    console.log(
      `${name.padEnd(24)} ${(rows / m.wall / 1e6).toFixed(2)} M rows/s   ${(perCore / 1e6).toFixed(2)} M rows per CPU second`,
    );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
