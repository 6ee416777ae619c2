/**
 * The dataset stream: committed units -> shuffled records, epoch after epoch, reading record batches with
 * ranged GETs and keeping a bounded number of bytes prefetched. The order is `order.ts`'s pure function of
 * (seed, epoch, units, rank, worldSize); the cursor after any record restores the stream exactly there.
 * With `follow`, an empty dataset is waited for and each new epoch picks up units committed since.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, InvalidShardError, NotFoundError } from '../errors.js';
import { listUnits, type UnitRecord } from '../shards/dataset.js';
import { ShardReader } from '../shards/reader.js';
import type { ImageRecord } from '../shards/schema.js';
import type { Store } from '../shards/store.js';
import { epochShards, inRanges, shuffleGroup, toRanges, windowGroups, type BatchRef } from './order.js';

export interface StreamCursor {
  epoch: number;
  /** Group (within the epoch, for this rank) holding the next record, and records of it already yielded. */
  group: number;
  offset: number;
  /** Records yielded so far in this epoch: the next record's draw index. */
  position: number;
  /** The units this epoch reads, as id ranges; null until the epoch has started. */
  units: Array<[number, number]> | null;
}

export interface StreamOptions {
  /** @default 0 */
  seed?: number;
  /** This consumer's share of the shards. @default 0 of 1 */
  rank?: number;
  worldSize?: number;
  /** Shards whose batches are mixed together. @default 4 */
  windowShards?: number;
  /** Record batches per shuffle group (the records of a group are permuted). @default 8 */
  groupBatches?: number;
  /** Bytes of record batches fetched ahead of the consumer (at least one group). @default 256 MiB */
  prefetchBytes?: number;
  /** Stop after this many epochs. @default unbounded */
  epochs?: number;
  /** Wait for units to appear and pick up new ones at each epoch. @default false */
  follow?: boolean;
  /** Milliseconds between listings while following an empty dataset. @default 5000 */
  pollMs?: number;
  /** Where to resume. @default the start of epoch 0 */
  cursor?: StreamCursor;
  /** Records' bytes in SharedArrayBuffers, for consumers that hand them to worker threads. @default false */
  sharedMemory?: boolean;
  signal?: AbortSignal;
}

export interface StreamItem {
  record: ImageRecord;
  epoch: number;
  /** Index of the record within its epoch. */
  position: number;
  /** The cursor after this record. */
  cursor: StreamCursor;
}

export interface StreamStats {
  records: number;
  /** Shards or batches skipped because they could not be read, by reason. */
  skipped: Record<string, number>;
  /** Milliseconds the consumer waited for storage. */
  waitMs: number;
}

interface GroupPlan {
  index: number;
  refs: Array<{ reader: ShardReader; batch: number }>;
  bytes: number;
}

export const START: StreamCursor = { epoch: 0, group: 0, offset: 0, position: 0, units: null };

export class DatasetStream {
  readonly stats: StreamStats = { records: 0, skipped: {}, waitMs: 0 };
  private readonly o: Required<Omit<StreamOptions, 'epochs' | 'signal'>> & Pick<StreamOptions, 'epochs' | 'signal'>;

