/**
 * One unit of an ingest job, as the local executor (local.ts), a retry pass (retry.ts) and a queue worker
 * (queue.ts, `ingestUnit`) all run it: its rows are fetched, decoded and deduped here, and written and
 * committed by the shards' UnitWriter (shard, failure file, unit record last). How a rerun resumes: local.ts.
 */
import { availableParallelism } from 'node:os';
import PQueue from 'p-queue';
import type { UnitRecord } from '../shards/dataset.js';
import type { FailureReason } from '../shards/failures.js';
import { openStore, type Store, type StoreOptions } from '../shards/store.js';
import { UnitWriter, type UnitInput } from '../shards/unit-writer.js';
import { decodeImage } from './decode.js';
import { DedupeIndex, isPending, type Deduper, type DuplicateKind, type PendingDuplicate } from './dedupe.js';
import { Fetcher } from './fetch.js';
import { Reorder } from './reorder.js';
import { DEFAULT_CONCURRENCY, DEFAULT_DEDUPE_RADIUS, type IngestOptions } from './run-options.js';
import type { IngestProgress } from './summary.js';
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
  /** Checked before a unit's shard and its record are put; a throw leaves the unit uncommitted (UnitTask.fence). */
  fence?: () => Promise<void>;
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
  /** Stops the unit: no new row starts and it is never committed (a queue worker's stop). */
  signal?: AbortSignal;
  /**
   * Checked just before the unit's shard and again before its record are put: throws when this run may no
   * longer commit the unit (a queue worker that lost the unit's lock while paused, the unit redone elsewhere).
   */
  fence?: () => Promise<void>;
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
    options: { lists: [], out: task.out, ...task.options, onProgress: task.onProgress, signal: task.signal },
    progress: newProgress(1),
    started: Date.now(),
    commits: { done: 0, pending: null },
    fence: task.fence,
  };
  try {
    return await runUnit(ctx, task.unit, task.rows);
  } finally {
    await closeFetcher(fetcher, task.signal);
  }
}

export function report(ctx: Context): void {
  ctx.progress.elapsedSeconds = (Date.now() - ctx.started) / 1000;
  ctx.options.onProgress?.(ctx.progress);
}

type RowOutcome =
  | { ok: true; record: UnitInput }
  | { ok: false; duplicate: DuplicateKind }
  | { ok: false; pending: PendingDuplicate }
  | { ok: false; reason: FailureReason };

/** A fetched and decoded row before dedupe: dedupe is part of settling, in position order. */
type Fetched = Extract<RowOutcome, { ok: true } | { reason: FailureReason }>;

/** A row found to duplicate an image another unit has not committed yet: settled just before the commit. */
interface HeldRow {
  row: UrlRow;
  duplicate: PendingDuplicate;
}

/** What settling a unit's rows gathers besides its writer's records. */
interface Settling {
  writer: UnitWriter;
  unit: number;
  held: HeldRow[];
  /** Images whose index verdict never arrived: the index may hold claims for them that the unit withdraws. */
  unsure: Array<{ sha256: Uint8Array; phash: bigint; row: number }>;
}

/**
 * Finished-but-unsettled rows held per download slot, waiting for an earlier row to settle. A slow row stops new
 * fetches only once this many times `concurrency` later rows have finished, so fetching goes on for several
 * rounds past it; and memory stays bounded: the feeder adds a row only while fewer than HELD_PER_SLOT x
 * concurrency are held and the queue has under 2x concurrency, so rows started but unsettled stay under
 * (HELD_PER_SLOT + 2) x concurrency. A held row is a decoded record (the re-encoded image, tens of KB at the
 * default maxSide 512; its download's bytes are already released), about 20 MB at the default concurrency 64.
 */
export const HELD_PER_SLOT = 4;

/**
 * Fetches and decodes a unit's rows concurrently, then dedupes and writes them in row order, then commits.
 *
 * Deterministic: a unit's records are written in position order and, of duplicates within the unit, the first
 * in list order is kept, whatever order the downloads finish in (given the same responses and the same dedupe
 * index before the unit). The local executor (runIngest, retry passes) runs units one at a time with one
 * index, so a whole job is deterministic, resumed or not. Queue workers share a Redis index: units that run at
 * the same time (several workers, or a worker's concurrency above 1) race for images they have in common, so
 * which of them keeps one depends on timing; each unit's own order still holds.
 */
