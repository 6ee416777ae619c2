/**
 * The local ingest executor: runs the units plan.ts plans, in this process, one at a time (job.ts runs each),
 * then the confirmation pass of any rows a distributed run of the same job left unconfirmed (retry.ts).
 *
 * Resume rests on two facts: unit membership is a pure function of the source (row index / unit size), and a
 * unit is committed only by its record, written after its shard. So a rerun skips committed units and redoes
 * the rest from scratch, and the dedupe index is rebuilt from committed shards, never kept only in memory.
 * Each failed row is listed in the unit's failure file, so `--retry-failed` (retry.ts) can refetch exactly
 * the failed URLs of committed units.
 */
import type { UnitRecord } from '../shards/dataset.js';
import { closeStaging } from '../shards/staging.js';
import { withDatasetLock } from './dataset-lock.js';
import { Fetcher } from './fetch.js';
import { closeFetcher, createContext, report, runUnit, unitsCommitted, type Context } from './job.js';
import { planIngest, summarisePlan } from './plan.js';
import { confirmDuplicates } from './retry.js';
import { abortable, validateIngestOptions, type IngestOptions } from './run-options.js';
import { interruptedError, type IngestSummary } from './summary.js';

/**
 * Runs (or resumes) an ingest job in this process. Errors: ConfigError for bad options or lists, the store's
 * errors, InterruptedError when `options.signal` stops it (committed units stay; a rerun resumes).
 */
export async function runIngest(options: IngestOptions): Promise<IngestSummary> {
  validateIngestOptions(options);
  const { signal } = options;
  const fetcher = new Fetcher(options.fetch); // validates fetch options before anything is written
  let committedBefore = 0;
  let totalUnits = 0;
  let ctx: Context | undefined;
  try {
    return await withDatasetLock(options, async (lock) => {
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
          lock.check(); // a job that lost its lease (stalled past the TTL) writes nothing more
          run.push(await abortable(runUnit(ctx, unit, rows), signal));
          ctx.progress.unitsDone++;
        }
        report(ctx);
      }
      const summary = summarisePlan(plan, run, ctx.started, options.retryHint);
      const confirmed = await confirmDuplicates(options, lock, [...plan.earlier, ...run], summary);
      await closeStaging(plan.store); // every unit done: an empty .staging/ is no part of the dataset
      return confirmed;
    });
  } catch (err) {
    if (signal?.aborted)
      throw interruptedError(signal.reason, committedBefore + (await unitsCommitted(ctx)), totalUnits);
    throw err;
  } finally {
    await closeFetcher(fetcher, signal);
  }
}
