/**
 * Writes one Arrow IPC *file* per unit of work. Rows are grouped into record batches bounded in bytes and
 * rows, so a reader can fetch any one batch with a single ranged GET. The file is staged in a local directory
 * (ingest uses staging.ts, where a rerun finds a killed run's leftovers) and handed to `store.put` whole, which
 * is atomic: a shard is either fully there or absent.
 */
import { createHash, type Hash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { RecordBatchFileWriter, type Schema } from 'apache-arrow';
import { ConfigError } from '../errors.js';
import { imageSchema, toRecordBatch, type ImageRecord } from './schema.js';
import type { Store } from './store.js';
import { diskWriteError } from './disk-errors.js';
import { makeDirs } from './make-dirs.js';
import { stagedShardName } from './keys.js';

export interface ShardWriterOptions {
  /** Extra URL-list columns, stored as nullable strings. @default [] */
  extraColumns?: readonly string[];
  /**
   * Most image bytes in one record batch: a record that would take its batch past this starts the next one,
   * so only a single image larger than this makes a larger batch (of that image alone). @default 8 MiB
   */
  maxBatchBytes?: number;
  /** A record batch is closed at this many rows. @default 1024 */
  maxBatchRows?: number;
  /** The folder the shard's file is staged in before upload (made if missing); ingest passes `openStaging(store)`. @default os.tmpdir() */
  stagingDir?: string;
}

export interface ShardInfo {
  records: number;
  /** Size of the shard file in bytes. */
  bytes: number;
  batches: number;
  /** SHA-256 of the shard file, hex: what `inspect --verify` checks the stored file against. */
  sha256: string;
}

export class ShardWriter {
  readonly schema: Schema;
  private readonly maxBatchBytes: number;
  private readonly maxBatchRows: number;
  private readonly stagingDir: string;
  private pending: ImageRecord[] = [];
  private pendingBytes = 0;
  private records = 0;
  private batches = 0;
  private file?: { path: string; out: WriteStream; writer: RecordBatchFileWriter; hash: Hash };

  constructor(options: ShardWriterOptions = {}) {
    this.schema = imageSchema(options.extraColumns ?? []);
    this.maxBatchBytes = positive('maxBatchBytes', options.maxBatchBytes ?? 8 * 1024 * 1024);
    this.maxBatchRows = positive('maxBatchRows', options.maxBatchRows ?? 1024);
    this.stagingDir = options.stagingDir ?? tmpdir();
  }

  get count(): number {
    return this.records + this.pending.length;
  }

  async add(record: ImageRecord): Promise<void> {
    // A batch is what a reader fetches whole: it stays within the bound, not one image past it.
    if (this.pending.length > 0 && this.pendingBytes + record.image.byteLength > this.maxBatchBytes) await this.flush();
    this.pending.push(record);
    this.pendingBytes += record.image.byteLength;
    if (this.pendingBytes >= this.maxBatchBytes || this.pending.length >= this.maxBatchRows) await this.flush();
  }

  /** Finishes the file and uploads it to `key` atomically. The writer cannot be reused. */
  async finish(store: Store, key: string): Promise<ShardInfo> {
    await this.flush();
    const file = await this.open(); // an empty shard is still a valid Arrow file with the schema
    try {
      file.writer.finish();
      const { size } = await staged(file.path, async () => {
        await finished(file.out);
        return stat(file.path);
      });
      await store.put(key, createReadStream(file.path));
      return { records: this.records, bytes: size, batches: this.batches, sha256: file.hash.digest('hex') };
    } finally {
      await this.abort();
    }
  }

  /** Discards the staged file; safe to call more than once. */
  async abort(): Promise<void> {
    const file = this.file;
    this.file = undefined;
    this.pending = [];
    if (!file) return;
    file.out.destroy();
    await rm(file.path, { force: true });
  }

  private async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const file = await this.open();
    const batch = toRecordBatch(this.schema, this.pending);
    this.records += this.pending.length;
    this.batches += 1;
    this.pending = [];
    this.pendingBytes = 0;
    file.writer.write(batch);
    // Respect the file stream's backpressure so a fast producer cannot buffer a whole shard in memory.
    await staged(file.path, async () => {
      if (file.out.errored) throw file.out.errored;
      if (file.out.writableNeedDrain) await once(file.out, 'drain');
    });
  }

  private async open() {
    if (this.file) return this.file;
    await makeDirs(this.stagingDir);
    const path = join(this.stagingDir, stagedShardName());
    const out = createWriteStream(path);
    // A write error (a full disk) is kept on `out.errored` and thrown by the next flush or finish; without a
    // listener it would be an uncaught 'error' event, since the Arrow stream's pipe rethrows it.
    out.on('error', () => {});
    // An unwritable staging folder fails here, as a rejection, not a stray 'error'.
    await staged(path, () => once(out, 'ready'));
    const writer = new RecordBatchFileWriter();
    // Hashed as written: the staged file is not read again to learn its hash.
    const hash = createHash('sha256');
    const bytes = writer.toNodeStream();
    bytes.on('data', (chunk: Uint8Array) => hash.update(chunk));
    bytes.pipe(out);
    writer.reset(undefined, this.schema);
    this.file = { path, out, writer, hash };
    return this.file;
  }
}

/**
 * Runs a step of writing the staged file; a disk error (full, read-only, forbidden) is thrown as diskWriteError
 * words it, naming the staged file, as the store's own writes are. Other errors are thrown as they are.
 */
async function staged<T>(path: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw diskWriteError(err, path) ?? err;
  }
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new ConfigError(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}
