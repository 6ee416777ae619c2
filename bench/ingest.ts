/**
 * Ingest benchmark: end-to-end images/s per core (download over loopback, decode, resize, encode, hash,
 * dedupe, shard write) against sharp alone on the same images (decode + resize + encode + hash, one at a
 * time), so the ratio says what the pipeline adds on top of the image work. Goal (issue 3): >= 90 %.
 *
 *   npx tsx bench/ingest.ts [--images 100] [--concurrency 32]
 *
 * Per core = images / CPU-seconds of this process (all threads); the image server runs in a child process.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { decodeImage } from '../src/ingest/decode.js';
import { runIngest } from '../src/ingest/job.js';

const { values } = parseArgs({ options: { images: { type: 'string', default: '100' }, concurrency: { type: 'string', default: '32' } } });
const count = Number(values.images);

const server = spawn(process.execPath, ['--import', 'tsx', new URL('./serve-images.ts', import.meta.url).pathname, String(count)], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const { port, bytes } = JSON.parse(await new Promise<string>((resolve) => createInterface({ input: server.stdout! }).once('line', resolve)));
const base = `http://127.0.0.1:${port}`;
const dir = await mkdtemp(join(tmpdir(), 'ws-bench-ingest-'));

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
}

try {
  console.log(`ingest bench: ${count} JPEGs of 0.3-3 MP (${(bytes / 1e6).toFixed(0)} MB) on loopback; ${cpus().length} cores, ${cpus()[0]?.model}`);
  // sharp alone: fetch all bytes first (not timed), then the image work one image at a time.
  const originals = await Promise.all(Array.from({ length: count }, async (_, i) => Buffer.from(await (await fetch(`${base}/img/${i}.jpg`)).arrayBuffer())));
  let cpu = process.cpuUsage();
  let t0 = performance.now();
  for (const b of originals) if (!(await decodeImage(b)).ok) throw new Error('decode failed');
  const aloneCpu = cpuSeconds(cpu);
  const aloneWall = (performance.now() - t0) / 1000;
  console.log(`sharp alone (decode+resize 512+JPEG q90+sha256+pHash): ${(count / aloneWall).toFixed(1)} img/s wall, ${(count / aloneCpu).toFixed(1)} img/s per core`);

  const list = join(dir, 'list.txt');
  await writeFile(list, Array.from({ length: count }, (_, i) => `${base}/img/${i}.jpg`).join('\n'));
  cpu = process.cpuUsage();
  t0 = performance.now();
  const summary = await runIngest({
    lists: [list],
    out: join(dir, 'ds'),
    fetch: { allowAddresses: ['127.0.0.1'] },
    concurrency: Number(values.concurrency),
    unitSize: 10_000,
  });
  const ingestCpu = cpuSeconds(cpu);
  const ingestWall = (performance.now() - t0) / 1000;
  if (summary.kept !== count) throw new Error(`kept ${summary.kept} of ${count}: ${JSON.stringify(summary.failedByReason)}`);
  console.log(`ingest end to end: ${(count / ingestWall).toFixed(1)} img/s wall, ${(count / ingestCpu).toFixed(1)} img/s per core`);
  console.log(`ingest / sharp alone, per core: ${((100 * aloneCpu) / ingestCpu).toFixed(0)} %   (goal >= 90 %)`);
} finally {
  server.kill();
  await rm(dir, { recursive: true, force: true });
}
