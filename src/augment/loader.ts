/**
 * The trainer's input: a DatasetStream of records, multi-cropped in a worker pool, assembled in stream order
 * into `MultiCropBatch`es. A bounded number of records are in the pool at once; results are taken in order,
 * so batches are deterministic whatever the thread timing. A record whose image fails to decode is skipped
 * and counted; an epoch read from its start without one sample is a NoDataError (with `follow`, the stream
 * waits for new units instead), so a dataset of undecodable images never spins. Every wait ends on
 * `signal`. Closing the iterator (a `break`, the signal, an error, or `close()`) stops the pool at once: records
 * not yet sent to a worker are dropped, and only the samples the workers are on are finished (at most one
 * decode per task running, two tasks a thread), as a worker cannot be stopped safely inside its decoder.
 *
 * A loader is single-pass: one `for await` (or one iterator) per loader. Its loop's end, a `break` or
 * `close()` stops its worker threads for good, so a second iteration (after a break, after `close()`, or
 * alongside the first) throws a LoaderClosedError at once rather than waiting on a pool that is gone. To go
 * on from where a loop stopped, open a new loader with `cursor: loader.cursor()`.
 *
 * The loader is a `BatchSource`, what train consumes: anything that yields MultiCropBatches and says where
 * it stands (its cursor) trains the same way, a store of images or not.
 */
import { checkOptionsObject, ConfigError, NoDataError, shown, WildstreamError } from '../errors.js';
import { checkStore, type Store } from '../shards/store.js';
import { augmentConfig, cropList, type AugmentConfig, type AugmentOptions } from './config.js';
import { abortable } from '../abort.js';
import { checkCropDtype, type ByteCrop, type CropDtype, type CropTensor } from '../crop-tensor.js';
import { AugmentPool, PoolClosedError } from './pool.js';
import { DatasetStream, histogram, START, type StreamCursor, type StreamItem, type StreamOptions } from './stream.js';
import type { AugmentResult } from './worker.js';

export type { ByteCrop, CropDtype, CropTensor, FloatCrop } from '../crop-tensor.js';

export interface MultiCropBatch {
  keys: string[];
  /**
   * One tensor per crop, in the config's crop order (e.g. 2 x 224 then 6 x 96), NHWC [keys.length, size,
   * size, 3]: FloatCrops of normalised floats, or with `cropDtype: 'uint8'` ByteCrops of the bytes before
   * normalisation with the config's mean and std (`cropFloats` finishes them).
   */
  crops: CropTensor[];
  /** Epoch of the batch's last record. */
  epoch: number;
  /** The stream cursor after this batch: a loader restored from it yields the next batch. */
  cursor: StreamCursor;
  /**
   * Hands the batch's buffers back to the loader for a later batch; read nothing of the batch afterwards.
   * Optional (an unreleased batch is garbage-collected as usual), but fresh buffers cost the workers a page
   * fault per 4 KiB on first write: 1.1-4.2 ms of kernel time per 2x224 + 6x96 sample on our machines
   * against 0.3 ms to overwrite a reused one (a scratch measurement, bench/RESULTS.md).
   */
  release(): void;
}

/**
 * Batches in a fixed order, and where the order stands: what `train` consumes. A source opened at the cursor
 * that `cursor()` returned yields the batches that would have followed, so a run resumed from a checkpoint
 * sees the same batches as an uninterrupted one.
 */
export interface BatchSource extends AsyncIterable<MultiCropBatch> {
  /**
   * Where the source stands: after the last batch yielded, or where it was opened before the first. Must equal
   * the last batch's `cursor` while its consumer trains on that batch.
   */
  cursor(): StreamCursor;
  /** Stops producing batches and frees what the source holds (threads, reads); safe to call twice. */
  close(): Promise<void>;
  /**
   * The element type of every crop it yields, when the source knows it (the loader does): lets a trainer
   * prepare for 8-bit crops before the first batch. Absent: the trainer finds out from the batches.
   */
  readonly cropDtype?: CropDtype;
}

export interface LoaderOptions extends StreamOptions {
  batchSize: number;
  /** The multi-crop recipe; `crops` may be a spec string such as `2x224@0.14-1,6x96@0.05-0.14`. @default DEFAULT_AUGMENT */
  augment?: AugmentOptions;
  /** Worker threads. @default the number of cores */
  threads?: number;
  /**
   * Records in the pool at once, an integer from 1 to 2^20 (else a ConfigError); stopping the loader drops
   * those not yet started. @default 12 per thread
   */
  inflight?: number;
  /**
   * The crops' element type: normalised floats, or 8-bit RGB before normalisation (a quarter of the bytes,
   * for a trainer that normalises on its device); anything else is a ConfigError. @default 'float32'
   */
  cropDtype?: CropDtype;
}

