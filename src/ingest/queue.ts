/**
 * Distributed ingest on BullMQ (Redis). The producer plans units with the local job's planner (plan.ts) and
 * enqueues each uncommitted one with its URL rows (job id = job fingerprint + unit, so enqueueing again is a no-op), then
 * waits until every unit is committed. Workers on any machine take units, process them with `ingestUnit`
 * (the local code path) and a Redis-backed dedupe index, and commit them to the shared store. A worker killed
 * mid-unit holds a lock that expires; BullMQ's stalled-job check hands the unit to another worker, and the
 * partial shard is never committed (only a unit record commits). The producer's summary is computed from the
 * unit records by the same function as a local job's (`summarisePlan`), failure reasons included; while no worker has taken any unit it says so, with
 * the command that starts one.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { ConfigError, StoreUnavailableError } from '../errors.js';
import { listUnits, unitKey, type UnitRecord } from '../shards/dataset.js';
import { openStore } from '../shards/store.js';
import { RedisDedupe } from './dedupe-redis.js';
import { ingestUnit, type UnitTask } from './job.js';
import { planIngest, summarisePlan, type IngestPlan } from './plan.js';
import { abortable, DEFAULT_DEDUPE_RADIUS, validateIngestOptions, type IngestOptions } from './run-options.js';
import { interruptedError, plural, type IngestSummary } from './summary.js';

export const QUEUE_NAME = 'wildstream-ingest';

/** What a queued unit carries: the worker's `UnitTask` less the live objects, plus the dedupe radius. */
type UnitJobData = Omit<UnitTask, 'dedupe' | 'onProgress'> & { dedupeRadius: number };

/** Checks a redis:// URL and that the server answers, in seconds rather than ioredis' endless retries. */
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
  probe.disconnect();
  return new Redis(url, { maxRetriesPerRequest: null });
}

const datasetId = (out: string) => createHash('sha256').update(out).digest('hex').slice(0, 16);

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
    const plan = await planIngest(options);
    const jobIds: string[] = [];
    state.total = plan.job.units;
    for await (const { unit, rows, committed } of plan.units()) {
      signal?.throwIfAborted();
      if (committed) continue;
      const id = `${plan.job.fingerprint.slice(0, 16)}-${unit}`;
      jobIds.push(id);
      const existing = await queue.getJob(id);
      if (existing && (await existing.isFailed())) await existing.retry();
      else if (!existing) {
        const { fetch, decode, concurrency } = options;
        const data: UnitJobData = {
          out: plan.store.url,
          store: options.store,
          unit,
          rows,
          extraColumns: plan.extraColumns,
          options: { fetch, decode, concurrency },
          dedupeRadius: options.dedupeRadius ?? DEFAULT_DEDUPE_RADIUS,
        };
        await queue.add('unit', data, { jobId: id, attempts: 5, backoff: { type: 'exponential', delay: 1000 } });
      }
    }
    const wait: Wait = { queue, plan, jobIds, queueUrl, options, notices: q, state };
    return await abortable(waitForUnits(wait), signal);
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

interface Wait {
  queue: Queue<UnitJobData>;
  plan: IngestPlan;
  jobIds: string[];
  queueUrl: string;
  options: IngestOptions;
  notices: QueuedIngestOptions;
  state: { committed: number; total: number };
}

async function waitForUnits(w: Wait): Promise<IngestSummary> {
  const started = Date.now();
  const { job, store, earlier } = w.plan;
  const before = new Set(earlier.map((u) => u.unit));
  const noticeMs = w.notices.noWorkerNoticeMs ?? 20_000;
  let nextNotice = started + noticeMs;
  let taken = w.jobIds.length === 0;
  for (;;) {
    const units = (await listUnits(store)).filter((u) => u.unit >= job.firstUnit && u.unit < job.firstUnit + job.units);
    const run = units.filter((u) => !before.has(u.unit));
    w.state.committed = units.length;
    const summary = summarisePlan(w.plan, run, started, w.options.retryHint);
    w.options.onProgress?.(summary);
    if (units.length >= job.units) return summary;
    for (const id of w.jobIds) {
      const job = await w.queue.getJob(id);
      if (job?.processedOn) taken = true;
      if (job && (await job.isFailed()) && job.attemptsMade >= (job.opts.attempts ?? 1)) {
        throw new StoreUnavailableError(
          `unit ${job.data.unit} failed ${job.attemptsMade} times: ${job.failedReason}; rerun to retry it`,
        );
      }
    }
    if (!taken && run.length === 0 && Date.now() >= nextNotice) {
      const waited = Math.round((Date.now() - started) / 1000);
      w.notices.onNotice?.(
        `no worker has taken a unit in ${waited} s; ${plural(w.jobIds.length, 'unit')} wait${w.jobIds.length === 1 ? 's' : ''} in the queue: start workers with \`wildstream worker --queue ${redactUrl(w.queueUrl)}\` (on any machine that reaches Redis and ${store.url})`,
      );
      nextNotice = Date.now() + Math.max(noticeMs, 60_000);
    }
    await sleep(500);
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

export interface WorkerOptions {
  concurrency?: number;
  /** How long a unit's lock lives without renewal; a dead worker's unit is reassigned after about this. @default 30000 */
  lockMs?: number;
  onEvent?: (event: Record<string, unknown>) => void;
  signal?: AbortSignal;
}

/** Takes units from the queue until `signal` aborts. */
export async function runWorker(queueUrl: string, o: WorkerOptions = {}): Promise<void> {
  const connection = await connectRedis(queueUrl);
  const lockMs = o.lockMs ?? 30_000;
  const worker = new Worker<UnitJobData>(QUEUE_NAME, (job) => processUnit(job, connection, o), {
    connection,
    concurrency: o.concurrency ?? 1,
    lockDuration: lockMs,
    stalledInterval: Math.max(500, lockMs / 2),
    maxStalledCount: 5,
  });
  worker.on('failed', (job, err) => o.onEvent?.({ event: 'unit_failed', unit: job?.data.unit, error: err.message }));
  worker.on('error', (err) => o.onEvent?.({ event: 'worker_error', error: err.message }));
  await worker.waitUntilReady();
  o.onEvent?.({ event: 'worker_ready', concurrency: o.concurrency ?? 1 });
  try {
    await new Promise<void>((resolve) => {
      if (o.signal?.aborted) resolve();
      o.signal?.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    await worker.close();
    connection.disconnect();
  }
}

async function processUnit(
  job: Job<UnitJobData>,
  redis: Redis,
  o: WorkerOptions,
): Promise<UnitRecord | { skipped: true }> {
  const d = job.data;
  const store = await openStore(d.out, d.store);
  if (await store.head(unitKey(d.unit))) return { skipped: true }; // committed by an earlier attempt
  o.onEvent?.({ event: 'unit_start', unit: d.unit, attempt: job.attemptsMade + 1 });
  const record = await ingestUnit({
    out: d.out,
    store: d.store,
    unit: d.unit,
    rows: d.rows,
    extraColumns: d.extraColumns,
    options: d.options,
    dedupe: new RedisDedupe(redis, `wildstream:dedupe:${datasetId(d.out)}`, d.dedupeRadius),
  });
  o.onEvent?.({ event: 'unit_done', unit: d.unit, records: record.records });
  return record;
}
