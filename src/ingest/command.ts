/**
 * `wildstream ingest`, and the ingest options `crawl` shares (it ingests the images it finds the same way).
 *
 * Outcomes: the JSON summary on stdout carries `warnings`, each also one stderr line. `ingest` exits 3 when its
 * job holds no image (an empty list, or every URL failed): the units are committed, so a later run with the
 * fix and `--retry-failed` recovers them, but a script (or `wildstream run`) should stop before it trains on
 * nothing. `crawl` only warns, since a polite crawl may rightly find nothing. SIGINT/SIGTERM stop the run with
 * how many units are committed and exit 130/143; a rerun resumes.
 */
import { Command, Option } from 'commander';
import { intArg, storeOptions, withStoreOptions } from '../cli-options.js';
import { ConfigError, ExitCodeError } from '../errors.js';
import { runIngest, type IngestOptions, type IngestSummary } from './job.js';
import type { IngestWarning } from './summary.js';
import type { FetcherOptions } from './fetch.js';
import { progressReporter, type ProgressReporter } from './progress.js';
import { runQueuedIngest, runWorker } from './queue.js';
import { runRetry } from './retry.js';

/** The exit status of an ingest whose job holds no image. */
export const KEPT_NOTHING_EXIT = 3;

/** Fetch, decode, dedupe and unit options, shared by `ingest` and `crawl`. */
export function withIngestOptions(cmd: Command): Command {
  return withStoreOptions(cmd)
      .option('--concurrency <n>', 'downloads in flight', intArg(1, 4096), 64)
    .option('--unit-size <n>', 'URLs per unit (one shard each)', intArg(1, 10_000_000), 10_000)
    .option('--max-side <n>', 'resize so the longest side is at most N (no upscaling)', intArg(16, 16384), 512)
    .option('--min-side <n>', 'resize so the shortest side is N (no upscaling); overrides --max-side', intArg(16, 16384))
    .option('--min-image-size <n>', 'drop images whose shorter side is below N', intArg(1, 16384), 64)
    .option('--max-aspect-ratio <x>', 'drop images with long/short side above X', Number, 4)
    .addOption(new Option('--format <fmt>', 'output encoding').choices(['jpeg', 'webp']).default('jpeg'))
    .option('--quality <q>', 'encoder quality', intArg(1, 100), 90)
    .option('--dedupe-radius <bits>', 'pHash Hamming radius for near duplicates (0: off)', intArg(0, 16), 8)
    .option('--timeout <seconds>', 'deadline for one download attempt', intArg(1, 3600), 60)
    .option('--retries <n>', 'retries on network errors, 408, 429, 5xx', intArg(0, 10), 2)
    .option('--max-bytes <n>', 'largest accepted download', intArg(1), 32 * 1024 * 1024)
    .option('--connections-per-origin <n>', 'parallel connections to one origin', intArg(1, 1024), 8)
    .option('--user-agent-contact <text>', 'contact (URL or e-mail) added to the User-Agent')
    .option('--append', 'add a different list to an existing dataset')
    .option('--allow-private-network', 'allow loopback, private and link-local addresses (tests, intranets)')
    .option('--allow-address <cidr...>', 'allow just these non-public addresses or ranges (e.g. 127.0.0.1 10.1.0.0/16)');
}

/**
 * Runs an ingest job from parsed options, with a progress bar on a TTY; prints the summary line and its
 * warnings. `command: 'ingest'` makes a job that holds no image exit 3 and lets warnings suggest --retry-failed.
 * `emptyList` takes the place of the `empty_list` warning (a crawl says why it found nothing: its user gave no list).
 */
export async function ingestFromOptions(lists: string[], opts: Record<string, any>, extra: Partial<IngestOptions> = {},
  how: { command: 'ingest' | 'crawl'; emptyList?: IngestWarning } = { command: 'crawl' }): Promise<IngestSummary> {
  if (!(opts.maxAspectRatio >= 1)) throw new ConfigError(`--max-aspect-ratio must be a number >= 1`);
  if (opts.queue && opts.retryFailed) throw new ConfigError('--retry-failed runs here, not on a queue: drop --queue');
  if (opts.retryReasons && !opts.retryFailed) throw new ConfigError('--retry-reasons needs --retry-failed');
  const reporter = progressReporter();
  const interrupt = stopOnSignals(reporter);
  const options: IngestOptions = {
    lists,
    out: opts.out,
    store: storeOptions(opts),
    list: { urlCol: opts.urlCol ?? 'url', captionCol: opts.captionCol ?? 'caption' },
    decode: {
      maxSide: opts.maxSide,
      minSide: opts.minSide,
      minImageSize: opts.minImageSize,
      maxAspectRatio: opts.maxAspectRatio,
      format: opts.format,
      quality: opts.quality,
    },
    fetch: fetchOptionsFrom(opts),
    concurrency: opts.concurrency,
    unitSize: opts.unitSize,
    dedupeRadius: opts.dedupeRadius,
    append: Boolean(opts.append),
    onProgress: (p) => reporter.update(p),
    signal: interrupt.signal,
    retryHint: how.command === 'ingest',
    ...extra,
  };
  const notices = { noWorkerNoticeMs: (opts.workerNotice ?? 20) * 1000, onNotice: (m: string) => reporter.note(`wildstream: ${m}`) };
  const run = opts.queue
    ? runQueuedIngest(options, opts.queue, notices)
    : opts.retryFailed
      ? runRetry({ ...options, retryReasons: opts.retryReasons })
      : runIngest(options);
  const ran = await run.finally(() => {
    reporter.stop();
    interrupt.dispose();
  });
  const emptyList = how.emptyList;
  const summary = emptyList ? { ...ran, warnings: ran.warnings.map((w) => (w.code === 'empty_list' ? emptyList : w)) } : ran;
  process.stdout.write(`${JSON.stringify({ event: 'ingest_done', ...summary })}\n`);
  const fatal = how.command === 'ingest' ? summary.warnings.find((w) => w.code === 'kept_nothing' || w.code === 'empty_list') : undefined;
  for (const w of summary.warnings) if (w !== fatal) process.stderr.write(`wildstream: warning: ${w.message}\n`);
  if (fatal) throw new ExitCodeError(fatal.message, KEPT_NOTHING_EXIT);
  return summary;
}

