/**
 * An ingest run as `wildstream ingest` and a pipeline's ingest stage do it: parsed options in, a progress bar on a
 * terminal, SIGINT/SIGTERM stop it, the summary as one JSON line on stdout and each warning on stderr.
 *
 * A job that holds no image (an empty list or a crawl that found none, or every URL failed) ends in an
 * ExitCodeError with status 3, for `ingest` and `crawl` alike (README, "Exit codes"): its units are committed, so
 * a later run with the fix recovers them, but a script (or `wildstream run`) should stop before it trains on
 * nothing. A polite crawl may rightly find nothing; the warning that becomes the error says why.
 */
import { ConfigError, ExitCodeError } from '../errors.js';
import { FLAG_NAMES, type OptionNames } from '../options/declare.js';
import { type IngestOptions, type IngestSummary } from '../ingest/job.js';
import { runIngest } from '../ingest/local.js';
import { ingestOptionsOf, type FetchDecodeValues, type IngestValues } from '../ingest/options.js';
import { progressReporter, type ProgressReporter } from '../ingest/progress.js';
import { runQueuedIngest } from '../ingest/queue.js';
import { runRetry } from '../ingest/retry.js';
import type { IngestWarning } from '../ingest/summary.js';

/** The exit status of an ingest whose job holds no image. */
export const KEPT_NOTHING_EXIT = 3;

export interface IngestRun {
  /** `ingest` lets warnings suggest --retry-failed (crawl has no such flag). @default 'ingest' */
  command?: 'ingest' | 'crawl';
  /** Takes the place of the `empty_list` warning (a crawl says why it found nothing: its user gave no list). */
  emptyList?: IngestWarning;
  /** Settings the options do not carry (a crawl's fetcher shares its host gate). */
  extra?: Partial<IngestOptions>;
  /** How its errors name the options (a pipeline's ingest keys). @default the command's flags */
  names?: OptionNames;
}

/** The retry options' combinations an ingest refuses, named as `names` says (a pipeline checks them on load). */
export function checkRetryOptions(
  o: Pick<Partial<IngestValues>, 'queue' | 'retryFailed' | 'retryReasons'>,
  names: OptionNames = FLAG_NAMES,
): void {
  if (o.queue && o.retryFailed)
    throw new ConfigError(`${names.set('retryFailed', true)} runs here, not on a queue: drop ${names.of('queue')}`);
  if (o.retryReasons && !o.retryFailed)
    throw new ConfigError(`${names.of('retryReasons')} needs ${names.set('retryFailed', true)}`);
}

/** Ingests `lists` into `o.out` and prints the summary; resolves to it. */
export async function ingestJob(
  lists: string[],
  o: FetchDecodeValues & Partial<IngestValues> & { out: string },
  how: IngestRun = {},
): Promise<IngestSummary> {
  const command = how.command ?? 'ingest';
  checkRetryOptions(o, how.names);
  const reporter = progressReporter();
  const interrupt = stopOnSignals(reporter);
  const options: IngestOptions = {
    ...ingestOptionsOf(lists, o.out, o),
    onProgress: (p) => reporter.update(p),
    signal: interrupt.signal,
    retryHint: command === 'ingest',
    ...how.extra,
  };
  const notices = {
    noWorkerNoticeMs: (o.workerNotice ?? 20) * 1000,
    onNotice: (m: string) => reporter.note(`wildstream: ${m}`),
  };
  const run = o.queue
    ? runQueuedIngest(options, o.queue, notices)
    : o.retryFailed
      ? runRetry({ ...options, retryReasons: o.retryReasons })
      : runIngest(options);
  const ran = await run.finally(() => {
    reporter.stop();
    interrupt.dispose();
  });
  const emptyList = how.emptyList;
  const summary = emptyList
    ? { ...ran, warnings: ran.warnings.map((w) => (w.code === 'empty_list' ? emptyList : w)) }
    : ran;
  process.stdout.write(`${JSON.stringify({ event: 'ingest_done', ...summary })}\n`);
  const fatal = summary.warnings.find(holdsNoImage);
  for (const w of summary.warnings) if (w !== fatal) process.stderr.write(`wildstream: warning: ${w.message}\n`);
  if (fatal) throw new ExitCodeError(fatal.message, KEPT_NOTHING_EXIT);
  return summary;
}

/** Whether a warning says the job holds no image: nothing was listed (or found), or everything failed. */
const holdsNoImage = (w: IngestWarning): boolean => w.code === 'kept_nothing' || w.code === 'empty_list';

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
      if (process.listenerCount('SIGINT') + process.listenerCount('SIGTERM') === 0)
        process.exit(process.exitCode ?? code);
    }, 5000).unref();
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  return { signal: controller.signal, dispose: () => process.off('SIGINT', onSignal).off('SIGTERM', onSignal) };
}
