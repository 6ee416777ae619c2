/**
 * Reads a shard from any store without downloading it whole: one ranged GET for the tail (footer), then one
 * ranged GET per record batch, located through the footer's block table. apache-arrow's file reader is driven
 * through a FileHandle-shaped object, served from the prefetched tail, only to parse the footer and schema;
 * each batch is then fetched whole and decoded as a one-message IPC stream.
 */
import type { FileHandle } from 'node:fs/promises';
import { RecordBatchReader, RecordBatchStreamWriter, Table, type RecordBatch, type Schema } from 'apache-arrow';
import { ConfigError, InvalidShardError, NotFoundError, shown, WildstreamError } from '../errors.js';
import { checkBatchMessage, checkFooter } from './arrow-bounds.js';
import { checkSchema, fromRecordBatch, type ImageRecord } from './schema.js';
import { checkStore, type Store } from './store.js';

/** The tail fetched on open: enough for the footer of any shard with a few thousand batches. */
const TAIL_BYTES = 64 * 1024;
const MAGIC = Buffer.from('ARROW1');
/** An IPC stream ends with a continuation marker and a zero length. */
const EOS_BYTES = 8;
/** "ARROW1" + 2 bytes padding at the start, and at the end footer length (4) + "ARROW1" (6). */
const MIN_FILE_BYTES = 8 + 4 + 6;

type ArrowFileReader = Awaited<ReturnType<typeof RecordBatchReader.from>> & {
  footer: {
    numRecordBatches: number;
    getRecordBatch(i: number): { offset: number; metaDataLength: number; bodyLength: number } | null;
  };
};

export interface ShardReaderOptions {
  /** The shard's size if already known (from its unit record), which saves a HEAD request. */
  size?: number;
  /** Record batches in SharedArrayBuffers: their images can go to worker threads as views. @default false */
  shared?: boolean;
}

export class ShardReader {
  private constructor(
    readonly key: string,
    private readonly file: RangedFile,
    private readonly reader: ArrowFileReader,
    readonly schema: Schema,
    readonly extraColumns: readonly string[],
    /** The schema as an IPC stream message, prefixed to each fetched block to decode it. */
    private readonly schemaMessage: Uint8Array,
    private readonly shared: boolean,
  ) {}

  /**
   * Opens the shard at `key` of `store`: its footer and schema, with one or two ranged GETs. Throws a
   * ConfigError when `store` is not a Store or `options.size` not a whole number of bytes, an InvalidShardError
   * when the shard is missing, truncated or not an Arrow IPC file.
   */
  static async open(store: Store, key: string, options: ShardReaderOptions = {}): Promise<ShardReader> {
    checkStore(store, "ShardReader's store");
    const where = `${store.url}/${key}`;
    let size = options.size;
    if (size !== undefined && !(Number.isSafeInteger(size) && size >= 0))
      throw new ConfigError(`size (the shard's bytes) must be an integer >= 0, got ${shown(size)}`);
    if (size === undefined) {
      const info = await store.head(key);
      if (!info) throw new InvalidShardError(`${where}: shard does not exist`);
      size = info.size;
    }
    if (size < MIN_FILE_BYTES) throw new InvalidShardError(`${where}: not an Arrow IPC file (only ${size} bytes)`);
    const file = new RangedFile(store, key, size);
    const tailStart = Math.max(0, size - TAIL_BYTES);
    try {
      await file.prefetch(tailStart, size - 1);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      throw new InvalidShardError(`${where}: missing or shorter than the ${size} bytes expected (truncated?)`, {
        cause: err,
      });
    }
    if (!file.peek(size - MAGIC.length, MAGIC.length)?.equals(MAGIC)) {
      throw new InvalidShardError(`${where}: not an Arrow IPC file (no trailing ARROW1 magic; truncated?)`);
    }
    const footerLength = file.peek(size - MAGIC.length - 4, 4)!.readInt32LE(0);
    if (footerLength <= 0 || footerLength > size - MIN_FILE_BYTES) {
      throw new InvalidShardError(`${where}: corrupt Arrow footer length ${footerLength}`);
    }
    const footerStart = size - MAGIC.length - 4 - footerLength;
    if (footerStart < tailStart) await file.prefetch(footerStart, tailStart - 1);
    // Checked before apache-arrow trusts it; a footer longer than the tail spans two fetched ranges.
    const footer = file.peek(footerStart, footerLength) ?? (await file.fetch(footerStart, size - MAGIC.length - 5));
    checkFooter(footer, footerStart, where);
    // The leading magic: served from the tail for small files, else one 8-byte GET.
    if (tailStart > 0) await file.prefetch(0, 7);
    try {
      const reader = (await RecordBatchReader.from(file as unknown as FileHandle)) as unknown as ArrowFileReader;
      if (!reader.isFile()) throw new InvalidShardError(`${where}: an Arrow stream, not an Arrow IPC file`);
      await reader.open();
      const extras = checkSchema(reader.schema, where);
      const stream = RecordBatchStreamWriter.writeAll(new Table(reader.schema)).toUint8Array(true);
      const schemaMessage = stream.subarray(0, stream.byteLength - EOS_BYTES);
      await file.close(); // the tail and magic are no longer needed
      return new ShardReader(key, file, reader, reader.schema, extras, schemaMessage, options.shared ?? false);
    } catch (err) {
      throw asShardError(err, where);
    }
  }

