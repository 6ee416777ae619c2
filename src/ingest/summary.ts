/**
 * What an ingest run reports, computed by one function from unit records, so the local and the queued
 * executors return the same summary; and the warnings a user can act on (a job that kept nothing names its
 * top failure reason and the likely fix).
 */
import { constants } from 'node:os';
import { InterruptedError } from '../errors.js';
import type { UnitRecord } from '../shards/dataset.js';
import { MAX_IMAGE_PIXELS } from '../shards/image-rule.js';
import { DEFAULT_DECODE_MEMORY } from './decode.js';

export interface IngestProgress {
  unitsTotal: number;
  unitsDone: number;
  unitsSkipped: number;
  urls: number;
  kept: number;
  failed: number;
  duplicates: number;
  elapsedSeconds: number;
}

export type IngestWarningCode = 'empty_list' | 'kept_nothing' | 'nothing_to_retry' | 'resumed_pass';

export interface IngestWarning {
  code: IngestWarningCode;
  /** One line for a person: what happened and what to do. */
  message: string;
  /** The failure reason the message is about, when there is one. */
  reason?: string;
}

/** `urls`, `kept`, `failed`, `duplicates` and `failedByReason` count this run's units; `keptInJob` every committed unit of the job. */
export interface IngestSummary extends IngestProgress {
  resumed: boolean;
  failedByReason: Record<string, number>;
  /** Images held by the job's committed units (this run's, earlier runs' and retries'). */
  keptInJob: number;
  warnings: IngestWarning[];
}

export interface SummaryInput {
  /** Units this run committed. */
  run: readonly UnitRecord[];
  /** The job's units committed before this run, retries included. */
  earlier: readonly UnitRecord[];
  unitsTotal: number;
  /** Units of this run's range that were committed already. */
  skipped: number;
  resumed: boolean;
  /** Rows in the job's lists. */
  rows: number;
  started: number;
  /** Whether the warning may suggest `--retry-failed` (the ingest command has it; crawl does not). @default true */
  retryHint?: boolean;
}

export function summariseRun(input: SummaryInput): IngestSummary {
  const progress = progressOf(input.run, input.skipped, input.unitsTotal, input.started);
  const job = [...input.earlier, ...input.run];
  const keptInJob = job.reduce((n, u) => n + u.records, 0);
  const warnings: IngestWarning[] = [];
  const jobFailed = failuresByReason(job);
  if (input.rows === 0) {
    warnings.push({
      code: 'empty_list',
      message:
        'the URL lists hold no rows, so nothing was ingested: check the files (and --url-col for CSV, TSV, JSONL and Parquet)',
    });
  } else if (keptInJob === 0 && Object.keys(jobFailed).length > 0) {
    warnings.push(keptNothing(jobFailed, input.retryHint ?? true));
  }
  return { ...progress, resumed: input.resumed, failedByReason: failuresByReason(input.run), keptInJob, warnings };
}

/**
 * A job's summary with a retry pass run after it (the confirmation pass, retry.ts) folded in: the pass's rows
 * are the job's `duplicate_unconfirmed` rows settled again, so they leave that count (as far as this run's
 * units listed them) and count once, with their new outcome.
 */
export function withPass(job: IngestSummary, pass: IngestSummary): IngestSummary {
  const failedByReason = { ...job.failedByReason };
  const settled = Math.min(pass.urls, failedByReason.duplicate_unconfirmed ?? 0);
  if (settled > 0) failedByReason.duplicate_unconfirmed! -= settled;
  if (failedByReason.duplicate_unconfirmed === 0) delete failedByReason.duplicate_unconfirmed;
  for (const [reason, n] of Object.entries(pass.failedByReason))
    failedByReason[reason] = (failedByReason[reason] ?? 0) + n;
  return {
    ...job,
    unitsTotal: job.unitsTotal + pass.unitsTotal,
    unitsDone: job.unitsDone + pass.unitsDone,
    unitsSkipped: job.unitsSkipped + pass.unitsSkipped,
    urls: job.urls + pass.urls - settled,
    kept: job.kept + pass.kept,
    failed: job.failed - settled + pass.failed,
    duplicates: job.duplicates + pass.duplicates,
    elapsedSeconds: job.elapsedSeconds + pass.elapsedSeconds,
    failedByReason,
    keptInJob: pass.keptInJob,
    warnings: pass.keptInJob > 0 ? job.warnings.filter((w) => w.code !== 'kept_nothing') : job.warnings,
  };
}

/** Progress from committed unit records (the queued executor's view; the local one counts the same per row). */
export function progressOf(
  run: readonly UnitRecord[],
  skipped: number,
  unitsTotal: number,
  started: number,
): IngestProgress {
  const sum = (f: (u: UnitRecord) => number) => run.reduce((n, u) => n + f(u), 0);
  return {
    unitsTotal,
    unitsDone: run.length,
    unitsSkipped: skipped,
    urls: sum((u) => u.inputs),
    kept: sum((u) => u.records),
    failed: sum((u) => Object.values(u.failed).reduce((a, b) => a + b, 0)),
    duplicates: sum((u) => u.duplicates.exact + u.duplicates.near),
    elapsedSeconds: (Date.now() - started) / 1000,
  };
}