export interface LoaderStats {
  samples: number;
  /** Records skipped, by reason (e.g. decode_error). */
  skipped: Record<string, number>;
  /** Milliseconds the consumer waited for augmented samples. */
  waitMs: number;
  /** Batch buffers allocated; with every batch released, a few however long the run. */
  buffers: number;
}

/**
 * A loader iterated a second time, or after `close()`: it is single-pass (see MultiCropLoader). The message
 * says to open a new loader at `cursor()`.
 */
export class LoaderClosedError extends WildstreamError {
  override readonly code = 'WS_ERR_LOADER_CLOSED';
}

/**
 * Multi-cropped batches of a dataset, in stream order. Single-pass: `[Symbol.asyncIterator]()` may be called
 * once; a second call (after a `break`, alongside the first, or after `close()`) throws a LoaderClosedError.
 * Throws a ConfigError when `batchSize`, `inflight`, `threads`, `cropDtype`, an augment or stream option is out
 * of range, or a batch's crop buffers would exceed MAX_BATCH_BYTES; a CursorError (a ConfigError) for a
 * `cursor` taken under other order settings (seed, rank, worldSize, windowShards, groupBatches).
 */
export class MultiCropLoader implements BatchSource {
  readonly config: AugmentConfig;
  readonly stream: DatasetStream;
  readonly stats: LoaderStats = { samples: 0, skipped: {}, waitMs: 0, buffers: 0 };

  /**
   * Counts a record whose image gave no sample, and says so the first time for each reason, as the stream does
   * for unreadable shards: a dataset whose images mostly fail to decode would otherwise train on the few left
   * with nothing said until the summary.
   */
  private skipSample(reason: string, key: string): void {
    const first = this.stats.skipped[reason] === undefined;
    this.stats.skipped[reason] = (this.stats.skipped[reason] ?? 0) + 1;
    if (first)
      this.options.onSkip?.(
        `warning: skipping records that give no sample (${reason}), first record ${key}; the run goes on ` +
          `without them, counted in "skipped"`,
      );
  }
  private readonly pool: AugmentPool;
  private readonly seed: number;
  readonly cropDtype: CropDtype;
  /** Released slabs, ready for reuse: every task that wrote into them has settled (see BatchBuilder). */
  private readonly spare: Slab[] = [];
  /** The cursor of the last batch yielded, or the one the loader was opened at. */
  private position: StreamCursor;
  /** Why the loader cannot be iterated (again), once it has been or was closed; null while fresh. */
  private spent: 'iterated' | 'closed' | null = null;
  /** Set by close(): the loop yields nothing more, even batches whose samples were already made. */
  private closed = false;

  constructor(
    store: Store,
    private readonly options: LoaderOptions,
  ) {
    checkStore(store, "MultiCropLoader's store");
    checkOptionsObject(options, 'MultiCropLoader options ({ batchSize, ... })');
    if (!Number.isSafeInteger(options.batchSize) || options.batchSize < 1 || options.batchSize > 65536) {
      throw new ConfigError(`batchSize must be an integer from 1 to 65536, got ${shown(options.batchSize)}`);
    }
    checkInflight(options.inflight);
    this.cropDtype = checkCropDtype(options.cropDtype);
    this.config = augmentConfig(options.augment);
    checkBatchBytes(options.batchSize, this.config, this.cropDtype);
    // Shared record bytes: the pool posts each image to a worker as a view, with no copy or transfer.
    this.stream = new DatasetStream(store, { ...options, sharedMemory: true });
    this.seed = options.seed ?? 0;
    this.pool = new AugmentPool(this.config, { threads: options.threads, cropDtype: this.cropDtype });
    this.position = options.cursor ?? START;
  }

  cursor(): StreamCursor {
    return this.position;
  }

  /** The loader's one pass; a second call throws a LoaderClosedError (see the class). */
  [Symbol.asyncIterator](): AsyncGenerator<MultiCropBatch> {
    // Checked here, not in the generator, so that the second of two loops started together fails too.
    if (this.spent) throw this.reuseError(this.spent);
    this.spent = 'iterated';
    return this.batches();
  }

