/**
 * One writing job per dataset. Two jobs on one `--out` would each write a unit's shard, failures and record,
 * and a unit could commit a record that describes the other job's shard (a reader then refuses it, and a rerun
 * trusts it). So the local executor, a retry pass and a queue's producer hold the dataset's ingest lease
 * (shards/run-lock.ts) from before they register the job until they end. Queue workers take none: the
 * producer holds it for the units it enqueued, and the queue gives each unit to one worker at a time.
 *
 * A producer stopped before its units are all committed leaves them queued, and workers go on committing them
 * without it. So the producer marks the dataset (`queue.json`: the queue, redacted) from before it enqueues
 * until every unit of its job is committed, and any other run that would write units (a local rerun,
 * `--retry-failed`, another job) refuses the dataset while the mark is there: it names the queue to rerun with.
 */
import { ConfigError } from '../errors.js';
import { listUnits } from '../shards/dataset.js';
import { QUEUE_MARK_KEY } from '../shards/keys.js';
import { INGEST_RUN, lockRun, type RunLock } from '../shards/run-lock.js';
import { getBytes, openStore, type Store } from '../shards/store.js';
import { abortable, type IngestOptions } from './run-options.js';

/** What a queued job's mark records: where its units are queued (password redacted), which, and since when. */
export interface QueueMark {
  queue: string;
  firstUnit: number;
  units: number;
  since: string;
}

/** Marks the dataset as having units `firstUnit`.. (`units` of them) queued on `queue` (a redacted URL). */
export async function markQueued(
  store: Store,
  queue: string,
  job: { firstUnit: number; units: number },
): Promise<void> {
  const mark: QueueMark = { queue, firstUnit: job.firstUnit, units: job.units, since: new Date().toISOString() };
  await store.put(QUEUE_MARK_KEY, Buffer.from(JSON.stringify(mark)));
}

/** Removes the mark once no unit of the queued job is left to commit. */
export async function clearQueued(store: Store): Promise<void> {
  await store.delete(QUEUE_MARK_KEY);
}

/**
 * Throws ConfigError while the dataset holds a queued job's mark (see the module comment) and a unit of that job
 * is uncommitted; a mark whose units are all committed (its producer stopped just after) is removed.
 */
export async function refuseQueued(store: Store): Promise<void> {
  if (!(await store.head(QUEUE_MARK_KEY))) return;
  let mark: Partial<QueueMark> = {};
  try {
    mark = JSON.parse(Buffer.from(await getBytes(store, QUEUE_MARK_KEY)).toString('utf8')) as QueueMark;
  } catch {
    // a mark that does not read still marks the dataset: every unit counts as outstanding
  }
  const { firstUnit, units } = mark;
  if (Number.isSafeInteger(firstUnit) && Number.isSafeInteger(units)) {
    const committed = (await listUnits(store)).filter((u) => u.unit >= firstUnit! && u.unit < firstUnit! + units!);
    if (committed.length >= units!) return clearQueued(store);
  }
  const queue = typeof mark.queue === 'string' ? mark.queue : 'its queue';
  throw new ConfigError(
    `${store.url} has units queued on ${queue} by a producer that stopped before they were all committed, and workers may still commit them: rerun the job with --queue ${queue} (it waits for them and settles the job), or, once no worker runs, delete ${store.url}/${QUEUE_MARK_KEY}`,
  );
}

/**
 * Runs `job` holding the ingest lease of `options.out` (or `options.datasetLock`, held by the caller). Throws
 * RunLockedError (before `job` starts) while another live job holds it, ConfigError while the dataset has
 * units queued by a stopped producer (unless `queueProducer`: the producer taking over its queue); a stop by
 * `options.signal` while taking it rejects with the signal's reason.
 */
export async function withDatasetLock<T>(
  options: IngestOptions,
  job: (lock: RunLock) => Promise<T>,
  o: { queueProducer?: boolean } = {},
): Promise<T> {
  if (options.datasetLock) return job(options.datasetLock);
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