export function failuresByReason(units: readonly UnitRecord[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const u of units) for (const [k, v] of Object.entries(u.failed)) out[k] = (out[k] ?? 0) + v;
  return out;
}

function keptNothing(failed: Record<string, number>, retryHint: boolean): IngestWarning {
  const [reason, count] = Object.entries(failed).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]!;
  const total = Object.values(failed).reduce((a, b) => a + b, 0);
  const fix = hintFor(reason);
  const retry =
    retryHint && fix.retry ? '; then rerun with that change and --retry-failed to refetch the failed URLs' : '';
  return {
    code: 'kept_nothing',
    reason,
    message: `kept no image: ${urlCount(total)} failed, most with ${reason} (${count} of ${total}): ${fix.text}${retry}`,
  };
}

export function urlCount(n: number): string {
  return plural(n, 'URL');
}

/** "1 unit", "2 units": `n` and the noun, plural unless `n` is 1. */
export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** What a reason most likely means and whether fixing it and retrying can help. */
export function hintFor(reason: string): { text: string; retry: boolean } {
  const status = /^http_(\d{3})$/.exec(reason)?.[1];
  if (status === '429')
    return {
      text: 'the servers rate-limit this client: lower --concurrency and --connections-per-origin',
      retry: true,
    };
  if (status === '401' || status === '403') return { text: 'the servers refuse access to these URLs', retry: false };
  if (status?.startsWith('5') || status === '408')
    return { text: 'the servers fail or time out: try again later', retry: true };
  if (status) return { text: `the servers answer HTTP ${status}: check that the URLs are current`, retry: false };
  const table: Record<string, { text: string; retry: boolean }> = {
    blocked_address: {
      text: 'the URLs point at loopback, private or link-local addresses, refused by default: pass --allow-private-network (or --allow-address CIDR) if they are meant',
      retry: true,
    },
    dns_error: { text: "the host names do not resolve: check the URLs and this machine's DNS", retry: true },
    connection_error: { text: 'the servers cannot be reached: check the URLs and the network', retry: true },
    timeout: { text: 'the servers answer too slowly: raise --timeout or lower --concurrency', retry: true },
    body_error: { text: 'connections broke mid-download: check the network', retry: true },
    url_scheme: { text: 'the rows hold no http(s) URLs: check --url-col and the list format', retry: false },
    url_invalid: { text: 'the rows hold no valid URLs: check --url-col and the list format', retry: false },
    url_missing: { text: 'the rows have no URL: check --url-col and the list format', retry: false },
    bad_row: { text: 'the rows cannot be parsed: check the list format', retry: false },
    too_small: { text: 'the images are smaller than --min-image-size', retry: false },
    too_many_pixels: {
      text: `the images have more than ${MAX_IMAGE_PIXELS / 1e6} million pixels (decompression bombs?)`,
      retry: false,
    },
    decode_memory: {
      text: `decoding the images and resizing them to --max-side (or --min-side) needs more than the ${DEFAULT_DECODE_MEMORY / 2 ** 20} MiB decode memory budget: a smaller --max-side decodes them`,
      retry: false,
    },
    aspect_ratio: { text: 'the images are longer than --max-aspect-ratio allows', retry: false },
    too_large: {
      text: 'the downloads exceed --max-bytes: raise it, then rerun with --retry-failed --retry-reasons too_large',
      retry: false,
    },
    duplicate_unconfirmed: {
      text: 'copies of images that another unit of a distributed run held but had not committed: rerun the same command to settle them (its confirmation pass fetches them again)',
      retry: true,
    },
    not_an_image: {
      text: 'the URLs serve something other than images (web pages?): check the URLs, or crawl the pages',
      retry: false,
    },
  };
  return table[reason] ?? { text: 'see failures/*.jsonl in the dataset for each URL', retry: false };
}

/**
 * The error a run stopped by `signal` (its AbortSignal's reason) ends with: how far it got and that a rerun
 * resumes. A process signal's name (`SIGHUP`) gives exit 128 + its number; another reason (a library caller's
 * AbortSignal.timeout) is told by its message, with exit 130 as Ctrl-C.
 */
export function interruptedError(
  signal: unknown,
  committed: number,
  total: number,
  resume = 'rerun the same command to resume',
): InterruptedError {
  const number = typeof signal === 'string' ? constants.signals[signal as NodeJS.Signals] : undefined;
  const by =
    number !== undefined ? `by ${signal as string}` : `(${signal instanceof Error ? signal.message : String(signal)})`;
  return new InterruptedError(
    `stopped ${by}: ${committed} of ${plural(total, 'unit')} committed; ${resume}`,
    number !== undefined ? 128 + number : 130,
  );
}
