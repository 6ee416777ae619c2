/** Builds committed datasets for stream and loader tests: `units` shards of `perUnit` records each. */
import { commitUnit, listUnits, shardKey } from '../../src/shards/dataset.js';
import { ShardReader } from '../../src/shards/reader.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { ShardWriter } from '../../src/shards/writer.js';
import { makeRecord } from './records.js';

export interface DatasetSpec {
  units: number;
  perUnit: number;
  /** Rows per record batch. @default 10 */
  batchRows?: number;
  /** Image bytes of record `i` (global index). @default arbitrary bytes */
  image?: (i: number) => Uint8Array;
  /** First unit number. @default 0 */
  firstUnit?: number;
}

export async function writeDataset(store: Store, spec: DatasetSpec): Promise<string[]> {
  const keys: string[] = [];
  const first = spec.firstUnit ?? 0;
  for (let u = first; u < first + spec.units; u++) {
    const writer = new ShardWriter({ maxBatchRows: spec.batchRows ?? 10 });
    for (let j = 0; j < spec.perUnit; j++) {
      const i = u * spec.perUnit + j;
      const record = { ...makeRecord(i), key: `${String(u).padStart(6, '0')}-${String(j).padStart(5, '0')}` };
      if (spec.image) record.image = spec.image(i);
      await writer.add(record);
      keys.push(record.key);
    }
    const info = await writer.finish(store, shardKey(u));
    const now = new Date().toISOString();
    await commitUnit(store, {
      unit: u,
      shard: shardKey(u),
      records: info.records,
      bytes: info.bytes,
      batches: info.batches,
      inputs: spec.perUnit,
      failed: {},
      duplicates: { exact: 0, near: 0 },
      timings: {},
      startedAt: now,
      committedAt: now,
    });
  }
  return keys;
}

/** A committed dataset of procedural photo-like JPEGs whose hidden class is `i % 4` (photoJpeg's default). */
export async function writePhotoDataset(
  store: Store,
  spec: { units: number; perUnit: number; width?: number; height?: number },
): Promise<string[]> {
  const { photoJpeg } = await import('../../src/fixtures/images.js');
  const n = spec.units * spec.perUnit;
  const images = await Promise.all(
    Array.from({ length: n }, (_, i) => photoJpeg(i, { width: spec.width ?? 64, height: spec.height ?? 56 })),
  );
  return writeDataset(store, { units: spec.units, perUnit: spec.perUnit, batchRows: 8, image: (i) => images[i]! });
}

/** Every record key of the committed units of the dataset at `out`, sorted. */
export async function datasetKeys(out: string): Promise<string[]> {
  const store = await openStore(out);
  const keys: string[] = [];
  for (const unit of await listUnits(store)) {
    for await (const r of (await ShardReader.open(store, unit.shard, { size: unit.bytes })).records()) keys.push(r.key);
  }
  return keys.sort();
}
