/**
 * An ingest job: URL lists -> units -> (fetch, decode, dedupe) -> one shard + one committed record per unit.
 *
 * Resume rests on two facts: unit membership is a pure function of the lists (row index / unit size), and a
 * unit is committed only by its record, written after its shard. So a rerun skips committed units and redoes
 * the rest from scratch, and the dedupe index is rebuilt from committed shards, never kept only in memory.
 * Each failed row is listed in the unit's failure file, put before the record, so `--retry-failed` (retry.ts)
 * can refetch exactly the failed URLs of committed units.
 */
import { availableParallelism } from 'node:os';
import PQueue from 'p-queue';
import { ConfigError } from '../errors.js';
import { commitUnit, listUnits, shardKey, type UnitRecord } from '../shards/dataset.js';
import { httpStatusOf, writeFailures, type FailureRecord } from '../shards/failures.js';
import { openStore, type Store, type StoreOptions } from '../shards/store.js';
import { openStaging } from '../shards/staging.js';
import { ShardWriter } from '../shards/writer.js';
import { decodeImage, type DecodeOptions } from './decode.js';
import { DedupeIndex, type Deduper } from './dedupe.js';
import { Fetcher, type FetcherOptions } from './fetch.js';
import { inJob, planJob, registerJob } from './plan.js';
import { interruptedError, summariseRun, type IngestProgress, type IngestSummary } from './summary.js';
import { checkUrl, extraColumnsOf, listFiles, readUrlLists, type UrlListOptions, type UrlRow } from './url-list.js';

export interface IngestOptions {
  /** URL list files or directories. */
  lists: string[];
  /** Output store URL. */
  out: string;
  store?: StoreOptions;
  list?: UrlListOptions;
  decode?: DecodeOptions;
  fetch?: FetcherOptions;
  /** Downloads in flight. @default 64 */
  concurrency?: number;
  /** URLs per unit (one shard each). @default 10000 */
  unitSize?: number;
  /** Hamming radius for near duplicates; 0 turns near-dedupe off. @default 8 (measured: re-encodes, resizes and
   * +8% brightness move a pHash <= 4 bits, a 4% crop <= 10 (p90 8); distinct images differ by >= 18) */
  dedupeRadius?: number;
  /** Add a different job to an existing dataset. @default false */
  append?: boolean;
  /** Called after each finished image and unit. */
  onProgress?: (progress: IngestProgress) => void;
  /** Stops the run: no new row starts, the unit in progress is not committed, and the run rejects with an
   * InterruptedError (exit code 143 when the abort reason is 'SIGTERM', else 130). */
  signal?: AbortSignal;
  /** Whether the summary's warnings may suggest `--retry-failed` (crawl has no such option). @default true */
  retryHint?: boolean;
}

export type { IngestProgress, IngestSummary } from './summary.js';

/** Decodes run on the libuv threadpool (sharp); more than the cores would only queue there. */
const DECODE_CONCURRENCY = Math.max(1, availableParallelism());

export function validateIngestOptions(o: IngestOptions): void {
  const positive = (name: string, v: number | undefined, max = Number.MAX_SAFE_INTEGER) => {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 1 || v > max)) {
      throw new ConfigError(`${name} must be an integer from 1 to ${max}, got ${JSON.stringify(v)}`);
    }
  };
  positive('concurrency', o.concurrency, 4096);
  positive('unitSize', o.unitSize, 10_000_000);
  positive('decode.maxSide', o.decode?.maxSide, 16384);
  positive('decode.minSide', o.decode?.minSide, 16384);
  positive('decode.quality', o.decode?.quality, 100);
  positive('decode.memoryBudget', o.decode?.memoryBudget);
  if (o.dedupeRadius !== undefined && (!Number.isInteger(o.dedupeRadius) || o.dedupeRadius < 0 || o.dedupeRadius > 16)) {
    throw new ConfigError(`dedupeRadius must be an integer from 0 to 16, got ${o.dedupeRadius}`);
  }
  if (o.decode?.format && !['jpeg', 'webp'].includes(o.decode.format)) {
    throw new ConfigError(`format must be jpeg or webp, got ${JSON.stringify(o.decode.format)}`);
  }
}

export interface Context {
  store: Store;
  fetcher: Fetcher;
  index: Deduper;
  decodeQueue: PQueue;
  extraColumns: string[];
  options: IngestOptions;
  progress: IngestProgress;
  started: number;
  /** Units this context committed, and the commit in flight (an interrupt waits for it before counting). */
  commits: { done: number; pending: Promise<void> | null };
}

/** Rejects as soon as `signal` aborts, so a signal is answered without waiting for in-flight downloads. */
export function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Units a context committed, counted once a commit in flight (whose unit an interrupt did not stop) has ended. */
export async function unitsCommitted(ctx: Context | undefined): Promise<number> {
  await ctx?.commits.pending?.catch(() => {});
  return ctx?.commits.done ?? 0;
}