  private reuseError(why: 'iterated' | 'closed'): LoaderClosedError {
    const what = why === 'closed' ? 'is closed' : 'was already iterated (its loop ended, or broke, or is running)';
    return new LoaderClosedError(
      `this MultiCropLoader ${what}: a loader is single-pass; to go on from where it stopped, open a new one with \`cursor: loader.cursor()\``,
    );
  }

  private async *batches(): AsyncGenerator<MultiCropBatch> {
    const records = this.stream[Symbol.asyncIterator]();
    const inflight = this.options.inflight ?? this.pool.threads * 3 * CHUNK;
    const chunk = Math.min(CHUNK, inflight);
    const queue: Dispatched[] = [];
    const sizes = cropList(this.config).map(({ size }) => size);
    let exhausted = false;
    let filling: Slab | null = null;
    // Records go to the pool a chunk at a time, and a chunk only when a whole one fits under `inflight`:
    // topping up one record at a time would make every later task a single record again.
    const top = async () => {
      while (!exhausted && queue.length + chunk <= inflight) {
        const samples: Placed[] = [];
        while (samples.length < chunk) {
          const next = await abortable(records.next(), this.options.signal);
          if (next.done) {
            exhausted = true;
            break;
          }
          if (!filling || filling.dispatched === this.options.batchSize) filling = this.slab(sizes);
          samples.push({ item: next.value, slab: filling, slot: filling.dispatched++ });
        }
        if (samples.length > 0) this.dispatch(samples, queue);
      }
    };
    let batch: BatchBuilder | null = null;
    let cursor: StreamCursor | null = null,
      epoch = 0;
    const progress = new EpochProgress();
    try {
      for (await top(); queue.length > 0 && !this.closed; await top()) {
        const { item, result, slab, slot } = queue.shift()!;
        const t0 = performance.now();
        let out: AugmentResult;
        try {
          out = await abortable(result, this.options.signal);
        } catch (err) {
          // close() while this wait was pending: the pool dropped the sample; the loop ends as a closed one does.
          if (this.closed && err instanceof PoolClosedError) return;
          throw err;
        }
        if (this.closed) return;
        this.stats.waitMs += performance.now() - t0;
        this.noProgress(progress.take(item));
        [cursor, epoch] = [item.cursor, item.epoch];
        progress.count('error' in out ? out.error : null);
        if ('error' in out) this.skipSample(out.error, item.record.key);
        else (batch ??= new BatchBuilder(slab, this.config)).add(item.record.key, slab, slot);
        this.settled(slab);
        if (batch?.count === this.options.batchSize) {
          this.stats.samples += batch.count;
          this.position = cursor;
          yield batch.finish(cursor, epoch, this.spare);
          batch = null;
        }
      }
      if (batch && batch.count > 0 && !this.closed) {
        this.stats.samples += batch.count;
        this.position = cursor!;
        yield batch.finish(cursor!, epoch, this.spare);
      }
      this.noProgress(progress.end());
    } finally {
      await records.return(undefined);
      await this.close();
    }
  }

  /** Acts on an epoch that gave no sample (see EpochProgress): an error, or with `follow` a wait for new units. */
  private noProgress(stuck: { units: Array<[number, number]>; failures: Record<string, number> } | null): void {
    if (!stuck) return;
    const records = Object.values(stuck.failures).reduce((a, b) => a + b, 0);
    const why = `a whole epoch of ${records} records gave no sample (${histogram(stuck.failures)})`;
    if (!this.options.follow) throw new NoDataError(`no sample could be made: ${this.stream.describe()}; ${why}`);
    this.stream.requireNewUnits(stuck.units, `no sample could be made: ${why}`);
  }

  /** One pool task for `samples`; each gets its own result promise in `queue`, taken in order below. */
  private dispatch(samples: Placed[], queue: Dispatched[]): void {
    const run = this.pool.augment(
      samples.map(({ item, slab, slot }) => ({
        image: item.record.image,
        at: { seed: this.seed, epoch: item.epoch, record: item.position },
        into: { crops: slab.shared, slot },
      })),
    );
    samples.forEach((sample, i) => {
      const result = run.then((results) => results[i]!);
      result.catch(() => {}); // surfaced in order by the consumer
      queue.push({ ...sample, result });
    });
  }

