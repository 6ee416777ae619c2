/**
 * The options of `ingest` (and those `crawl` shares, since it ingests what it finds the same way), declared
 * once: the flags, the pipeline keys and the IngestOptions they make derive from these.
 */
import { choice, flag, int, list, num, text, words, type OptionValues } from '../options/declare.js';
import { STORE_OPTIONS, storeOptionsOf } from '../shards/options.js';
import type { FetcherOptions } from './fetch.js';
import { DEFAULT_CONCURRENCY, DEFAULT_DEDUPE_RADIUS, DEFAULT_UNIT_SIZE, type IngestOptions } from './run-options.js';

const STORE_URL = 'a path, file:///abs/path or s3://bucket/prefix';

/** The output dataset (`--out`), required. */
export const OUT_DATASET = text({
  required: true,
  minLength: 1,
  placeholder: 'store',
  description: `output dataset: ${STORE_URL}`,
});

/** Fetch, decode, dedupe and unit options, shared by `ingest` and `crawl`. */
export const FETCH_DECODE_OPTIONS = {
  ...STORE_OPTIONS,
  concurrency: int({ min: 1, max: 4096, default: DEFAULT_CONCURRENCY, description: 'downloads in flight' }),
  unitSize: int({ min: 1, max: 10_000_000, default: DEFAULT_UNIT_SIZE, description: 'URLs per unit (one shard each)' }),
  maxSide: int({
    min: 16,
    max: 16384,
    default: 512,
    description: 'resize so the longest side is at most N (no upscaling)',
  }),
  minSide: int({
    min: 16,
    max: 16384,
    description: 'resize so the shortest side is N (no upscaling); overrides --max-side',
  }),
  minImageSize: int({ min: 1, max: 16384, default: 64, description: 'drop images whose shorter side is below N' }),
  maxAspectRatio: num({ min: 1, default: 4, description: 'drop images with long/short side above X' }),
  format: choice(['jpeg', 'webp'], { default: 'jpeg', placeholder: 'fmt', description: 'output encoding' }),
  quality: int({ min: 1, max: 100, default: 90, placeholder: 'q', description: 'encoder quality' }),
  dedupeRadius: int({
    min: 0,
    max: 16,
    default: DEFAULT_DEDUPE_RADIUS,
    placeholder: 'bits',
    description: 'pHash Hamming radius for near duplicates (0: off)',
  }),
  timeout: int({
    min: 1,
    max: 3600,
    default: 60,
    placeholder: 'seconds',
    description: 'deadline for one download attempt',
  }),
  retries: int({ min: 0, max: 10, default: 2, description: 'retries on network errors, 408, 429, 5xx' }),
  maxBytes: int({ min: 1, default: 32 * 1024 * 1024, description: 'largest accepted download' }),
  connectionsPerOrigin: int({ min: 1, max: 1024, default: 8, description: 'parallel connections to one origin' }),
  userAgentContact: text({ placeholder: 'text', description: 'contact (URL or e-mail) added to the User-Agent' }),
  append: flag({ description: 'add a different list to an existing dataset' }),
  allowPrivateNetwork: flag({ description: 'allow loopback, private and link-local addresses (tests, intranets)' }),
  allowAddress: list({
    placeholder: 'cidr',
    description: 'allow just these non-public addresses or ranges (e.g. 127.0.0.1 10.1.0.0/16)',
  }),
} as const;

/** `wildstream ingest`'s options (its URL lists are positional; `lists:` in a pipeline). */
export const INGEST_OPTIONS = {
  out: OUT_DATASET,
  ...FETCH_DECODE_OPTIONS,
  urlCol: text({ default: 'url', minLength: 1, placeholder: 'name', description: 'column holding the URL' }),
  // No declared default: a caption column named on purpose must exist, while the implied "caption" may not.
  captionCol: text({
    minLength: 1,
    placeholder: 'name',
    description: 'column holding the caption (default: caption, if the list has one)',
  }),
  queue: text({
    placeholder: 'redis-url',
    description: 'enqueue the units on BullMQ (redis://host:6379/0) for `wildstream worker`s and wait for them',
  }),
  workerNotice: int({
    min: 1,
    max: 86_400,
    default: 20,
    placeholder: 'seconds',
    description: 'with --queue: say so when no worker has taken a unit after this long',
  }),
  retryFailed: flag({
    description: 'refetch the failed URLs of the committed units (same lists, options and --out), into new units',
  }),
  retryReasons: words({
    placeholder: 'reasons',
    description: 'with --retry-failed: comma-separated failure reasons to refetch, http_5xx for all 5xx',
    defaultText:
      'timeout, connection/DNS/body errors, internal_error, duplicate_unconfirmed, http_408, http_429, http_5xx; blocked_address when private addresses are allowed',
  }),
} as const;

/** `wildstream worker`'s options. */
export const WORKER_OPTIONS = {
  queue: text({
    required: true,
    minLength: 1,
    placeholder: 'redis-url',
    description: 'the queue the ingest command enqueued to (redis://host:6379/0)',
  }),
  concurrency: int({ min: 1, max: 256, default: 1, description: 'units processed at once' }),
  lockMs: int({
    min: 1000,
    max: 3_600_000,
    default: 30_000,
    description: "unit lock lifetime: a dead worker's unit is handed on after about this",
  }),
} as const;

export type FetchDecodeValues = OptionValues<typeof FETCH_DECODE_OPTIONS>;
export type IngestValues = OptionValues<typeof INGEST_OPTIONS>;
export type WorkerValues = OptionValues<typeof WORKER_OPTIONS>;

/** The User-Agent every request sends, with the operator's contact when given. */
export function userAgent(contact?: string): string {
  return `wildstream/0.1 (+image dataset downloader${contact ? `; ${contact}` : ''})`;
}

/** The fetcher settings of parsed ingest options. */
export function fetchOptionsOf(o: FetchDecodeValues): FetcherOptions {
  return {
    totalTimeoutMs: o.timeout * 1000,
    retries: o.retries,
    maxBytes: o.maxBytes,
    connectionsPerOrigin: o.connectionsPerOrigin,
    allowPrivateNetwork: o.allowPrivateNetwork,
    allowAddresses: o.allowAddress ?? [],
    userAgent: userAgent(o.userAgentContact),
  };
}

/** The IngestOptions (no callbacks) of parsed options and the lists to ingest. */
export function ingestOptionsOf(
  lists: string[],
  out: string,
  o: FetchDecodeValues & Partial<Pick<IngestValues, 'urlCol' | 'captionCol'>>,
): IngestOptions {
  return {
    lists,
    out,
    store: storeOptionsOf(o),
    list: { urlCol: o.urlCol ?? 'url', captionCol: o.captionCol },
    decode: {
      maxSide: o.maxSide,
      minSide: o.minSide,
      minImageSize: o.minImageSize,
      maxAspectRatio: o.maxAspectRatio,
      format: o.format,
      quality: o.quality,
    },
    fetch: fetchOptionsOf(o),
    concurrency: o.concurrency,
    unitSize: o.unitSize,
    dedupeRadius: o.dedupeRadius,
    append: o.append,
  };
}
