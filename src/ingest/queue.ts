/**
 * Distributed ingest on BullMQ (Redis). The producer plans units with the local job's planner (plan.ts), seeds the
 * dataset's Redis dedupe index from its committed shards (as a local job starts its index from them), and enqueues
 * each uncommitted unit with its URL rows (job id = dataset id + job fingerprint + unit, so enqueueing again is a
 * no-op, and another dataset, or this one deleted and made again, never shares a job), then waits until every unit
 * is committed, enqueueing again any unit whose job vanished from Redis. Redis state is keyed by the dataset's
 * manifest id and removed once every unit of the dataset is committed. Workers on any machine take units, process
 * them with `ingestUnit` (the local code path) and a Redis-backed dedupe index, and commit them to the shared
 * store, provided the manifest at the unit's `out` still gives the unit to its job (a unit left queued by a dataset
 * since deleted is failed, committing and claiming nothing). A worker killed mid-unit holds a lock that expires;
 * BullMQ's stalled-job check hands the unit to another worker, and the partial shard is never committed (only a
 * unit record commits). The producer's summary is computed from the unit records by the same function as a local
 * job's (`summarisePlan`), failure reasons included; while no worker has taken any unit it says so, with the
 * command that starts one.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { ConfigError, StoreUnavailableError } from '../errors.js';
import { listUnits, MANIFEST_KEY, unitKey, type UnitRecord } from '../shards/dataset.js';
import type { RunLock } from '../shards/run-lock.js';
import { openStore, type Store } from '../shards/store.js';
import { RedisDedupe } from './dedupe-redis.js';
import { ingestUnit, type UnitTask } from './job.js';
import { confirmDuplicates } from './retry.js';
import { withDatasetLock } from './dataset-lock.js';
import { clearQueued, markQueued } from './queue-mark.js';
import { nextUnit, planIngest, readManifest, summarisePlan, type IngestPlan } from './plan.js';
import { abortable, DEFAULT_DEDUPE_RADIUS, validateIngestOptions, type IngestOptions } from './run-options.js';
import { interruptedError, plural, type IngestSummary } from './summary.js';

export const QUEUE_NAME = 'wildstream-ingest';

/**
 * What a queued unit carries: the worker's `UnitTask` less the live objects, plus the dedupe radius and the
 * Redis prefix of its dataset's index. Which dataset and job the unit belongs to is its job id (unitJobId),
 * which a worker checks against the manifest at `out` (currentDataset).
 */
type UnitJobData = Omit<UnitTask, 'dedupe' | 'onProgress' | 'signal'> & {
  dedupeRadius: number;
  /** Read by workers of earlier versions; a worker now names the index by the dataset id it checked. */
  dedupePrefix?: string;
  /** Whether the index has epochs (dedupe-redis.ts) the unit's claims must hold in: set by producers that write them. */
  dedupeEpoch?: boolean;
};

/** The Redis key prefix of a dataset's dedupe index: by its manifest id, so a dataset made again starts empty. */
export const dedupePrefix = (datasetId: string): string => `wildstream:dedupe:${datasetId}`;

/**
 * A unit's queue job id: the dataset's id (another `--out`, or the same one deleted and made again, never
 * finds this dataset's finished jobs), the job's fingerprint and the unit. BullMQ refuses ":" in custom ids.
 */
export const unitJobId = (datasetId: string, fingerprint: string, unit: number): string =>
  `${datasetId}-${fingerprint.slice(0, 16)}-${unit}`;

/**
 * Checks a redis:// URL, that the server answers and that it has the URL's DB, in seconds rather than
 * ioredis' endless retries. Throws ConfigError for a malformed URL or a DB the server lacks (ioredis would
 * report a failed SELECT as an event and go on in DB 0), StoreUnavailableError when Redis cannot be reached.
 */
export async function connectRedis(url: string): Promise<Redis> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`--queue must be a redis:// or rediss:// URL, got "${url}"`);
  }
  if (
    !['redis:', 'rediss:'].includes(parsed.protocol) ||
    !parsed.hostname ||
    (parsed.pathname.length > 1 && !/^\/\d+$/.test(parsed.pathname))
  ) {
    throw new ConfigError(`--queue must look like redis://host:6379/0, got "${url}"`);
  }
  const probe = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 5000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  probe.on('error', () => {}); // reported below
  try {
    await probe.connect();
    await probe.ping();
  } catch (err) {
    probe.disconnect();
    throw new StoreUnavailableError(`cannot reach Redis at ${parsed.host}: ${(err as Error).message}`);
  }
  try {
    await checkDb(probe, parsed);
  } finally {
    probe.disconnect();
  }
  return new Redis(url, { maxRetriesPerRequest: null });
}