export async function runUnit(ctx: Context, unit: number, rows: UrlRow[]): Promise<UnitRecord> {
  const signal = ctx.options.signal;
  const timings = { fetch: 0, decode: 0 };
  const writer = await UnitWriter.open(ctx.store, unit, { extraColumns: ctx.extraColumns });
  const concurrency = ctx.options.concurrency ?? DEFAULT_CONCURRENCY;
  const queue = new PQueue({ concurrency });
  const u: Settling = { writer, unit, held: [], unsure: [] };
  const order = new Reorder<Fetched>((position, fetched) => settleRow(ctx, u, rows[position]!, position, fetched));
  try {
    let started = 0;
    for (const [position, row] of rows.entries()) {
      await queue.onSizeLessThan(concurrency); // bounded: at most 2x concurrency rows in flight
      await order.room(HELD_PER_SLOT * concurrency);
      if (signal?.aborted || order.failed) break;
      started++;
      void queue.add(async () => {
        const fetched = await processRow(ctx, row, timings).catch((): Fetched => ({
          ok: false,
          reason: 'internal_error',
        }));
        order.put(position, fetched); // settled later, in order: this slot is free for the next download now
      });
    }
    await queue.onIdle();
    await order.drained(started);
    await settleHeld(ctx, writer, u.held);
    if (u.unsure.length > 0) await ctx.index.release?.(u.unsure); // a throw: not committed, redone
    // Counted the moment its record is put: an interrupt that waits for `pending` then sees it.
    const counted = (put: Promise<void>) => (ctx.commits.pending = put.then(() => void ctx.commits.done++));
    await ctx.fence?.();
    const beforeCommit = async () => {
      await ctx.index.beforeCommit?.();
      await ctx.fence?.();
    };
    const record = await writer.commit({ inputs: rows.length, timings, signal, onCommitPoint: counted, beforeCommit });
    // Best effort: without the mark, other units' duplicates of this unit's images go to the confirmation pass.
    await ctx.index.afterCommit?.(unit).catch(() => {});
    return record;
  } finally {
    await writer.abort();
  }
}

/** Settles one row, in position order: dedupe (the first seen is kept), then write it, count it or list it. */
async function settleRow(ctx: Context, u: Settling, row: UrlRow, position: number, fetched: Fetched): Promise<void> {
  const { writer } = u;
  const outcome = fetched.ok ? await dedupe(ctx, u, position, fetched.record) : fetched;
  ctx.progress.urls++;
  if (outcome.ok) {
    ctx.progress.kept++;
    await writer.add(position, outcome.record);
  } else if ('pending' in outcome) {
    u.held.push({ row, duplicate: outcome.pending }); // counted once settled
  } else if ('duplicate' in outcome) {
    ctx.progress.duplicates++;
    writer.duplicate(outcome.duplicate);
  } else {
    ctx.progress.failed++;
    writer.fail(row.index, row.url, outcome.reason);
  }
  report(ctx);
}

/**
 * Settles the held rows: a duplicate whose image another unit has committed since is counted as one; the rest
 * are listed `duplicate_unconfirmed` (an index that cannot answer included), for the confirmation pass.
 */
async function settleHeld(ctx: Context, writer: UnitWriter, held: readonly HeldRow[]): Promise<void> {
  if (held.length === 0) return;
  const kinds = await (ctx.index.confirm?.(held.map((h) => h.duplicate)) ?? Promise.resolve([])).catch(() => []);
  for (const [i, { row }] of held.entries()) {
    const kind = kinds[i];
    if (kind) {
      ctx.progress.duplicates++;
      writer.duplicate(kind);
    } else {
      ctx.progress.failed++;
      writer.fail(row.index, row.url, 'duplicate_unconfirmed');
    }
  }
  report(ctx);
}

/**
 * The index's verdict on a decoded record, asked twice if need be (a claim is named by its row, so a second
 * ask answers as the first would have). An index that throws twice (Redis gone) fails this row only, and the
 * row's image joins `unsure`: the index may have claimed it without the answer arriving.
 */
async function dedupe(ctx: Context, u: Settling, position: number, record: UnitInput): Promise<RowOutcome> {
  for (let ask = 1; ; ask++) {
    try {
      const verdict = await ctx.index.check(record.sha256, record.phash, u.unit, position);
      if (isPending(verdict)) return { ok: false, pending: verdict };
      return verdict ? { ok: false, duplicate: verdict } : { ok: true, record };
    } catch {
      if (ask < 2) continue;
      u.unsure.push({ sha256: record.sha256, phash: record.phash, row: position });
      return { ok: false, reason: 'internal_error' };
    }
  }
}

async function processRow(ctx: Context, row: UrlRow, timings: Record<string, number>): Promise<Fetched> {
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
