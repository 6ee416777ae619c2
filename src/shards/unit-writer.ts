/**
 * One unit of a dataset, from its first record to its commit. Whatever the source (URL lists, a crawl, a
 * retry pass) and whoever runs it (a local job, a queue worker), a unit is written here and only here:
 *
 *   add / fail / duplicate   records go to a staged shard file (writer.ts); failures and duplicates are counted
 *   commit                   1. the shard is put, 2. the failure file (failures.ts), 3. the unit record, last:
 *                            the record is the commit point, so a unit stopped before it is redone, never half read
 *
 * Record keys come from `recordKey(unit, position)` (keys.ts), the position being the input's place in the
 * unit's inputs, so a rerun writes the same keys.
 */
import { performance } from 'node:perf_hooks';
import { commitUnit, type DuplicateCounts, type UnitRecord } from './dataset.js';
import { httpStatusOf, writeFailures, type FailureCounts, type FailureReason, type FailureRecord } from './failures.js';
import { recordKey, shardKey } from './keys.js';
import type { ImageRecord } from './schema.js';
import { openStaging } from './staging.js';
import type { Store } from './store.js';
import { ShardWriter, type ShardWriterOptions } from './writer.js';

export type UnitWriterOptions = Omit<ShardWriterOptions, 'stagingDir'>;

/** A record as a source hands it over: the unit writer gives it its key. */
export type UnitInput = Omit<ImageRecord, 'key'>;

export interface CommitOptions {
  /** Inputs the unit was given (rows, images found), kept or not. */
  inputs: number;
  /** Seconds the source spent per phase (fetch, decode...); `write` and `wall` are added here. */
  timings?: Record<string, number>;
  /** Checked before each step: a unit whose run is stopped is not committed. */
  signal?: AbortSignal;
  /** Receives the put of the unit record once it starts (a stopped run waits for it before counting units). */
  onCommitPoint?: (put: Promise<void>) => void;
  /** Runs just before the unit record is put; a throw leaves the unit uncommitted (a lost dedupe index). */
  beforeCommit?: () => Promise<void>;
}

export class UnitWriter {
  private readonly failed: FailureCounts = {};
  private readonly failures: FailureRecord[] = [];
  private readonly duplicates: DuplicateCounts = { exact: 0, near: 0 };
  private readonly startedAt = new Date();
  private writeSeconds = 0;
  /** ShardWriter.add must not interleave with itself: adds are chained. */
  private writes: Promise<void> = Promise.resolve();

  private constructor(
    readonly store: Store,
    readonly unit: number,
    private readonly shard: ShardWriter,
  ) {}

  /** A writer for `unit` of the dataset in `store`, staging its shard where the store's staging folder is. */
  static async open(store: Store, unit: number, options: UnitWriterOptions = {}): Promise<UnitWriter> {
    return new UnitWriter(store, unit, new ShardWriter({ ...options, stagingDir: await openStaging(store) }));
  }

  /** Adds the record made from input `position` of the unit; resolves once it is staged. */
  add(position: number, input: UnitInput): Promise<void> {
    const record: ImageRecord = { ...input, key: recordKey(this.unit, position) };
    const write = this.writes.then(async () => {
      const t0 = performance.now();
      await this.shard.add(record);
      this.writeSeconds += (performance.now() - t0) / 1000;
    });
    this.writes = write.catch(() => {});
    return write;
  }

  /** Counts a failed input and lists it in the unit's failure file. */
  fail(row: number, url: string, reason: FailureReason): void {
    this.failed[reason] = (this.failed[reason] ?? 0) + 1;
    this.failures.push({ row, url, reason, status: httpStatusOf(reason) });
  }

  /** Counts an input dropped as a duplicate of an image already in the dataset. */
  duplicate(kind: keyof DuplicateCounts): void {
    this.duplicates[kind]++;
  }

  /** Writes the shard, then the failure file, then the unit record (the commit point); returns the record. */
  async commit(o: CommitOptions): Promise<UnitRecord> {
    try {
      await this.writes;
      o.signal?.throwIfAborted(); // a unit cut short is never committed
      const shard = shardKey(this.unit);
      const info = await this.shard.finish(this.store, shard);
      const failures = await writeFailures(this.store, this.unit, this.failures);
      const record: UnitRecord = {
        unit: this.unit,
        shard,
        records: info.records,
        bytes: info.bytes,
        batches: info.batches,
        sha256: info.sha256,
        inputs: o.inputs,
        failed: this.failed,
        ...(failures ? { failures } : {}),
        duplicates: this.duplicates,
        timings: { ...o.timings, write: this.writeSeconds, wall: (Date.now() - this.startedAt.getTime()) / 1000 },
        startedAt: this.startedAt.toISOString(),
        committedAt: new Date().toISOString(),
      };
      o.signal?.throwIfAborted();
      await o.beforeCommit?.();
      const put = commitUnit(this.store, record);
      o.onCommitPoint?.(put);
      await put;
      return record;
    } finally {
      await this.shard.abort();
    }
  }

  /** Discards the staged shard without committing anything; safe to call more than once. */
  async abort(): Promise<void> {
    await this.writes;
    await this.shard.abort();
  }
}