/** Closes a fetcher; after an abort without waiting, since in-flight downloads may take a timeout to end. */
export async function closeFetcher(fetcher: Fetcher, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted) void fetcher.close().catch(() => {});
  else await fetcher.close();
}

export function newProgress(unitsTotal: number): IngestProgress {
  return { unitsTotal, unitsDone: 0, unitsSkipped: 0, urls: 0, kept: 0, failed: 0, duplicates: 0, elapsedSeconds: 0 };
}

export async function runIngest(options: IngestOptions): Promise<IngestSummary> {
  validateIngestOptions(options);
  const { signal } = options;
  const fetcher = new Fetcher(options.fetch); // validates fetch options before anything is written
  let committedBefore = 0;
  let totalUnits = 0;
  let ctx: Context | undefined;
  try {
    const unitSize = options.unitSize ?? 10_000;
    const files = await listFiles(options.lists);
    const store = await openStore(options.out, options.store);
    const outputOptions = { decode: options.decode ?? {}, dedupeRadius: options.dedupeRadius ?? 8 };
    const planned = await abortable(planJob(files, options.list ?? {}, outputOptions, unitSize), signal);
    const { job, resumed, manifest } = await registerJob(store, planned, options.append ?? false);
    totalUnits = job.units;
    const committed = await listUnits(store);
    const done = new Set(committed.map((u) => u.unit));
    const member = inJob(manifest, job);
    const earlier = committed.filter((u) => member(u.unit));
    committedBefore = earlier.filter((u) => u.unit >= job.firstUnit && u.unit < job.firstUnit + job.units).length;
    ctx = await abortable(createContext(options, store, fetcher, committed, files, job.units), signal);
    const run: UnitRecord[] = [];
    for await (const [unit, rows] of groupUnits(readUrlLists(files, options.list), unitSize, job.firstUnit)) {
      signal?.throwIfAborted();
      if (done.has(unit)) {
        ctx.progress.unitsSkipped++;
      } else {
        run.push(await abortable(runUnit(ctx, unit, rows), signal));
        ctx.progress.unitsDone++;
      }
      report(ctx);
    }
    return summariseRun({ run, earlier, unitsTotal: job.units, skipped: ctx.progress.unitsSkipped, resumed, rows: job.rows, started: ctx.started, retryHint: options.retryHint });
  } catch (err) {
    if (signal?.aborted) throw interruptedError(signal.reason, committedBefore + (await unitsCommitted(ctx)), totalUnits);
    throw err;
  } finally {
    await closeFetcher(fetcher, signal);
  }
}

/** The state one run shares across its units; the dedupe index starts from every committed unit of the store. */
export async function createContext(options: IngestOptions, store: Store, fetcher: Fetcher, committed: readonly UnitRecord[],
  files: readonly string[], unitsTotal: number): Promise<Context> {
  return {
    store,
    fetcher,
    index: await DedupeIndex.fromDataset(store, committed, options.dedupeRadius ?? 8),
    decodeQueue: new PQueue({ concurrency: DECODE_CONCURRENCY }),
    extraColumns: await extraColumnsOf(files, options.list),
    options,
    progress: newProgress(unitsTotal),
    started: Date.now(),
    commits: { done: 0, pending: null },
  };
}

/** One unit of a distributed job, as a queue worker receives it (see queue.ts). */
export interface UnitTask {
  out: string;
  store?: StoreOptions;
  unit: number;
  rows: UrlRow[];
  extraColumns: string[];
  options: Pick<IngestOptions, 'decode' | 'fetch' | 'concurrency'>;
  dedupe: Deduper;
  onProgress?: (progress: IngestProgress) => void;
}

/** Processes one unit exactly as a local job does: fetch, decode, dedupe, write its shard, commit it. */
export async function ingestUnit(task: UnitTask): Promise<UnitRecord> {
  const fetcher = new Fetcher(task.options.fetch);
  const ctx: Context = {
    store: await openStore(task.out, task.store),
    fetcher,
    index: task.dedupe,
    decodeQueue: new PQueue({ concurrency: DECODE_CONCURRENCY }),
    extraColumns: task.extraColumns,
    options: { lists: [], out: task.out, ...task.options, onProgress: task.onProgress },
    progress: newProgress(1),
    started: Date.now(),
    commits: { done: 0, pending: null },
  };
  try {
    return await runUnit(ctx, task.unit, task.rows);
  } finally {
    await fetcher.close();
  }
}