  /** `store` is opened at the dataset's root (its URL names the prefix). */
  constructor(
    private readonly store: Store,
    options: StreamOptions = {},
  ) {
    this.o = {
      seed: 0, rank: 0, worldSize: 1, windowShards: 4, groupBatches: 8, prefetchBytes: 256 * 2 ** 20,
      follow: false, pollMs: 5000, cursor: START, sharedMemory: false, ...options,
    };
    validateStreamOptions(this.o);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<StreamItem> {
    let cursor = this.o.cursor;
    while (this.o.epochs === undefined || cursor.epoch < this.o.epochs) {
      const units = await this.epochUnits(cursor);
      cursor = { ...cursor, units: toRanges(units.map((u) => u.unit)) };
      yield* this.epoch(units, cursor);
      cursor = { ...START, epoch: cursor.epoch + 1 };
    }
  }

  /** The units of the cursor's epoch: those it names, or (starting an epoch) every committed one. */
  private async epochUnits(cursor: StreamCursor): Promise<UnitRecord[]> {
    for (;;) {
      const all = await listUnits(this.store);
      const units = cursor.units ? all.filter((u) => inRanges(cursor.units!, u.unit)) : all;
      if (cursor.units && units.length !== cursor.units.reduce((n, [lo, hi]) => n + hi - lo + 1, 0)) {
        throw new NotFoundError(`the cursor's epoch ${cursor.epoch} names units that are no longer committed in ${this.store.url}`);
      }
      if (units.length > 0) return units;
      if (!this.o.follow) throw new NotFoundError(`no committed units in ${this.store.url}`);
      await sleep(this.o.pollMs, undefined, { signal: this.o.signal });
    }
  }

  private async *epoch(units: UnitRecord[], start: StreamCursor): AsyncGenerator<StreamItem> {
    const { seed } = this.o;
    const epoch = start.epoch;
    const plans = this.groupPlans(epochShards(units, seed, epoch, this.o.rank, this.o.worldSize), epoch, start.group);
    const ahead: Array<{ plan: GroupPlan; records: Promise<ImageRecord[]> }> = [];
    let done = false;
    const fill = async () => {
      let bytes = ahead.reduce((n, a) => n + a.plan.bytes, 0);
      while (!done && (ahead.length === 0 || bytes < this.o.prefetchBytes)) {
        const next = await plans.next();
        if (next.done) done = true;
        else {
          const records = this.load(next.value);
          records.catch(() => {}); // surfaced when awaited in order
          ahead.push({ plan: next.value, records });
          bytes += next.value.bytes;
        }
      }
    };
    let position = start.position;
    await fill();
    while (ahead.length > 0) {
      const { plan, records } = ahead.shift()!;
      const filling = fill();
      const t0 = performance.now();
      const rows = shuffleGroup(await records, seed, epoch, plan.index);
      this.stats.waitMs += performance.now() - t0;
      const skip = plan.index === start.group ? start.offset : 0;
      for (let i = skip; i < rows.length; i++) {
        this.stats.records++;
        const cursor: StreamCursor = { epoch, group: plan.index, offset: i + 1, position: position + 1, units: start.units };
        yield { record: rows[i]!, epoch, position, cursor };
        position++;
      }
      await filling;
    }
  }

  /** The epoch's groups from `fromGroup` on, opening shard footers window by window. */
  private async *groupPlans(shards: UnitRecord[], epoch: number, fromGroup: number): AsyncGenerator<GroupPlan> {
    let index = 0;
    for (let w = 0; w * this.o.windowShards < shards.length; w++) {
      const window = shards.slice(w * this.o.windowShards, (w + 1) * this.o.windowShards);
      const readers = await Promise.all(window.map((u) => this.openShard(u)));
      const groups = windowGroups(readers.map((r) => r?.numBatches ?? 0), this.o.groupBatches, this.o.seed, epoch, w);
      for (const group of groups) {
        if (index >= fromGroup) yield this.plan(index, group, readers);
        index++;
      }
    }
  }

  private plan(index: number, group: BatchRef[], readers: Array<ShardReader | null>): GroupPlan {
    const refs = group.map(({ shard, batch }) => ({ reader: readers[shard]!, batch }));
    return { index, refs, bytes: refs.reduce((n, r) => n + r.reader.batchBytes(r.batch), 0) };
  }

  private async openShard(unit: UnitRecord): Promise<ShardReader | null> {
    try {
      return await ShardReader.open(this.store, unit.shard, { size: unit.bytes, shared: this.o.sharedMemory });
    } catch (err) {
      if (!(err instanceof InvalidShardError)) throw err;
      this.skip('bad_shard');
      return null;
    }
  }

  /** A group's records in batch order; an unreadable batch is skipped and counted. */
  private async load(plan: GroupPlan): Promise<ImageRecord[]> {
    const batches = await Promise.all(
      plan.refs.map(async ({ reader, batch }) => {
        try {
          return await reader.readRecords(batch);
        } catch (err) {
          if (!(err instanceof InvalidShardError)) throw err;
          this.skip('bad_batch');
          return [];
        }
      }),
    );
    return batches.flat();
  }

  private skip(reason: string): void {
    this.stats.skipped[reason] = (this.stats.skipped[reason] ?? 0) + 1;
  }
}

export function validateStreamOptions(o: StreamOptions): void {
  const int = (name: keyof StreamOptions, min: number, max = Number.MAX_SAFE_INTEGER) => {
    const v = o[name];
    if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)) {
      throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
    }
  };
  int('seed', 0, 2 ** 32 - 1);
  int('worldSize', 1, 65536);
  int('rank', 0, (o.worldSize ?? 1) - 1);
  int('windowShards', 1, 1024);
  int('groupBatches', 1, 4096);
  int('prefetchBytes', 0);
  int('epochs', 0);
  int('pollMs', 1, 3_600_000);
  const c = o.cursor;
  if (c && !(Number.isSafeInteger(c.epoch) && c.epoch >= 0 && Number.isSafeInteger(c.group) && c.group >= 0 &&
    Number.isSafeInteger(c.offset) && c.offset >= 0 && Number.isSafeInteger(c.position) && c.position >= 0 &&
    (c.units === null || Array.isArray(c.units)))) {
    throw new ConfigError(`malformed stream cursor ${JSON.stringify(c)}`);
  }
}
