/**
 * `ingest --retry-failed`: refetches the failed URLs of a job's committed units without duplicating anything.
 *
 * A retry is a *pass*: a manifest entry after every existing one (`retryOf` = the job's fingerprint, `pass` n,
 * `retryReasons`), registered before any of its units is written, whose units hold the rows it recovers.
 * Which rows pass n refetches is a pure function of committed data: start from the failure files of the job's
 * units; for each earlier pass in order, drop the rows it refetched (their latest outcome is that pass's) and
 * add its units' failure files; pass n takes the rows whose latest outcome is a failure with one of its reasons.
 * What must stay true, and why it follows:
 * - A rerun after a SIGKILL mid-pass recomputes the same rows, skips the pass's committed units and redoes the
 *   rest: an unfinished pass is always resumed (with its recorded reasons) before a new one is planned.
 * - A row recovered by a pass is never fetched again, and its record key comes from its row index, as in the
 *   job, so no key is written twice; images are deduped against the whole dataset, as in any run.
 * - A row that fails again is listed in its pass's failure file and may be taken by the next pass.
 * By default only reasons that can pass are refetched: timeouts, connection, DNS and body errors, 408, 429 and
 * 5xx, and `blocked_address` when private addresses are now allowed. A 404 or an undecodable image is final
 * unless `retryReasons` names it.
 */
import { ConfigError, InvalidShardError } from '../errors.js';
import { listUnits, type UnitRecord } from '../shards/dataset.js';
import { isFailureReason, NAMED_REASONS, type FailureRecord } from '../shards/failures.js';
import { openStore, type Store } from '../shards/store.js';
import type { RunLock } from '../shards/run-lock.js';
import { withDatasetLock } from './dataset-lock.js';
import { Fetcher } from './fetch.js';
import {
  abortable,
  closeFetcher,
  createContext,
  report,
  runUnit,
  unitsCommitted,
  validateIngestOptions,
  type Context,
  type IngestOptions,
} from './job.js';
import { latestFailures, matchesReason, rowsTaken } from './outstanding.js';
import { addEntry, inJob, nextUnit, planJob, readManifest, retryPasses, type JobEntry } from './plan.js';
import {
  interruptedError,
  plural,
  summariseRun,
  urlCount,
  withPass,
  type IngestSummary,
  type IngestWarning,
} from './summary.js';
import { extraColumnsOf, listFiles, readUrlLists, type UrlRow } from './url-list.js';

export interface RetryOptions extends IngestOptions {
  /** Failure reasons to refetch; `http_5xx` stands for every 5xx status. @default RETRYABLE, plus blocked_address
   * when `fetch.allowPrivateNetwork` or `fetch.allowAddresses` allows some private address */
  retryReasons?: string[];
}

/** Reasons a later attempt can pass without any change of options. */
export const RETRYABLE = [
  'timeout',
  'connection_error',
  'dns_error',
  'body_error',
  'internal_error',
  'duplicate_unconfirmed',
  'http_408',
  'http_429',
  'http_5xx',
];

export function defaultRetryReasons(options: IngestOptions): string[] {
  const privateAllowed =
    Boolean(options.fetch?.allowPrivateNetwork) || (options.fetch?.allowAddresses?.length ?? 0) > 0;
  return privateAllowed ? [...RETRYABLE, 'blocked_address'] : RETRYABLE;
}

export async function runRetry(options: RetryOptions): Promise<IngestSummary> {
  validateIngestOptions(options);
  for (const r of options.retryReasons ?? []) {
    if (!isFailureReason(r) && !/^http_\dxx$/.test(r)) {
      throw new ConfigError(
        `--retry-reasons: "${r}" is not a failure reason (${NAMED_REASONS.join(', ')}, http_NNN, http_4xx, http_5xx)`,
      );
    }
  }
  const { signal } = options;
  const fetcher = new Fetcher(options.fetch);
  const state: RetryState = { committedBefore: 0, total: 0 };
  try {
    return await withDatasetLock(options, (lock) => retryJob(options, fetcher, state, lock));
  } catch (err) {
    if (signal?.aborted)
      throw interruptedError(signal.reason, state.committedBefore + (await unitsCommitted(state.ctx)), state.total);
    throw err;
  } finally {
    await closeFetcher(fetcher, signal);
  }
}

