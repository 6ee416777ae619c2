/**
 * Stream benchmark: DatasetStream records/s and MB/s (ranged batch reads, shuffle groups, prefetch) from a
 * local store and from s3rver on loopback, and the time to the first record. No decoding: this is the
 * storage side of the augment stage.
 *
 *   npx tsx bench/stream.ts [--units 8] [--per-unit 500] [--kb 50]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DatasetStream } from '../src/augment/stream.js';
import { openStore, type Store } from '../src/shards/store.js';
import { writeDataset } from '../test/helpers/dataset.js';
import { startS3 } from '../test/helpers/s3-server.js';

const { values } = parseArgs({
  options: {
    units: { type: 'string', default: '8' },
    'per-unit': { type: 'string', default: '500' },
    kb: { type: 'string', default: '50' },
  },
});
const units = Number(values.units),
  perUnit = Number(values['per-unit']),
  bytes = Number(values.kb) * 1024;

async function bench(name: string, store: Store): Promise<void> {
  await writeDataset(store, { units, perUnit, batchRows: 128, image: () => new Uint8Array(bytes) });
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  let first = 0,
    n = 0,
    total = 0;
  for await (const item of new DatasetStream(store, { epochs: 1 })) {
    if (n++ === 0) first = performance.now() - t0;
    total += item.record.image.byteLength;
  }
  const wall = (performance.now() - t0) / 1000;
  const u = process.cpuUsage(cpu);
  const cpuS = (u.user + u.system) / 1e6;
  console.log(
    `${name.padEnd(8)} ${(n / wall).toFixed(0)} records/s, ${(total / 1e6 / wall).toFixed(0)} MB/s wall (${(total / 1e6 / cpuS).toFixed(0)} MB/s per core); first record after ${first.toFixed(0)} ms`,
  );
}

const dir = await mkdtemp(join(tmpdir(), 'ws-bench-stream-'));
const s3 = await startS3(['bench']);
Object.assign(process.env, s3.env);
try {
  console.log(
    `stream bench: ${units} shards x ${perUnit} records of ${values.kb} KB, batches of 128 rows; ${cpus().length} cores, ${cpus()[0]?.model}`,
  );
  await bench('local', await openStore(join(dir, 'local')));
  await bench('s3rver', await openStore('s3://bench/ds', { s3Endpoint: s3.endpoint }));
} finally {
  await s3.stop();
  await rm(dir, { recursive: true, force: true });
}
