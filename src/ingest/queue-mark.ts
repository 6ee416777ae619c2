/**
 * The queue mark: a producer stopped before its units are all committed leaves them queued, and workers go on
 * committing them without it. So each producer lists its job in the dataset's `queue.json` (its queue,
 * redacted, and its unit range) from before it enqueues until every unit of its job is committed, and a run
 * that would write units itself (a local rerun, `--retry-failed`, a crawl: dataset-lock.ts) refuses the
 * dataset while a listed job has a unit left to commit, naming the queue to rerun with. Producers never
 * refuse: their units go to the queue, and each removes only its own entry. Only a run holding the dataset's
 * lease writes the mark, so its read-modify-write never races another writer.
 */
import { ConfigError } from '../errors.js';
import { listUnits } from '../shards/dataset.js';
import { QUEUE_MARK_KEY } from '../shards/keys.js';
import { getBytes, type Store } from '../shards/store.js';

/** One queued job of the mark: where its units are queued (password redacted), which units, since when. */
export interface QueuedJob {
  queue: string;
  firstUnit: number;
  units: number;
  since: string;
}

/** The mark's entries; null when it does not read (it still marks the dataset: every unit outstanding). */
async function readMark(store: Store): Promise<QueuedJob[] | null> {
  if (!(await store.head(QUEUE_MARK_KEY))) return [];
  try {
    const mark = JSON.parse(Buffer.from(await getBytes(store, QUEUE_MARK_KEY)).toString('utf8')) as unknown;
    const jobs = (mark as { jobs?: unknown } | null)?.jobs;
    if (!Array.isArray(jobs)) return null;
    const valid = (j: Partial<QueuedJob> | null) =>
      typeof j?.queue === 'string' && Number.isSafeInteger(j.firstUnit) && Number.isSafeInteger(j.units);
    return jobs.every(valid) ? (jobs as QueuedJob[]) : null;
  } catch {
    return null;
  }
}

async function writeMark(store: Store, jobs: QueuedJob[]): Promise<void> {
  if (jobs.length === 0) await store.delete(QUEUE_MARK_KEY);
  else await store.put(QUEUE_MARK_KEY, Buffer.from(JSON.stringify({ jobs }, null, 1)));
}

/** Lists the job of units `firstUnit`.. (`units` of them) as queued on `queue` (a redacted URL). */
export async function markQueued(
  store: Store,
  queue: string,
  job: { firstUnit: number; units: number },
): Promise<void> {
  const others = ((await readMark(store)) ?? []).filter((j) => j.firstUnit !== job.firstUnit);
  await writeMark(store, [
    ...others,
    { queue, firstUnit: job.firstUnit, units: job.units, since: new Date().toISOString() },
  ]);
}

/** Removes the job's entry once no unit of it is left to commit. */
export async function clearQueued(store: Store, job: { firstUnit: number }): Promise<void> {
  const jobs = await readMark(store);
  if (jobs !== null)
    await writeMark(
      store,
      jobs.filter((j) => j.firstUnit !== job.firstUnit),
    );
}

/**
 * Throws ConfigError while a job of the mark has a unit left to commit (or the mark does not read); entries
 * whose units are all committed (their producer stopped just after) are removed.
 */
export async function refuseQueued(store: Store): Promise<void> {
  const jobs = await readMark(store);
  if (jobs?.length === 0) return;
  const committed = new Set((await listUnits(store)).map((u) => u.unit));
  const open = (j: QueuedJob) =>
    Array.from({ length: j.units }, (_, i) => j.firstUnit + i).some((u) => !committed.has(u));
  const outstanding = jobs?.filter(open) ?? null;
  if (outstanding?.length === 0) return writeMark(store, []);
  const queue = outstanding?.[0]?.queue ?? 'its queue';
  throw new ConfigError(
    `${store.url} has units queued on ${queue} by a producer that stopped before they were all committed, and workers may still commit them: rerun the job with --queue ${queue} (it waits for them and settles the job), or, once no worker runs, delete ${store.url}/${QUEUE_MARK_KEY}`,
  );
}