export async function* groupUnits(rows: AsyncIterable<UrlRow>, unitSize: number, firstUnit: number): AsyncIterable<[number, UrlRow[]]> {
  let current: UrlRow[] = [];
  let unit = firstUnit;
  for await (const row of rows) {
    const rowUnit = firstUnit + Math.floor(row.index / unitSize);
    if (rowUnit !== unit && current.length > 0) yield [unit, current];
    if (rowUnit !== unit) current = [];
    unit = rowUnit;
    current.push(row);
  }
  if (current.length > 0) yield [unit, current];
}

export function report(ctx: Context): void {
  ctx.progress.elapsedSeconds = (Date.now() - ctx.started) / 1000;
  ctx.options.onProgress?.(ctx.progress);
}

type RowOutcome = { ok: true; record: Parameters<ShardWriter['add']>[0] } | { ok: false; reason: string; duplicate?: boolean };

/** Fetches, decodes and dedupes a unit's rows, then puts its shard, its failure file and (last) its record. */
export async function runUnit(ctx: Context, unit: number, rows: UrlRow[]): Promise<UnitRecord> {
  const startedAt = new Date();
  const failed: Record<string, number> = {};
  const failures: FailureRecord[] = [];
  const signal = ctx.options.signal;
  const duplicates = { exact: 0, near: 0 };
  const timings = { fetch: 0, decode: 0, write: 0 };
  const writer = new ShardWriter({ extraColumns: ctx.extraColumns, stagingDir: await openStaging(ctx.store) });
  const concurrency = ctx.options.concurrency ?? 64;
  const queue = new PQueue({ concurrency });
  let writes = Promise.resolve(); // ShardWriter.add must not interleave with itself
  try {
    for (const row of rows) {
      await queue.onSizeLessThan(concurrency); // bounded: at most 2x concurrency rows in memory
      if (signal?.aborted) break;
      void queue.add(async () => {
        const outcome = await processRow(ctx, row, timings, unit).catch((): RowOutcome => ({ ok: false, reason: 'internal_error' }));
        ctx.progress.urls++;
        if (outcome.ok) {
          ctx.progress.kept++;
          writes = writes.then(async () => {
            const t0 = performance.now();
            await writer.add(outcome.record);
            timings.write += (performance.now() - t0) / 1000;
          });
          await writes;
        } else if (outcome.duplicate) {
          ctx.progress.duplicates++;
          duplicates[outcome.reason as 'exact' | 'near']++;
        } else {
          ctx.progress.failed++;
          failed[outcome.reason] = (failed[outcome.reason] ?? 0) + 1;
          failures.push({ row: row.index, url: row.url, reason: outcome.reason, status: httpStatusOf(outcome.reason) });
        }
        report(ctx);
      });
    }
    await queue.onIdle();
    await writes;
    signal?.throwIfAborted(); // a unit cut short is never committed
    const info = await writer.finish(ctx.store, shardKey(unit));
    const failuresKey = await writeFailures(ctx.store, unit, failures);
    const record: UnitRecord = {
      unit,
      shard: shardKey(unit),
      records: info.records,
      bytes: info.bytes,
      batches: info.batches,
      inputs: rows.length,
      failed,
      ...(failuresKey ? { failures: failuresKey } : {}),
      duplicates,
      timings: { ...timings, wall: (Date.now() - startedAt.getTime()) / 1000 },
      startedAt: startedAt.toISOString(),
      committedAt: new Date().toISOString(),
    };
    signal?.throwIfAborted();
    ctx.commits.pending = commitUnit(ctx.store, record);
    await ctx.commits.pending;
    ctx.commits.done++;
    return record;
  } finally {
    await writer.abort();
  }
}

async function processRow(ctx: Context, row: UrlRow, timings: Record<string, number>, unit: number): Promise<RowOutcome> {
  const bad = row.bad ?? checkUrl(row.url);
  if (bad) return { ok: false, reason: bad };
  let t0 = performance.now();
  // Held: a body stays in the fetcher's byte budget until decoded, so downloads queued for the decoder count.
  const fetched = await ctx.fetcher.fetch(row.url, undefined, { hold: true });
  timings.fetch! += (performance.now() - t0) / 1000;
  if (!fetched.ok) return fetched;
  t0 = performance.now();
  const decoded = await ctx.decodeQueue.add(() => decodeImage(fetched.bytes, ctx.options.decode)).finally(fetched.release);
  timings.decode! += (performance.now() - t0) / 1000;
  if (!decoded.ok) return decoded;
  const duplicate = await ctx.index.check(decoded.sha256, decoded.phash, unit);
  if (duplicate) return { ok: false, reason: duplicate, duplicate: true };
  return {
    ok: true,
    record: {
      key: String(row.index).padStart(12, '0'),
      url: row.url,
      sha256: decoded.sha256,
      phash: decoded.phash,
      width: decoded.width,
      height: decoded.height,
      mime: decoded.mime,
      image: decoded.image,
      caption: row.caption,
      sourcePage: row.sourcePage,
      extra: row.extra,
    },
  };
}