/** The reason a distributed run lists a duplicate it could not confirm (dedupe.ts: PendingDuplicate). */
const UNCONFIRMED = 'duplicate_unconfirmed';

/**
 * The confirmation pass, run by the local executor and the queue producer once every unit of the job is
 * committed: the rows listed `duplicate_unconfirmed` are fetched again, here, one unit at a time, deduped
 * against the committed shards, so each is dropped as the duplicate it was, or kept when the copy it was held
 * against was never committed (its worker died and the redone unit failed that row). A pass left unfinished
 * is resumed first (it may be another `--retry-failed` pass). `units`: the job's committed units; without
 * such a row among them this reads nothing more. Returns `summary` (the job's) with the passes folded in.
 */
export async function confirmDuplicates(
  options: IngestOptions,
  lock: RunLock,
  units: readonly UnitRecord[],
  summary: IngestSummary,
): Promise<IngestSummary> {
  if (!units.some((u) => (u.failed[UNCONFIRMED] ?? 0) > 0)) return summary;
  const fetcher = new Fetcher(options.fetch);
  try {
    for (let i = 0; i < 2; i++) {
      const state: RetryState = { committedBefore: 0, total: 0 };
      const pass = await retryJob({ ...options, retryReasons: [UNCONFIRMED] }, fetcher, state, lock);
      if (pass.warnings.some((w) => w.code === 'nothing_to_retry')) break;
      summary = withPass(summary, pass);
    }
    return summary;
  } finally {
    await closeFetcher(fetcher, options.signal);
  }
}

/** How far a pass is, for the message of an interrupt. */
interface RetryState {
  committedBefore: number;
  total: number;
  ctx?: Context;
}

async function retryJob(
  options: RetryOptions,
  fetcher: Fetcher,
  state: RetryState,
  lock: RunLock,
): Promise<IngestSummary> {
  const { signal } = options;
  const unitSize = options.unitSize ?? 10_000;
  const files = await listFiles(options.lists);
  const store = await openStore(options.out, options.store);
  const outputOptions = { decode: options.decode ?? {}, dedupeRadius: options.dedupeRadius ?? 8 };
  const planned = await abortable(planJob(files, options.list ?? {}, outputOptions, unitSize), signal);
  const manifest = await readManifest(store);
  const job = manifest?.jobs.find((j) => j.fingerprint === planned.fingerprint && !j.retryOf);
  if (!manifest || !job) {
    throw new ConfigError(
      `${store.url} holds no job made from these lists and options: run the ingest without --retry-failed first`,
    );
  }
  const committed = await listUnits(store);
  const byUnit = new Map(committed.map((u) => [u.unit, u]));
  const missing = unitsOf(job).filter((u) => !byUnit.has(u)).length;
  if (missing > 0) {
    throw new ConfigError(
      `the job is not finished (${missing} of ${plural(job.units, 'unit')} uncommitted): rerun it without --retry-failed first`,
    );
  }
  const passes = retryPasses(manifest, job);
  const resumed = passes.find((p) => unitsOf(p).some((u) => !byUnit.has(u)));
  const reasons = resumed?.retryReasons ?? options.retryReasons ?? defaultRetryReasons(options);
  const latest = await latestFailures(
    store,
    byUnit,
    job,
    passes.filter((p) => !resumed || p.pass! < resumed.pass!),
  );
  const chosen = rowsTaken(latest, reasons);
  const left = [...latest.values()].filter((f) => !matchesReason(f.reason, reasons));
  const member = inJob(manifest, job);
  const earlier = committed.filter((u) => member(u.unit));
  const summary = (run: UnitRecord[], pass: JobEntry | null, started: number) =>
    summariseRun({
      run,
      earlier,
      unitsTotal: pass?.units ?? 0,
      skipped: pass ? unitsOf(pass).filter((u) => byUnit.has(u)).length : 0,
      resumed: Boolean(resumed),
      rows: job.rows,
      started,
      retryHint: false,
    });
  if (resumed && chosen.length !== resumed.rows) {
    throw new InvalidShardError(
      `${store.url}: retry pass ${resumed.pass} planned ${resumed.rows} rows but its inputs now give ${chosen.length}`,
    );
  }
  if (chosen.length === 0) {
    const s = summary([], null, Date.now());
    return { ...s, warnings: [nothingToRetry(left, reasons), ...s.warnings] };
  }
  const pass =
    resumed ?? (await registerPass(store, manifest, job, passes.length + 1, reasons, chosen.length, unitSize));
  state.total = pass.units;
  state.committedBefore = unitsOf(pass).filter((u) => byUnit.has(u)).length;
  const ctx = await abortable(
    createContext(options, store, fetcher, committed, await extraColumnsOf(files, options.list), pass.units),
    signal,
  );
  state.ctx = ctx;
  ctx.progress.unitsSkipped = state.committedBefore;
  const run: UnitRecord[] = [];
  let index = 0;
  for await (const rows of chunks(readUrlLists(files, options.list), new Set(chosen.map((f) => f.row)), unitSize)) {
    const unit = pass.firstUnit + index++;
    signal?.throwIfAborted();
    if (byUnit.has(unit)) continue;
    lock.check();
    run.push(await abortable(runUnit(ctx, unit, rows), signal));
    ctx.progress.unitsDone++;
    report(ctx);
  }
  const done = summary(run, pass, ctx.started);
  if (!resumed) return done;
  const message = `resumed retry pass ${resumed.pass} (reasons ${reasons.join(', ')}), which an earlier run left unfinished; run --retry-failed again for a new pass`;
  return { ...done, warnings: [{ code: 'resumed_pass', message }, ...done.warnings] };
}