  /**
   * Counts one of `slab`'s samples as taken from the queue. A slab whose every slot has been taken without a
   * batch starting in it (its samples were skipped, or copied down into the batch before) holds nothing anyone
   * reads: it goes back to the spares at once, else a stream of undecodable records allocated a slab per
   * `batchSize` of them that no release() ever returned.
   */
  private settled(slab: Slab): void {
    if (++slab.taken === this.options.batchSize && !slab.owned && this.spare.length < MAX_SPARE) this.spare.push(slab);
  }

  private slab(sizes: number[]): Slab {
    const reused = this.spare.pop();
    if (reused) return reused.reset();
    this.stats.buffers++;
    return new Slab(sizes, this.options.batchSize, this.cropDtype);
  }

  /** Live worker threads (0 once closed). */
  get threads(): number {
    return this.pool.threads;
  }

  /**
   * Stops the worker threads; the loader cannot be iterated afterwards. A loop in progress ends: its pending or
   * next `next()` is done, with no batch, even one whose samples were already made. Safe to call twice.
   */
  async close(): Promise<void> {
    this.spent ??= 'closed';
    this.closed = true;
    await this.pool.close();
  }
}

/** Records in the pool at once must be a positive integer: 0 would never dispatch a record and spin. */
function checkInflight(inflight: number | undefined): void {
  if (inflight === undefined) return;
  if (!Number.isSafeInteger(inflight) || inflight < 1 || inflight > MAX_INFLIGHT) {
    throw new ConfigError(`inflight must be an integer from 1 to ${MAX_INFLIGHT}, got ${shown(inflight)}`);
  }
}

/** The most records in the pool at once: far above any useful value (12 per thread), below overflow. */
const MAX_INFLIGHT = 1 << 20;

/**
 * The most bytes one batch's crop buffers may take, all its crops together: 4 GiB. The loader holds several
 * batches' buffers at once (those being filled, up to MAX_SPARE released ones, those the consumer holds), so
 * this is already tens of GiB at the limit; beyond it, allocation fails on ordinary machines with an untyped
 * RangeError at the first batch. SwAV's 2x224 + 6x96 crops fit batches of 2299 as float32, 9198 as uint8.
 */
export const MAX_BATCH_BYTES = 4 * 2 ** 30;

/** Refuses, before any thread starts, a batch whose crop buffers exceed MAX_BATCH_BYTES, saying what fits. */
function checkBatchBytes(batchSize: number, config: AugmentConfig, dtype: CropDtype): void {
  const values = cropList(config).reduce((n, { size }) => n + size * size * 3, 0);
  const perSample = values * (dtype === 'uint8' ? 1 : 4);
  if (batchSize * perSample <= MAX_BATCH_BYTES) return;
  const crops = config.crops.map((g) => `${g.count}x${g.size}`).join(',');
  const fits = Math.floor(MAX_BATCH_BYTES / perSample);
  const asBytes = dtype === 'uint8' ? 0 : Math.min(65536, Math.floor(MAX_BATCH_BYTES / values));
  const what =
    fits >= 1
      ? `batch ${fits} fits${asBytes > fits ? ` (${asBytes} with cropDtype 'uint8')` : ''}`
      : 'not even one sample fits: fewer or smaller crops';
  throw new ConfigError(
    `batch ${batchSize} of crops ${crops} as ${dtype} needs ${gib(batchSize * perSample)} of crop buffers, ` +
      `more than the ${gib(MAX_BATCH_BYTES)} a batch may take: ${what}`,
  );
}

const gib = (bytes: number) => `${+(bytes / 2 ** 30).toPrecision(3)} GiB`;

/** A record and the batch slot its crops go to. */
interface Placed {
  item: StreamItem;
  slab: Slab;
  slot: number;
}

/** A placed record sent to the pool, with its own result. */
interface Dispatched extends Placed {
  result: Promise<AugmentResult>;
}

/**
 * Watches, in stream order, for an epoch read from its start (position 0) to its end without one sample:
 * the records exist but none can be used, so reading them again would spin forever. Counting per epoch
 * (not consecutive failures against an epoch's size) keeps a dataset with one good image in a thousand,
 * whose good images may sit at opposite ends of two epochs, from looking stuck.
 */
class EpochProgress {
  private epoch = -1;
  private units: Array<[number, number]> = [];
  private fromStart = false;
  private samples = 0;
  private failures: Record<string, number> = {};

