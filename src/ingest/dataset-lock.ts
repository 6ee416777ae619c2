/**
 * One writing job per dataset. Two jobs on one `--out` would each write a unit's shard, failures and record,
 * and a unit could commit a record that describes the other job's shard (a reader then refuses it, and a rerun
 * trusts it). So the local executor, a retry pass and a queue's producer hold the dataset's ingest lease
 * (shards/run-lock.ts) from before they register the job until they end. Queue workers take none: the
 * producer holds it for the units it enqueued, and the queue gives each unit to one worker at a time.
 * A dataset whose queued units a stopped producer left to workers is refused too (queue-mark.ts).
 */
import { INGEST_RUN, lockRun, type RunLock } from '../shards/run-lock.js';
import { openStore } from '../shards/store.js';
import { refuseQueued } from './queue-mark.js';
import { abortable, type IngestOptions } from './run-options.js';
import { listFiles } from './url-list.js';

/**
 * Runs `job` holding the ingest lease of `options.out` (or `options.datasetLock`, held by the caller). Throws
 * RunLockedError (before `job` starts) while another live job holds it, ConfigError while the dataset has
 * units queued by a stopped producer (unless `queueProducer`: producers send their units to the queue); a stop by
 * `options.signal` while taking it rejects with the signal's reason.
 */
export async function withDatasetLock<T>(
  options: IngestOptions,
  job: (lock: RunLock) => Promise<T>,
  o: { queueProducer?: boolean } = {},
): Promise<T> {
  if (options.datasetLock) return job(options.datasetLock);
  // The lists are found before the dataset is touched: a mistyped list path leaves no empty output folder.
  if (!options.source) await listFiles(options.lists);
  const store = await openStore(options.out, options.store);
  const taking = lockRun(store, INGEST_RUN, { location: options.out });
  let lock: RunLock;
  try {
    lock = await abortable(taking, options.signal); // reads the store: a stalled read must not outlast a stop
  } catch (err) {
    void taking.then((l) => l.release()).catch(() => {}); // taken after the stop: not kept
    throw err;
  }
  try {
    if (!o.queueProducer) await refuseQueued(store);
    return await job(lock);
  } finally {
    await lock.release().catch(() => {}); // a store outage leaves a lease that goes stale; the job's outcome stands
  }
}
