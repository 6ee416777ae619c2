/**
 * The trainer's input: a DatasetStream of records, multi-cropped in a worker pool, assembled in stream order
 * into `MultiCropBatch`es. A bounded number of records are in the pool at once; results are taken in order,
 * so batches are deterministic whatever the thread timing. A record whose image fails to decode is skipped
 * and counted. Closing the iterator (or `close()`) stops the pool.
 */
import { ConfigError } from '../errors.js';
import type { Store } from '../shards/store.js';
import { augmentConfig, cropList, type AugmentConfig } from './config.js';
import { AugmentPool } from './pool.js';
import { DatasetStream, type StreamCursor, type StreamItem, type StreamOptions } from './stream.js';
import type { AugmentResult } from './worker.js';

export interface CropTensor {
  size: number;
  /** Float32 NHWC: [batch, size, size, 3], normalised. */
  data: Float32Array;
}

export interface MultiCropBatch {
  keys: string[];
  /** One tensor per crop, in the config's crop order (e.g. 2 x 224 then 6 x 96). */
  crops: CropTensor[];
  /** Epoch of the batch's last record. */
  epoch: number;
  /** The stream cursor after this batch: a loader restored from it yields the next batch. */
  cursor: StreamCursor;
}

export interface LoaderOptions extends StreamOptions {
  batchSize: number;
  augment?: Partial<AugmentConfig>;
  /** Worker threads. @default the number of cores */
  threads?: number;
  /** Records in the pool at once. @default 4 per thread */
  inflight?: number;
}

export interface LoaderStats {
  samples: number;
  /** Records skipped, by reason (e.g. decode_error). */
  skipped: Record<string, number>;
  /** Milliseconds the consumer waited for augmented samples. */
  waitMs: number;
}

export class MultiCropLoader implements AsyncIterable<MultiCropBatch> {
  readonly config: AugmentConfig;
  readonly stream: DatasetStream;
  readonly stats: LoaderStats = { samples: 0, skipped: {}, waitMs: 0 };
  private readonly pool: AugmentPool;
  private readonly seed: number;

  constructor(store: Store, private readonly options: LoaderOptions) {
    if (!Number.isSafeInteger(options.batchSize) || options.batchSize < 1 || options.batchSize > 65536) {
      throw new ConfigError(`batch size must be an integer from 1 to 65536, got ${options.batchSize}`);
    }
    this.config = augmentConfig(options.augment);
    this.stream = new DatasetStream(store, options);
    this.seed = options.seed ?? 0;
    this.pool = new AugmentPool(this.config, { threads: options.threads });
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<MultiCropBatch> {
    const records = this.stream[Symbol.asyncIterator]();
    const inflight = this.options.inflight ?? this.pool.threads * 4;
    const queue: Array<{ item: StreamItem; result: Promise<AugmentResult> }> = [];
    let exhausted = false;
    const top = async () => {
      while (!exhausted && queue.length < inflight) {
        const next = await records.next();
        if (next.done) exhausted = true;
        else {
          const { record, epoch, position } = next.value;
          const result = this.pool.augment(record.image, { seed: this.seed, epoch, record: position });
          result.catch(() => {}); // surfaced in order below
          queue.push({ item: next.value, result });
        }
      }
    };
    let batch = new BatchBuilder(this.config, this.options.batchSize);
    try {
      for (await top(); queue.length > 0; await top()) {
        const { item, result } = queue.shift()!;
        const t0 = performance.now();
        const out = await result;
        this.stats.waitMs += performance.now() - t0;
        if ('error' in out) this.stats.skipped[out.error] = (this.stats.skipped[out.error] ?? 0) + 1;
        else batch.add(item.record.key, out.crops);
        batch.cursor = item.cursor;
        batch.epoch = item.epoch;
        if (batch.full) {
          this.stats.samples += batch.count;
          yield batch.finish();
          batch = new BatchBuilder(this.config, this.options.batchSize);
        }
      }
      if (batch.count > 0) {
        this.stats.samples += batch.count;
        yield batch.finish();
      }
    } finally {
      await records.return(undefined);
      await this.close();
    }
  }

  /** Live worker threads (0 once closed). */
  get threads(): number {
    return this.pool.threads;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

/** Copies per-sample crops into per-crop batch tensors. */
class BatchBuilder {
  readonly keys: string[] = [];
  readonly crops: CropTensor[];
  cursor: StreamCursor | null = null;
  epoch = 0;

  constructor(config: AugmentConfig, private readonly batchSize: number) {
    this.crops = cropList(config).map(({ size }) => ({ size, data: new Float32Array(batchSize * size * size * 3) }));
  }

  get count(): number {
    return this.keys.length;
  }

  get full(): boolean {
    return this.keys.length === this.batchSize;
  }

  add(key: string, crops: Float32Array[]): void {
    crops.forEach((crop, c) => this.crops[c]!.data.set(crop, this.keys.length * crop.length));
    this.keys.push(key);
  }

  finish(): MultiCropBatch {
    const n = this.keys.length;
    const crops = this.crops.map(({ size, data }) => ({ size, data: n === this.batchSize ? data : data.slice(0, n * size * size * 3) }));
    return { keys: this.keys, crops, epoch: this.epoch, cursor: this.cursor! };
  }
}