/**
 * SIGINT/SIGTERM abort the run (it ends with an InterruptedError saying what is committed). Downloads in flight
 * are abandoned: if they still hold the process 5 s later, or on a second signal, it exits.
 */
function stopOnSignals(reporter: ProgressReporter): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals) => {
    const code = name === 'SIGTERM' ? 143 : 130;
    if (controller.signal.aborted) {
      reporter.stop();
      process.exit(code);
    }
    controller.abort(name);
    // Unless another stage (a pipeline's trainer) still handles signals and must finish saving first.
    setTimeout(() => {
      if (process.listenerCount('SIGINT') + process.listenerCount('SIGTERM') === 0) process.exit(process.exitCode ?? code);
    }, 5000).unref();
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  return { signal: controller.signal, dispose: () => process.off('SIGINT', onSignal).off('SIGTERM', onSignal) };
}

/** The fetcher settings of parsed ingest options (shared with `crawl`). */
export function fetchOptionsFrom(opts: Record<string, any>): FetcherOptions {
  return {
    totalTimeoutMs: opts.timeout * 1000,
    retries: opts.retries,
    maxBytes: opts.maxBytes,
    connectionsPerOrigin: opts.connectionsPerOrigin,
    allowPrivateNetwork: Boolean(opts.allowPrivateNetwork),
    allowAddresses: opts.allowAddress ?? [],
    userAgent: userAgent(opts),
  };
}

export function userAgent(opts: { userAgentContact?: string }): string {
  return `wildstream/0.1 (+image dataset downloader${opts.userAgentContact ? `; ${opts.userAgentContact}` : ''})`;
}

export function ingestCommand(): Command {
  return withIngestOptions(
    new Command('ingest')
      .description('download the images of URL lists into Arrow shards (resumable: rerun to continue)')
      .argument('<url-list...>', 'URL lists (.txt .csv .tsv .jsonl .parquet, .gz of text ones) or directories')
      .requiredOption('--out <store>', 'output dataset: a path, file:///abs/path or s3://bucket/prefix')
      .option('--url-col <name>', 'column holding the URL', 'url')
      .option('--caption-col <name>', 'column holding the caption', 'caption')
      .option('--queue <redis-url>', 'enqueue the units on BullMQ (redis://host:6379/0) for `wildstream worker`s and wait for them')
      .option('--worker-notice <seconds>', 'with --queue: say so when no worker has taken a unit after this long', intArg(1, 86_400), 20)
      .option('--retry-failed', 'refetch the failed URLs of the committed units (same lists, options and --out), into new units')
      .option('--retry-reasons <reasons>', 'with --retry-failed: comma-separated failure reasons to refetch, http_5xx for all 5xx '
        + '(default: timeout, connection/DNS/body errors, internal_error, http_408, http_429, http_5xx; blocked_address when private addresses are allowed)',
      (v: string) => v.split(',').map((r) => r.trim()).filter(Boolean)),
  ).action(async (lists: string[], opts) => {
    await ingestFromOptions(lists, opts, {}, { command: 'ingest' });
  });
}

export function workerCommand(): Command {
  return new Command('worker')
    .description('process ingest units from a BullMQ queue until stopped (SIGINT/SIGTERM); run any number, anywhere')
    .requiredOption('--queue <redis-url>', 'the queue the ingest command enqueued to (redis://host:6379/0)')
    .option('--concurrency <n>', 'units processed at once', intArg(1, 256), 1)
    .option('--lock-ms <n>', 'unit lock lifetime: a dead worker\'s unit is handed on after about this', intArg(1000, 3_600_000), 30_000)
    .action(async (opts) => {
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.on('SIGINT', stop).on('SIGTERM', stop);
      try {
        await runWorker(opts.queue, {
          concurrency: opts.concurrency, lockMs: opts.lockMs, signal: controller.signal,
          onEvent: (e) => process.stdout.write(`${JSON.stringify(e)}\n`),
        });
      } finally {
        process.off('SIGINT', stop).off('SIGTERM', stop);
      }
    });
}