/** Selects the URL's DB on a connected client: a server with fewer DBs refuses it ("DB index is out of range"). */
async function checkDb(probe: Redis, parsed: URL): Promise<void> {
  const db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0;
  try {
    await probe.select(db);
  } catch (err) {
    throw new ConfigError(`cannot select Redis DB ${db} at ${parsed.host}: ${(err as Error).message}`);
  }
}

export interface QueuedIngestOptions {
  /** How long to wait for a worker to take the first unit before saying that none has, with the command that
   * starts one (repeated every minute while none has). @default 20000 */
  noWorkerNoticeMs?: number;
  /** Receives such notices. @default none */
  onNotice?: (message: string) => void;
}

/** Enqueues the uncommitted units of a job and waits until all are committed (or one fails for good). */
export async function runQueuedIngest(
  options: IngestOptions,
  queueUrl: string,
  q: QueuedIngestOptions = {},
): Promise<IngestSummary> {
  validateIngestOptions(options);
  const { signal } = options;
  const connection = await connectRedis(queueUrl);
  const queue = new Queue<UnitJobData>(QUEUE_NAME, { connection });
  const state = { committed: 0, total: 0 };
  try {
    return await withDatasetLock(
      options,
      (lock) => enqueueAndWait(options, { queue, connection, lock }, queueUrl, q, state),
      { queueProducer: true },
    );
  } catch (err) {
    if (signal?.aborted) {
      throw interruptedError(
        signal.reason,
        state.committed,
        state.total,
        'the queued units stay queued and workers go on with them; rerun the same command to wait for them again',
      );
    }
    throw err;
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

/** What the producer works on: the plan, its queue, and its dataset's Redis names. */
interface Producer {
  queue: Queue<UnitJobData>;
  plan: IngestPlan;
  options: IngestOptions;
  index: RedisDedupe;
  prefix: string;
}

/**
 * Plans the job, seeds the dedupe index, enqueues its uncommitted units (once each) and waits for them; then
 * runs the job's confirmation pass, here (retry.ts), if a unit listed rows `duplicate_unconfirmed`.
 */
async function enqueueAndWait(
  options: IngestOptions,
  { queue, connection, lock }: { queue: Queue<UnitJobData>; connection: Redis; lock: RunLock },
  queueUrl: string,
  q: QueuedIngestOptions,
  state: { committed: number; total: number },
): Promise<IngestSummary> {
  const { signal } = options;
  const plan = await planIngest(options);
  state.total = plan.job.units;
  const prefix = dedupePrefix(plan.manifest.id!); // registerJob gives every dataset an id
  const radius = options.dedupeRadius ?? DEFAULT_DEDUPE_RADIUS;
  const p: Producer = { queue, plan, options, prefix, index: new RedisDedupe(connection, prefix, radius) };
  await abortable(p.index.seed(plan.store, plan.committed), signal);
  await p.index.newEpoch({ keep: true }); // a producer started again keeps the epoch its workers' units run in
  await markQueued(plan.store, redactUrl(queueUrl), plan.job); // until every unit is committed (dataset-lock.ts)
  const jobIds = await enqueueUnits(p, new Set(plan.committed.map((u) => u.unit)));
  const wait: Wait = { ...p, jobIds, queueUrl, notices: q, state };
  const summary = await abortable(waitForUnits(wait), signal);
  await clearQueued(plan.store, plan.job); // every unit committed: no worker can commit one of them any more (fence)
  const { job, store } = plan;
  const units = (await listUnits(store)).filter((u) => u.unit >= job.firstUnit && u.unit < job.firstUnit + job.units);
  const confirmed = await confirmDuplicates(options, lock, units, summary);
  await cleanUp(wait);
  return confirmed;
}

/**
 * Enqueues each unit of the job not in `done` (or, given `only`, each of those), and returns every
 * uncommitted unit's job id. A unit whose job exists is left alone, except a job that ended: failed for good,
 * or completed while its unit is not committed (its record was removed). That one is enqueued afresh, since
 * BullMQ's own retry keeps the attempts and stalls a job spent, which would leave the rerun one try.
 */
async function enqueueUnits(p: Producer, done: Set<number>, only?: Set<number>): Promise<Map<number, string>> {
  const { plan, options, queue } = p;
  const ids = new Map<number, string>();
  for await (const { unit, rows } of plan.units()) {
    options.signal?.throwIfAborted();
    if (done.has(unit) || (only && !only.has(unit))) continue;
    const id = unitJobId(plan.manifest.id!, plan.job.fingerprint, unit);
    ids.set(unit, id);
    let existing = await queue.getJob(id);
    if (existing && ((await existing.isCompleted()) || (await existing.isFailed()))) {
      await existing.remove();
      existing = undefined;
    }
    if (!existing) {
      const { fetch, decode, concurrency } = options;
      const data: UnitJobData = {
        out: plan.store.url,
        store: options.store,
        unit,
        rows,
        extraColumns: plan.extraColumns,
        options: { fetch, decode, concurrency },
        dedupeRadius: p.index.radius,
        dedupePrefix: p.prefix,
        dedupeEpoch: true,
      };
      await queue.add('unit', data, { jobId: id, attempts: 5, backoff: { type: 'exponential', delay: 1000 } });
    }
  }
  return ids;
}

interface Wait extends Producer {
  jobIds: Map<number, string>;
  queueUrl: string;
  notices: QueuedIngestOptions;
  state: { committed: number; total: number };
}

/**
 * Polls the store until every unit of the job is committed, reporting progress; says so while no worker has
 * taken a unit. Throws StoreUnavailableError when a unit failed for good (checkJobs).
 */
async function waitForUnits(w: Wait): Promise<IngestSummary> {
  const started = Date.now();
  const { job, store, earlier } = w.plan;
  const before = new Set(earlier.map((u) => u.unit));
  const noticeMs = w.notices.noWorkerNoticeMs ?? 20_000;
  let nextNotice = started + noticeMs;
  let taken = w.jobIds.size === 0;
  for (;;) {
    const units = (await listUnits(store)).filter((u) => u.unit >= job.firstUnit && u.unit < job.firstUnit + job.units);
    const run = units.filter((u) => !before.has(u.unit));
    w.state.committed = units.length;
    const summary = summarisePlan(w.plan, run, started, w.options.retryHint);
    w.options.onProgress?.(summary);
    if (units.length >= job.units) return summary;
    const committed = new Set(units.map((u) => u.unit));
    if (await checkJobs(w, committed)) taken = true;
    if (!taken && run.length === 0 && Date.now() >= nextNotice) {
      const waited = Math.round((Date.now() - started) / 1000);
      const n = w.jobIds.size;
      w.notices.onNotice?.(
        `no worker has taken a unit in ${waited} s; ${plural(n, 'unit')} wait${n === 1 ? 's' : ''} in the queue: start workers with \`wildstream worker --queue ${redactUrl(w.queueUrl)}\` (on any machine that reaches Redis and ${store.url})`,
      );
      nextNotice = Date.now() + Math.max(noticeMs, 60_000);
    }
    await sleep(500);
  }
}

/**
 * Looks at the job of each uncommitted unit: throws StoreUnavailableError when one failed (failedUnit);
 * enqueues again the units whose jobs are gone (Redis flushed, evicted or restarted without persistence: no
 * worker would ever see them), after seeding the index again, since its claims went with them. Returns whether
 * a worker took any unit.
 */
async function checkJobs(w: Wait, committed: Set<number>): Promise<boolean> {
  let taken = false;
  const missing = new Set<number>();
  for (const [unit, id] of w.jobIds) {
    if (committed.has(unit)) continue;
    const job = await w.queue.getJob(id);
    if (!job) missing.add(unit);
    if (job?.processedOn) taken = true;
    if (job && (await job.isFailed())) throw failedUnit(job);
  }
  if (missing.size === 0) return taken;
  const units = await listUnits(w.plan.store);
  const done = new Set(units.map((u) => u.unit));
  if ([...missing].every((u) => done.has(u))) return taken; // committed, then removed: nothing to redo
  w.notices.onNotice?.(
    `${plural(missing.size, 'queued unit')} vanished from Redis (flushed, evicted or restarted?); enqueueing ${missing.size === 1 ? 'it' : 'them'} again`,
  );
  await reseed(w, units);
  await enqueueUnits(w, done, missing);
  return taken;
}

/**
 * A unit BullMQ failed for good, whatever the reason: its attempts spent, its worker dead mid-unit more often
 * than maxStalledCount allows (BullMQ fails it then with attempts left), or an unrecoverable error. BullMQ
 * retries a job that may be retried by moving it to wait or delayed, so a failed job is never taken again.
 * Ending the job (rather than enqueueing the unit again here) matches a unit whose attempts are spent: a unit
 * that kills every worker that takes it (memory, a crash in a decoder) would otherwise do so forever; a rerun
 * enqueues it afresh (enqueueUnits).
 */
function failedUnit(job: Job<UnitJobData>): StoreUnavailableError {
  const stalls =
    job.stalledCounter > 0 ? ` after its worker was lost mid-unit ${plural(job.stalledCounter, 'time')}` : '';
  return new StoreUnavailableError(
    `unit ${job.data.unit} failed ${plural(job.attemptsMade, 'time')}${stalls}: ${job.failedReason}; rerun to retry it`,
  );
}

/**
 * Seeds the index again after Redis lost state, and starts a new epoch: a unit still running with claims made
 * before the loss then refuses its commit (dedupe-redis.ts). The units committed while seeding are added after
 * the epoch changes, so only a commit already past its epoch check when the loss happened can be missed.
 */
async function reseed(w: Wait, units: readonly UnitRecord[]): Promise<void> {
  await w.index.seed(w.plan.store, units);
  await w.index.newEpoch();
  const seeded = new Set(units.map((u) => u.unit));
  await w.index.seed(
    w.plan.store,
    (await listUnits(w.plan.store)).filter((u) => !seeded.has(u.unit)),
  );
}

/**
 * Once the job is done, removes its unit jobs and, when every unit of the dataset is committed (so no worker
 * can be using it), the dataset's dedupe index: a later job seeds it again from the shards. Best effort.
 */
async function cleanUp(w: Wait): Promise<void> {
  const { job, manifest } = w.plan;
  try {
    for (let unit = job.firstUnit; unit < job.firstUnit + job.units; unit++) {
      const queued = await w.queue.getJob(unitJobId(manifest.id!, job.fingerprint, unit));
      await queued?.remove().catch(() => {}); // a redelivery still running holds its lock: left in the queue
    }
    const units = await listUnits(w.plan.store);
    if (units.length >= nextUnit(w.plan.manifest)) await w.index.clear();
  } catch {
    // left to expire (INDEX_TTL_S); a later run of the job finds its completed jobs and enqueues nothing
  }
}

/** The URL with its password replaced, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.href;
  } catch {
    return url;
  }
}

/** This worker lost a unit's lock (or another worker committed the unit) before it could commit the unit. */
export class UnitTakenError extends StoreUnavailableError {
  constructor(unit: number) {
    super(
      `unit ${unit}: this worker lost the unit's lock (paused longer than --lock-ms?) or another worker committed it; not committed here`,
    );
    this.name = 'UnitTakenError';
  }
}

/**
 * A queued unit whose dataset is no longer at its `out`: the dataset was deleted (and perhaps made again there,
 * with another id) while the unit was queued or running. Unrecoverable: BullMQ fails the job at once, with this
 * message as its reason, and nothing of it is committed.
 */
export class StaleUnitError extends UnrecoverableError {
  constructor(unit: number, out: string, why: string) {
    super(`unit ${unit}: queued for a dataset no longer at ${out} (${why}); not committed, and dropped`);
    this.name = 'StaleUnitError';
  }
}

/**
 * The id of the dataset at the job's `out`, when the job is the one that dataset's manifest gives the unit: its
 * job id names the manifest's id and the fingerprint of the entry holding the unit (unitJobId). Units queued
 * by a dataset since deleted, and by producers from before datasets had ids, are not. Throws StaleUnitError
 * for those; the store's errors and ConfigError (a manifest that does not read) fail the attempt as usual.
 */
async function currentDataset(store: Store, job: Job<UnitJobData>): Promise<string> {
  const { unit, out } = job.data;
  const manifest = await readManifest(store);
  if (!manifest?.id) throw new StaleUnitError(unit, out, `no ${MANIFEST_KEY} with an id there`);
  const entry = manifest.jobs.find((j) => unit >= j.firstUnit && unit < j.firstUnit + j.units);
  if (!entry || job.id !== unitJobId(manifest.id, entry.fingerprint, unit)) {
    throw new StaleUnitError(unit, out, `the dataset there, ${manifest.id}, gives unit ${unit} to another job`);
  }
  return manifest.id;
}

const lockMs = (o: WorkerOptions) => o.lockMs ?? 30_000;

export interface WorkerOptions {
  concurrency?: number;
  /** How long a unit's lock lives without renewal; a dead worker's unit is reassigned after about this. @default 30000 */
  lockMs?: number;
  onEvent?: (event: Record<string, unknown>) => void;
  signal?: AbortSignal;
}

/**
 * Takes units from the queue until `signal` aborts. A stop cuts the units in progress short: none of them
 * commits (UnitWriter refuses a commit after the abort), and each goes back to the queue's wait list at once,
 * without spending an attempt, so another worker takes it from the start. Throws ConfigError or
 * StoreUnavailableError (connectRedis) before taking any unit.
 */
export async function runWorker(queueUrl: string, o: WorkerOptions = {}): Promise<void> {
  const connection = await connectRedis(queueUrl);
  const worker = new Worker<UnitJobData>(QUEUE_NAME, (job, token) => processUnit(job, token, connection, o), {
    connection,
    concurrency: o.concurrency ?? 1,
    lockDuration: lockMs(o),
    stalledInterval: Math.max(500, lockMs(o) / 2),
    maxStalledCount: 5,
  });
  worker.on('failed', (job, err) => {
    const event = err instanceof StaleUnitError ? 'unit_stale' : 'unit_failed';
    o.onEvent?.({ event, unit: job?.data.unit, error: err.message });
  });
  worker.on('error', (err) => o.onEvent?.({ event: 'worker_error', error: err.message }));
  try {
    await worker.waitUntilReady();
    if (!o.signal?.aborted) o.onEvent?.({ event: 'worker_ready', concurrency: o.concurrency ?? 1 });
    await new Promise<void>((resolve) => {
      if (o.signal?.aborted) resolve();
      o.signal?.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    await worker.close(); // the units in progress end at once (processUnit): close waits only for their release
    connection.disconnect();
  }
}

/**
 * Processes one queued unit, if it is its dataset's (currentDataset: checked before the unit starts, and again
 * before its shard and its record are put). On a stop (`o.signal`) it does not wait for the unit: it moves the
 * job back to wait (BullMQ's `WaitingError`: no attempt spent, lock released) and lets the unit's downloads
 * end unheard.
 */
async function processUnit(
  job: Job<UnitJobData>,
  token: string | undefined,
  redis: Redis,
  o: WorkerOptions,
): Promise<UnitRecord | { skipped: true }> {
  const d = job.data;
  const store = await openStore(d.out, d.store);
  // Before any claim: a stale unit's images must not enter an index, nor its shard another dataset.
  const datasetId = await currentDataset(store, job);
  if (await store.head(unitKey(d.unit))) return { skipped: true }; // committed by an earlier attempt
  // A unit handed back after its worker died (stalled) counts as an attempt too; BullMQ counts only failures.
  o.onEvent?.({ event: 'unit_start', unit: d.unit, attempt: job.attemptsMade + (job.stalledCounter ?? 0) + 1 });
  const fence = async () => {
    // A worker paused past --lock-ms (a GC pause, a frozen VM) must not overwrite the unit another worker redid.
    const lost = token !== undefined && (await job.extendLock(token, lockMs(o))) !== 1;
    if (lost || (await store.head(unitKey(d.unit)))) {
      throw new UnitTakenError(d.unit);
    }
    await currentDataset(store, job); // the dataset deleted (and perhaps made again) while the unit ran
  };
  const task = ingestUnit({
    fence,
    out: d.out,
    store: d.store,
    unit: d.unit,
    rows: d.rows,
    extraColumns: d.extraColumns,
    options: d.options,
    // The index of the dataset just checked, not one the job names: claims never go to another dataset's.
    dedupe: new RedisDedupe(redis, dedupePrefix(datasetId), d.dedupeRadius, d.dedupeEpoch === true),
    signal: o.signal,
  });
  try {
    const record = await abortable(task, o.signal);
    o.onEvent?.({ event: 'unit_done', unit: d.unit, records: record.records });
    return record;
  } catch (err) {
    // BullMQ reports this job's end as a lock mismatch (a worker error), not as a failed unit: say which.
    if (err instanceof UnitTakenError) o.onEvent?.({ event: 'unit_lost', unit: d.unit, error: err.message });
    if (!o.signal?.aborted) throw err;
    void task.catch(() => {}); // refused its commit, or failed after the stop: nothing to report
    await job.moveToWait(token);
    o.onEvent?.({ event: 'unit_released', unit: d.unit });
    throw new WaitingError();
  }
}