  get numBatches(): number {
    return this.reader.footer.numRecordBatches;
  }

  /** Bytes of batch `i` on the store (metadata + body), from the footer: what reading it will fetch. */
  batchBytes(i: number): number {
    const block = this.reader.footer.getRecordBatch(i);
    return block ? block.metaDataLength + Number(block.bodyLength) : 0;
  }

  /**
   * Reads batch `i` (0 to numBatches - 1) with one ranged GET. Another `i` is the caller's error, a ConfigError:
   * an InvalidShardError would say the shard is damaged, and readers skip a damaged shard.
   */
  async readBatch(i: number): Promise<RecordBatch> {
    if (!(Number.isSafeInteger(i) && i >= 0 && i < this.numBatches))
      throw new ConfigError(`record batch must be an integer from 0 to ${this.numBatches - 1}, got ${shown(i)}`);
    return this.decode(i, await this.fetch(i));
  }

  /**
   * Every batch in order, keeping up to `prefetch` ranged GETs in flight ahead of the one being decoded, so
   * request latency overlaps with transfer and decoding. Decoding stays sequential (the Arrow reader seeks).
   */
  async *batches(prefetch = 2): AsyncIterable<RecordBatch> {
    const inflight: Array<Promise<Uint8Array>> = [];
    let next = 0;
    const fill = () => {
      while (next < this.numBatches && inflight.length < Math.max(1, prefetch)) {
        const fetching = this.fetch(next++);
        fetching.catch(() => {}); // surfaced when awaited below, in order
        inflight.push(fetching);
      }
    };
    for (let i = 0; i < this.numBatches; i++) {
      fill();
      yield this.decode(i, await inflight.shift()!);
    }
  }

  /** Fetches the bytes of batch `i`: one ranged GET. */
  private async fetch(i: number): Promise<Uint8Array> {
    const where = `${this.file.where} batch ${i}`;
    const block = i >= 0 && i < this.numBatches ? this.reader.footer.getRecordBatch(i) : null;
    if (!block) throw new InvalidShardError(`${where}: no such record batch (shard has ${this.numBatches})`);
    const start = Number(block.offset);
    const end = start + block.metaDataLength + Number(block.bodyLength) - 1;
    if (start < 0 || end >= this.file.size) throw new InvalidShardError(`${where}: block lies outside the file`);
    return this.file.fetch(start, end, this.shared);
  }

  /**
   * Decodes a fetched block as a two-chunk IPC stream, the schema message then the block, so its vectors are
   * views into the fetched buffer: the file reader's path copies every body, and joining the two chunks
   * copied each batch once more (~2.7 MB a 64-image batch, external memory that drives the main thread's GCs).
   */
  private decode(i: number, block: Uint8Array): RecordBatch {
    const where = `${this.file.where} batch ${i}`;
    checkBatchMessage(block, where);
    try {
      const result = RecordBatchReader.from([this.schemaMessage, block] as unknown as Uint8Array).next();
      if (result.done || !result.value) throw new InvalidShardError(`${where}: unreadable record batch`);
      return result.value;
    } catch (err) {
      throw asShardError(err, where);
    }
  }

  /** Batch `i` as records. */
  async readRecords(i: number): Promise<ImageRecord[]> {
    return fromRecordBatch(await this.readBatch(i), this.extraColumns);
  }

  /** Every record, batch by batch. */
  async *records(): AsyncIterable<ImageRecord> {
    for await (const batch of this.batches()) yield* fromRecordBatch(batch, this.extraColumns);
  }
}

function asShardError(err: unknown, where: string): Error {
  if (err instanceof WildstreamError) return err;
  return new InvalidShardError(`${where}: corrupt Arrow data: ${(err as Error).message?.split('\n')[0]}`, {
    cause: err,
  });
}

/**
 * A FileHandle look-alike for apache-arrow (`fd`, `stat`, `read`, `close`). Reads are served from ranges
 * fetched ahead with `prefetch`; a read outside them falls back to its own ranged GET, so correctness never
 * depends on the prefetch plan, only the request count does.
 */
class RangedFile {
  readonly fd = -1;
  private readonly segments = new Map<number, Buffer>();

  constructor(
    private readonly store: Store,
    private readonly key: string,
    readonly size: number,
  ) {}

  get where(): string {
    return `${this.store.url}/${this.key}`;
  }

  fetch(start: number, end: number, shared = false): Promise<Uint8Array> {
    return this.store.getRange(this.key, start, end, { shared });
  }

  async prefetch(start: number, end: number): Promise<void> {
    const bytes = await this.fetch(start, end);
    this.segments.set(start, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)); // a view, no copy
  }

  peek(position: number, length: number): Buffer | undefined {
    for (const [start, bytes] of this.segments) {
      if (position >= start && position + length <= start + bytes.length) {
        return bytes.subarray(position - start, position - start + length);
      }
    }
    return undefined;
  }

  async stat(): Promise<{ size: number }> {
    return { size: this.size };
  }

  async read(buffer: Uint8Array, offset: number, length: number, position: number) {
    const n = Math.max(0, Math.min(length, this.size - position));
    if (n > 0) {
      const hit = this.peek(position, n) ?? (await this.store.getRange(this.key, position, position + n - 1));
      buffer.set(hit, offset);
    }
    return { bytesRead: n, buffer };
  }

  async close(): Promise<void> {
    this.segments.clear();
  }
}