function unitsOf(entry: JobEntry): number[] {
  return Array.from({ length: entry.units }, (_, i) => entry.firstUnit + i);
}

async function registerPass(
  store: Store,
  manifest: NonNullable<Awaited<ReturnType<typeof readManifest>>>,
  job: JobEntry,
  pass: number,
  reasons: string[],
  rows: number,
  unitSize: number,
): Promise<JobEntry> {
  const entry: JobEntry = {
    fingerprint: `${job.fingerprint}-retry${pass}`,
    lists: job.lists,
    options: { ...job.options, unitSize },
    rows,
    firstUnit: nextUnit(manifest),
    units: Math.ceil(rows / unitSize),
    createdAt: new Date().toISOString(),
    retryOf: job.fingerprint,
    pass,
    retryReasons: reasons,
  };
  await addEntry(store, manifest, entry);
  return entry;
}

/** The rows whose index is wanted, in list order, `size` at a time. */
async function* chunks(rows: AsyncIterable<UrlRow>, wanted: Set<number>, size: number): AsyncIterable<UrlRow[]> {
  let chunk: UrlRow[] = [];
  for await (const row of rows) {
    if (!wanted.has(row.index)) continue;
    chunk.push(row);
    if (chunk.length === size) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}

function nothingToRetry(left: FailureRecord[], reasons: string[]): IngestWarning {
  if (left.length === 0)
    return { code: 'nothing_to_retry', message: 'nothing to retry: no URL of the job is failed now' };
  const counts = new Map<string, number>();
  for (const f of left) counts.set(f.reason, (counts.get(f.reason) ?? 0) + 1);
  const top = [...counts]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([r, n]) => `${r} x${n}`)
    .join(', ');
  return {
    code: 'nothing_to_retry',
    reason: [...counts].sort((a, b) => b[1] - a[1])[0]![0],
    message: `nothing to retry: ${urlCount(left.length)} failed for reasons not retried (${top}); retried reasons: ${reasons.join(', ')}; name others with --retry-reasons`,
  };
}
