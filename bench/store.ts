/**
 * Store benchmark: shard write MB/s, whole-object GET MB/s, and ranged record-batch read MB/s, on the local
 * store and on s3rver over loopback. Goal (issue 2): ranged batch reads >= 90% of whole-object GET.
 *
 *   npx tsx bench/store.ts [--mb 64] [--repeats 7]
 *
 * MB/s per core divides bytes by the CPU seconds this process used (the S3 server's own CPU is not counted).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ShardReader } from '../src/shards/reader.js';
import { getBytes, openStore, type Store } from '../src/shards/store.js';
import { ShardWriter } from '../src/shards/writer.js';
import { startS3 } from '../test/helpers/s3-server.js';
import { makeRecord } from '../test/helpers/records.js';

const { values } = parseArgs({
  options: { mb: { type: 'string', default: '64' }, repeats: { type: 'string', default: '7' } },
});
const totalMb = Number(values.mb);
const repeats = Number(values.repeats);
const RECORD_BYTES = 64 * 1024;
const PREFETCH = 4;

interface Figure {
  mbps: number;
  mbPerCpuSecond: number;
}

/** One timed run of `fn` moving `bytes`. */
async function once(bytes: number, fn: () => Promise<void>): Promise<Figure> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { mbps: bytes / 1e6 / seconds, mbPerCpuSecond: bytes / 1e6 / ((cpu.user + cpu.system) / 1e6) };
}

function median(figures: Figure[]): Figure {
  const sorted = [...figures].sort((a, b) => a.mbps - b.mbps);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function benchStore(name: string, store: Store): Promise<void> {
  const n = Math.ceil((totalMb * 1e6) / RECORD_BYTES);
  const records = Array.from({ length: n }, (_, i) => makeRecord(i, RECORD_BYTES));
  const writes: Figure[] = [];
  let size = 0;
  for (let r = 0; r < repeats; r++) {
    writes.push(
      await once(n * RECORD_BYTES, async () => {
        const writer = new ShardWriter();
        for (const record of records) await writer.add(record);
        size = (await writer.finish(store, 'bench/shard.arrow')).bytes;
      }),
    );
  }
  // Whole and ranged runs alternate so that noise from the shared machine hits both alike.
  const whole: Figure[] = [];
  const ranged: Figure[] = [];
  let batches = 0;
  for (let r = 0; r < repeats; r++) {
    whole.push(await once(size, async () => void (await getBytes(store, 'bench/shard.arrow'))));
    ranged.push(
      await once(size, async () => {
        const reader = await ShardReader.open(store, 'bench/shard.arrow', { size });
        batches = reader.numBatches;
        for await (const _ of reader.batches(PREFETCH)) void _;
      }),
    );
  }
  const row = (label: string, f: Figure) =>
    `${name.padEnd(8)} ${label.padEnd(30)} ${f.mbps.toFixed(0).padStart(6)} MB/s ${f.mbPerCpuSecond.toFixed(0).padStart(6)} MB/s per core`;
  console.log(row('write shard', median(writes)));
  console.log(row('whole-object GET', median(whole)));
  console.log(row(`ranged batches + decode (${batches})`, median(ranged)));
  const ratio = (100 * median(ranged).mbps) / median(whole).mbps;
  console.log(`${name.padEnd(8)} ${'ranged / whole'.padEnd(30)} ${ratio.toFixed(0).padStart(6)} %    (goal >= 90 %)`);
}

const dir = await mkdtemp(join(tmpdir(), 'ws-bench-store-'));
const s3 = await startS3(['bench']);
Object.assign(process.env, s3.env);
try {
  console.log(
    `store bench: ${totalMb} MB shard of ${RECORD_BYTES / 1024} KiB records, median of ${repeats}, prefetch ${PREFETCH} batches; ${cpus().length} cores, ${cpus()[0]?.model}`,
  );
  await benchStore('local', await openStore(join(dir, 'local')));
  await benchStore('s3rver', await openStore('s3://bench/ds', { s3Endpoint: s3.endpoint }));
} finally {
  await s3.stop();
  await rm(dir, { recursive: true, force: true });
}
