/**
 * What an ingest job is given (the typed options every executor and source reads; options.ts declares the
 * flags and pipeline keys that make them), read by the planner (plan.ts) and by both executors (job.ts, queue.ts).
 */
import { ConfigError } from '../errors.js';
import type { RunLock } from '../shards/run-lock.js';
import type { StoreOptions } from '../shards/store.js';
import type { DecodeOptions } from './decode.js';
import type { FetcherOptions } from './fetch.js';
import type { IngestSource } from './source.js';
import type { IngestProgress } from './summary.js';
import type { UrlListOptions } from './url-list.js';

/** URLs per unit when `unitSize` is not given. */
export const DEFAULT_UNIT_SIZE = 10_000;
/** The near-duplicate radius when `dedupeRadius` is not given (see its TSDoc for the measurement). */
export const DEFAULT_DEDUPE_RADIUS = 8;
/** Downloads in flight when `concurrency` is not given. */
export const DEFAULT_CONCURRENCY = 64;

export interface IngestOptions {
  /** URL list files or directories; ignored when `source` is given. */
  lists: string[];
  /** The rows to ingest when they do not come from list files (a crawl's image candidates). @default the lists */
  source?: IngestSource;
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
  /**
   * The dataset's ingest lease when the caller already holds it (a crawl holds it across its crawl and its
   * ingest): used and left to the caller. @default the job takes and releases it (dataset-lock.ts)
   */
  datasetLock?: RunLock;
}

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
  if (
    o.dedupeRadius !== undefined &&
    (!Number.isInteger(o.dedupeRadius) || o.dedupeRadius < 0 || o.dedupeRadius > 16)
  ) {
    throw new ConfigError(`dedupeRadius must be an integer from 0 to 16, got ${o.dedupeRadius}`);
  }
  if (o.decode?.format && !['jpeg', 'webp'].includes(o.decode.format)) {
    throw new ConfigError(`format must be jpeg or webp, got ${JSON.stringify(o.decode.format)}`);
  }
}

/** Rejects as soon as `signal` aborts, so a signal is answered without waiting for in-flight work. */
export function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
