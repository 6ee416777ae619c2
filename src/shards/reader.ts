/**
 * Reads a shard from any store without downloading it whole: one ranged GET for the tail (footer), then one
 * ranged GET per record batch, located through the footer's block table. apache-arrow's file reader is driven
 * through a FileHandle-shaped object whose reads are served from those prefetched ranges.
 */
import type { FileHandle } from 'node:fs/promises';
import { RecordBatchReader, type RecordBatch, type Schema } from 'apache-arrow';
import { InvalidShardError, WildstreamError } from '../errors.js';
import { checkSchema, fromRecordBatch, type ImageRecord } from './schema.js';
import type { Store } from './store.js';

/** The tail fetched on open: enough for the footer of any shard with a few thousand batches. */
const TAIL_BYTES = 64 * 1024;
const MAGIC = Buffer.from('ARROW1');
/** "ARROW1" + 2 bytes padding at the start, and at the end footer length (4) + "ARROW1" (6). */
const MIN_FILE_BYTES = 8 + 4 + 6;

type ArrowFileReader = Awaited<ReturnType<typeof RecordBatchReader.from>> & {
  footer: { numRecordBatches: number; getRecordBatch(i: number): { offset: number; metaDataLength: number; bodyLength: number } | null };
  readRecordBatch(i: number): Promise<RecordBatch | null>;
};

export interface ShardReaderOptions {
  /** The shard's size if already known (from its unit record), which saves a HEAD request. */
  size?: number;
}

export class ShardReader {
  private constructor(
    readonly key: string,
    private readonly file: RangedFile,
    private readonly reader: ArrowFileReader,
    readonly schema: Schema,
    readonly extraColumns: readonly string[],
  ) {}

  static async open(store: Store, key: string, options: ShardReaderOptions = {}): Promise<ShardReader> {
    const where = `${store.url}/${key}`;
    let size = options.size;
    if (size === undefined) {
      const info = await store.head(key);
      if (!info) throw new InvalidShardError(`${where}: shard does not exist`);
      size = info.size;
    }
    if (size < MIN_FILE_BYTES) throw new InvalidShardError(`${where}: not an Arrow IPC file (only ${size} bytes)`);
    const file = new RangedFile(store, key, size);
    const tailStart = Math.max(0, size - TAIL_BYTES);
    await file.prefetch(tailStart, size - 1);
    if (!file.peek(size - MAGIC.length, MAGIC.length)?.equals(MAGIC)) {
      throw new InvalidShardError(`${where}: not an Arrow IPC file (no trailing ARROW1 magic; truncated?)`);
    }
    const footerLength = file.peek(size - MAGIC.length - 4, 4)!.readInt32LE(0);
    if (footerLength <= 0 || footerLength > size - MIN_FILE_BYTES) {
      throw new InvalidShardError(`${where}: corrupt Arrow footer length ${footerLength}`);
    }
    const footerStart = size - MAGIC.length - 4 - footerLength;
    if (footerStart < tailStart) await file.prefetch(footerStart, tailStart - 1);
    // The leading magic: served from the tail for small files, else one 8-byte GET.
    if (tailStart > 0) await file.prefetch(0, 7);
    try {
      const reader = (await RecordBatchReader.from(file as unknown as FileHandle)) as unknown as ArrowFileReader;
      if (!reader.isFile()) throw new InvalidShardError(`${where}: an Arrow stream, not an Arrow IPC file`);
      await reader.open();
      const extras = checkSchema(reader.schema, where);
      return new ShardReader(key, file, reader, reader.schema, extras);
    } catch (err) {
      throw asShardError(err, where);
    }
  }

  get numBatches(): number {
    return this.reader.footer.numRecordBatches;
  }

  /** Reads batch `i` with one ranged GET. */
  async readBatch(i: number): Promise<RecordBatch> {
    const where = `${this.file.where} batch ${i}`;
    const block = i >= 0 && i < this.numBatches ? this.reader.footer.getRecordBatch(i) : null;
    if (!block) throw new InvalidShardError(`${where}: no such record batch (shard has ${this.numBatches})`);
    const start = Number(block.offset);
    const end = start + block.metaDataLength + Number(block.bodyLength) - 1;
    if (end >= this.file.size) throw new InvalidShardError(`${where}: block extends past the end of the file`);
    await this.file.prefetch(start, end);
    try {
      const batch = await this.reader.readRecordBatch(i);
      if (!batch) throw new InvalidShardError(`${where}: unreadable record batch`);
      return batch;
    } catch (err) {
      throw asShardError(err, where);
    } finally {
      this.file.evict(start);
    }
  }

  /** Batch `i` as records. */
  async readRecords(i: number): Promise<ImageRecord[]> {
    return fromRecordBatch(await this.readBatch(i), this.extraColumns);
  }

  /** Every record, batch by batch. */
  async *records(): AsyncIterable<ImageRecord> {
    for (let i = 0; i < this.numBatches; i++) yield* await this.readRecords(i);
  }
}

function asShardError(err: unknown, where: string): Error {
  if (err instanceof WildstreamError) return err;
  return new InvalidShardError(`${where}: corrupt Arrow data: ${(err as Error).message?.split('\n')[0]}`, { cause: err });
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

  async prefetch(start: number, end: number): Promise<void> {
    this.segments.set(start, Buffer.from(await this.store.getRange(this.key, start, end)));
  }

  evict(start: number): void {
    this.segments.delete(start);
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
