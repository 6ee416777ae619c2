/**
 * The local ingest executor: runs the units plan.ts plans, in this process. Each unit's rows are fetched,
 * decoded and deduped here, and written and committed by the shards' UnitWriter (shard, failure file, unit
 * record last), exactly as a queue worker (queue.ts) does with `ingestUnit`.
 *
 * Resume rests on two facts: unit membership is a pure function of the source (row index / unit size), and a
 * unit is committed only by its record, written after its shard. So a rerun skips committed units and redoes
 * the rest from scratch, and the dedupe index is rebuilt from committed shards, never kept only in memory.
 * Each failed row is listed in the unit's failure file, so `--retry-failed` (retry.ts) can refetch exactly
 * the failed URLs of committed units.
 */
import { availableParallelism } from 'node:os';
import PQueue from 'p-queue';
import type { UnitRecord } from '../shards/dataset.js';
import type { FailureReason } from '../shards/failures.js';
import { openStore, type Store, type StoreOptions } from '../shards/store.js';
import { UnitWriter, type UnitInput } from '../shards/unit-writer.js';
import { decodeImage } from './decode.js';
import { DedupeIndex, type Deduper } from './dedupe.js';
import { Fetcher } from './fetch.js';
import { planIngest, summarisePlan } from './plan.js';
import {
  abortable,
  DEFAULT_CONCURRENCY,
  DEFAULT_DEDUPE_RADIUS,
  validateIngestOptions,
  type IngestOptions,
} from './run-options.js';
import { interruptedError, type IngestProgress, type IngestSummary } from './summary.js';
import { checkUrl, type UrlRow } from './url-list.js';

export { abortable, validateIngestOptions, type IngestOptions } from './run-options.js';
export { groupUnits } from './plan.js';
export type { IngestProgress, IngestSummary } from './summary.js';

/** Decodes run on the libuv threadpool (sharp); more than the cores would only queue there. */
const DECODE_CONCURRENCY = Math.max(1, availableParallelism());

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
    const plan = await planIngest(options);
    totalUnits = plan.job.units;
    committedBefore = plan.skipped;
    ctx = await abortable(
      createContext(options, plan.store, fetcher, plan.committed, plan.extraColumns, plan.job.units),
      signal,
    );
    const run: UnitRecord[] = [];
    for await (const { unit, rows, committed } of plan.units()) {
      signal?.throwIfAborted();
      if (committed) {
        ctx.progress.unitsSkipped++;
      } else {
        run.push(await abortable(runUnit(ctx, unit, rows), signal));
        ctx.progress.unitsDone++;
      }
      report(ctx);
    }
    return summarisePlan(plan, run, ctx.started, options.retryHint);
  } catch (err) {
    if (signal?.aborted)
      throw interruptedError(signal.reason, committedBefore + (await unitsCommitted(ctx)), totalUnits);
    throw err;
  } finally {
    await closeFetcher(fetcher, signal);
  }
}

/** The state one run shares across its units; the dedupe index starts from every committed unit of the store. */
export async function createContext(
  options: IngestOptions,
  store: Store,
  fetcher: Fetcher,
  committed: readonly UnitRecord[],
  extraColumns: string[],
  unitsTotal: number,
): Promise<Context> {
  return {
    store,
    fetcher,
    index: await DedupeIndex.fromDataset(store, committed, options.dedupeRadius ?? DEFAULT_DEDUPE_RADIUS),
    decodeQueue: new PQueue({ concurrency: DECODE_CONCURRENCY }),
    extraColumns,
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

export function report(ctx: Context): void {
  ctx.progress.elapsedSeconds = (Date.now() - ctx.started) / 1000;
  ctx.options.onProgress?.(ctx.progress);
}

type RowOutcome =
  | { ok: true; record: UnitInput }
  | { ok: false; duplicate: 'exact' | 'near' }
  | { ok: false; duplicate?: undefined; reason: FailureReason };

/** Fetches, decodes and dedupes a unit's rows into a UnitWriter, then commits the unit. */
export async function runUnit(ctx: Context, unit: number, rows: UrlRow[]): Promise<UnitRecord> {
  const signal = ctx.options.signal;
  const timings = { fetch: 0, decode: 0 };
  const writer = await UnitWriter.open(ctx.store, unit, { extraColumns: ctx.extraColumns });
  const concurrency = ctx.options.concurrency ?? DEFAULT_CONCURRENCY;
  const queue = new PQueue({ concurrency });
  try {
    for (const [position, row] of rows.entries()) {
      await queue.onSizeLessThan(concurrency); // bounded: at most 2x concurrency rows in memory
      if (signal?.aborted) break;
      void queue.add(async () => {
        const outcome = await processRow(ctx, row, timings, unit).catch((): RowOutcome => ({
          ok: false,
          reason: 'internal_error',
        }));
        ctx.progress.urls++;
        if (outcome.ok) {
          ctx.progress.kept++;
          await writer.add(position, outcome.record);
        } else if (outcome.duplicate) {
          ctx.progress.duplicates++;
          writer.duplicate(outcome.duplicate);
        } else {
          ctx.progress.failed++;
          writer.fail(row.index, row.url, outcome.reason);
        }
        report(ctx);
      });
    }
    await queue.onIdle();
    // Counted the moment its record is put: an interrupt that waits for `pending` then sees it.
    const counted = (put: Promise<void>) => (ctx.commits.pending = put.then(() => void ctx.commits.done++));
    return await writer.commit({ inputs: rows.length, timings, signal, onCommitPoint: counted });
  } finally {
    await writer.abort();
  }
}

async function processRow(
  ctx: Context,
  row: UrlRow,
  timings: Record<string, number>,
  unit: number,
): Promise<RowOutcome> {
  const bad = row.bad ?? checkUrl(row.url);
  if (bad) return { ok: false, reason: bad };
  let t0 = performance.now();
  // Held: a body stays in the fetcher's byte budget until decoded, so downloads queued for the decoder count.
  const fetched = await ctx.fetcher.fetch(row.url, undefined, { hold: true });
  timings.fetch! += (performance.now() - t0) / 1000;
  if (!fetched.ok) return { ok: false, reason: fetched.reason };
  t0 = performance.now();
  const decoded = await ctx.decodeQueue
    .add(() => decodeImage(fetched.bytes, ctx.options.decode))
    .finally(fetched.release);
  timings.decode! += (performance.now() - t0) / 1000;
  if (!decoded.ok) return decoded;
  const duplicate = await ctx.index.check(decoded.sha256, decoded.phash, unit);
  if (duplicate) return { ok: false, duplicate };
  return {
    ok: true,
    record: {
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