  /** Before counting `item`: the epoch it ends (its units and failures), when that epoch gave nothing, else null. */
  take(item: StreamItem): { units: Array<[number, number]>; failures: Record<string, number> } | null {
    if (item.epoch === this.epoch) return null;
    const stuck = this.end();
    [this.epoch, this.units, this.fromStart, this.samples, this.failures] = [
      item.epoch,
      item.cursor.units ?? [],
      item.position === 0,
      0,
      {},
    ];
    return stuck;
  }

  count(error: string | null): void {
    if (error === null) this.samples++;
    else this.failures[error] = (this.failures[error] ?? 0) + 1;
  }

  /** At the end of the stream: its last epoch, when that epoch gave nothing, else null. */
  end(): { units: Array<[number, number]>; failures: Record<string, number> } | null {
    const stuck = this.fromStart && this.samples === 0 && Object.keys(this.failures).length > 0;
    return stuck ? { units: this.units, failures: this.failures } : null;
  }
}

/** Records a pool task carries (see AugmentPool.augment). */
const CHUNK = 4;

/** Released slabs kept for reuse at most: a consumer holding many batches before releasing them gets no more. */
const MAX_SPARE = 4;

/**
 * One batch's worth of shared buffers, one per crop, that workers write samples into at their slot: 4 bytes
 * a value for float32 crops, 1 for uint8 (the workers' views use the same sizes: see worker.ts).
 */
class Slab {
  readonly shared: SharedArrayBuffer[];
  readonly crops: Float32Array[] | Uint8Array[];
  /** Values per sample of each crop. */
  readonly lengths: number[];
  dispatched = 0;
  /** Samples taken from the queue (settled, and moved or skipped); see MultiCropLoader.settled. */
  taken = 0;
  /** Whether a batch starts in this slab: its buffers are then the batch's until it is released. */
  owned = false;

  constructor(
    readonly sizes: number[],
    capacity: number,
    dtype: CropDtype,
  ) {
    this.lengths = sizes.map((size) => size * size * 3);
    const bytes = dtype === 'uint8' ? 1 : 4;
    this.shared = this.lengths.map((n) => new SharedArrayBuffer(capacity * n * bytes));
    this.crops =
      dtype === 'uint8'
        ? this.shared.map((buffer) => new Uint8Array(buffer))
        : this.shared.map((buffer) => new Float32Array(buffer));
  }

  reset(): this {
    this.dispatched = 0;
    this.taken = 0;
    this.owned = false;
    return this;
  }
}

/**
 * Assembles a batch in the slab its first sample was written to. Samples land at the slot they were
 * dispatched to; after a skipped record the later ones move down a slot (and the batch borrows the next
 * slab's first samples), so batches stay dense and in stream order. Every slot moved from or into belongs
 * to a record already settled: results are taken in order. A finished batch has taken `batchSize` samples
 * from its first one on, so every slot of its slab has settled and no later batch starts in that slab:
 * once released, it is free for reuse.
 */
class BatchBuilder {
  readonly keys: string[] = [];

  constructor(
    private readonly slab: Slab,
    /** What a uint8 batch's crops carry to be finished (the loader's config). */
    private readonly norm: Pick<ByteCrop, 'mean' | 'std'>,
  ) {
    slab.owned = true;
  }

  get count(): number {
    return this.keys.length;
  }

  add(key: string, from: Slab, slot: number): void {
    const at = this.keys.length;
    if (from !== this.slab || slot !== at) {
      from.lengths.forEach((n, c) =>
        this.slab.crops[c]!.set(from.crops[c]!.subarray(slot * n, (slot + 1) * n), at * n),
      );
    }
    this.keys.push(key);
  }

  finish(cursor: StreamCursor, epoch: number, spare: Slab[]): MultiCropBatch {
    const n = this.keys.length,
      slab = this.slab;
    const crops = slab.sizes.map((size, c): CropTensor => {
      const data = slab.crops[c]!,
        used = n * slab.lengths[c]!;
      const whole = used === data.length ? data : data.slice(0, used);
      if (whole instanceof Float32Array) return { size, data: whole };
      return { size, dtype: 'uint8', data: whole, mean: this.norm.mean, std: this.norm.std };
    });
    let released = false;
    const release = () => {
      if (!released && spare.length < MAX_SPARE) spare.push(slab);
      released = true;
    };
    return { keys: this.keys, crops, epoch, cursor, release };
  }
}
