/**
 * One run per store that a run writes: a checkpoint store (`train`) or a dataset (`ingest`, `crawl`). Two
 * `train` runs on one `--out` would each write `step-N` checkpoints and metric parts over the other's, and each
 * prune the other's files; two ingest jobs on one dataset would each write a unit's shard, failures and record,
 * and a record could end up describing the other job's shard. Either way data is lost without an error. Object
 * stores have no lock or conditional write that every S3-compatible server offers, so the lock is a lease: an
 * object (`train.lock`, `ingest.lock`) names the run holding it and when it last renewed the lease.
 *
 * - A lease is held while its run renews it (every `renewMs`); one not renewed for `ttlMs` is stale.
 * - A lease of this host whose process is gone (a SIGKILL, a crash) is stale at once, whatever its age: a
 *   rerun on the same machine resumes without waiting. A live process of this host keeps its lease, renewed or
 *   not (a step that blocks the event loop must not lose it).
 * - Taking a lease is a write, then a read after `settleMs`: of two runs that start together, the one whose
 *   write came last holds it, and the other refuses. A run that finds at a renewal that another run holds
 *   its lease (it was stalled past the TTL and another run took over) stops before its next write.
 *
 * Best effort by design: a store whose writes take longer than `settleMs` to show could let two runs start;
 * the first renewal then stops one of them.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { NotFoundError, WildstreamError } from '../errors.js';
import { processExists } from '../process-exists.js';
import { FLAG_NAMES, type OptionNames } from '../options/declare.js';
import { INGEST_LOCK_KEY, TRAIN_LOCK_KEY } from './keys.js';
import type { Store } from './store.js';
import { getBytes } from './store.js';

/** What a lock guards: its object's key, and how a refusal names the holder and the harm it prevents. */
export interface RunKind {
  key: string;
  holder: string;
  harm: string;
}

export const TRAIN_RUN: RunKind = {
  key: TRAIN_LOCK_KEY,
  holder: 'training run',
  harm: "two runs on one checkpoint store would overwrite each other's checkpoints",
};

export const INGEST_RUN: RunKind = {
  key: INGEST_LOCK_KEY,
  holder: 'ingest job',
  harm: "two jobs on one dataset would write the same units over each other's",
};

const MAX_LEASE_BYTES = 4096;

export interface RunLease {
  /** Random id of the run holding the lease. */
  run: string;
  host: string;
  pid: number;
  /** ISO times: when the run took the lease, and when it last renewed it. */
  started: string;
  renewed: string;
}

const leaseSchema = z.object({
  run: z.string(),
  host: z.string(),
  pid: z.number().int().positive(),
  started: z.string(),
  renewed: z.string(),
});

/** Another run holds the store, or took it over from this one. */
export class RunLockedError extends WildstreamError {
  override readonly code = 'WS_ERR_RUN_LOCKED';
}

export interface RunLockOptions {
  /** A lease not renewed for this long (ms) is stale, unless its process is alive on this host. @default 300000 */
  ttlMs?: number;
  /** Milliseconds between renewals. @default 30000 */
  renewMs?: number;
  /** Milliseconds between taking the lease and reading it back. @default 200 */
  settleMs?: number;
  /** Told when a stale lease is taken over, and when a renewal fails. @default nothing */
  log?: (line: string) => void;
  /** Where the store is, for messages. @default store.url */
  location?: string;
  /** How messages name the store's option (`--out`, `train.out`). @default the command's flags */
  names?: OptionNames;
}

/** Options with their defaults, and the kind. */
type Settings = Required<RunLockOptions> & { kind: RunKind };

/** A held lease: renewed in the background until released. */
export interface RunLock {
  readonly lease: RunLease;
  /** Throws RunLockedError when a renewal found another run holding the lease (write nothing then). */
  check(): void;
  /** Renews now (the timer calls it); a renewal that finds another run's lease marks this lock lost. */
  renew(): Promise<void>;
  /** Stops renewing and deletes the lease when it is still this run's. */
  release(): Promise<void>;
}

/**
 * Takes the `kind` lease of `store` for this process. Throws RunLockedError naming the run that holds it (host, pid,
 * last renewal) and how to free it.
 */
export async function lockRun(store: Store, kind: RunKind, options: RunLockOptions = {}): Promise<RunLock> {
  const o: Settings = {
    ttlMs: 300_000,
    renewMs: 30_000,
    settleMs: 200,
    log: () => {},
    location: store.url,
    names: FLAG_NAMES,
    ...options,
    kind,
  };
  const key = kind.key;
  const held = await readLease(store, key);
  let tookOver: string | null = null;
  if (held) {
    const stale = staleness(held, o.ttlMs);
    if (!stale) throw lockedError(held, o);
    tookOver = `${describe(held)} ${stale}`;
  } else if (await store.head(key)) {
    tookOver = `its ${key} is damaged (not a lease)`;
  }
  const now = new Date().toISOString();
  const lease: RunLease = { run: randomId(), host: hostname(), pid: process.pid, started: now, renewed: now };
  await writeLease(store, key, lease);
  await sleep(o.settleMs);
  const after = await readLease(store, key);
  if (after?.run !== lease.run) throw lockedError(after ?? lease, o, 'as this run started');
  if (tookOver) o.log(`took over the lock of ${o.location}: ${tookOver}`); // only the run that holds it says so
  return new LeaseHolder(store, lease, o);
}

class LeaseHolder implements RunLock {
  private lost: RunLease | null = null;
  private failedRenewals = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly store: Store,
    readonly lease: RunLease,
    private readonly o: Settings,
  ) {
    this.timer = setInterval(() => void this.renew(), o.renewMs).unref();
  }

  check(): void {
    if (this.lost)
      throw new RunLockedError(
        `another run took over ${this.o.location} while this one was not renewing its lock (${describe(this.lost)}); this run stopped without writing`,
      );
  }

  async renew(): Promise<void> {
    if (this.lost) return;
    try {
      const now = await readLease(this.store, this.o.kind.key);
      if (now && now.run !== this.lease.run) {
        this.lost = now;
        clearInterval(this.timer);
        return;
      }
      this.lease.renewed = new Date().toISOString();
      await writeLease(this.store, this.o.kind.key, this.lease);
      this.failedRenewals = 0;
    } catch (err) {
      // A store outage: the loop meets it at its next write; the lease lasts ttlMs meanwhile.
      if (this.failedRenewals++ === 0)
        this.o.log(`could not renew the lock of ${this.o.location}: ${(err as Error).message}`);
    }
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    if (this.lost) return;
    const now = await readLease(this.store, this.o.kind.key).catch(() => null);
    if (now?.run === this.lease.run) await this.store.delete(this.o.kind.key);
  }
}

/** The lease at `key` in `store`, or null; a damaged lease object counts as none (a partial write cannot happen). */
async function readLease(store: Store, key: string): Promise<RunLease | null> {
  let bytes: Uint8Array;
  try {
    const info = await store.head(key);
    if (!info || info.size > MAX_LEASE_BYTES) return null; // a lease is ~150 bytes: a larger object is none
    bytes = await getBytes(store, key);
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
  try {
    return leaseSchema.parse(JSON.parse(Buffer.from(bytes).toString('utf8')));
  } catch {
    return null;
  }
}

const writeLease = (store: Store, key: string, lease: RunLease) =>
  store.put(key, Buffer.from(`${JSON.stringify(lease)}\n`));

/** Why a lease no longer holds, or null while it does. */
function staleness(lease: RunLease, ttlMs: number): string | null {
  if (lease.host === hostname()) return processExists(lease.pid) ? null : '(its process is gone)';
  const age = Date.now() - Date.parse(lease.renewed);
  // An unreadable time, or one a TTL or more ahead (no clock is that far off), cannot say the lease is fresh.
  if (!Number.isFinite(age) || age <= -ttlMs)
    return `(its renewal time ${JSON.stringify(shown(lease.renewed))} is not a real one)`;
  return age < ttlMs ? null : `(not renewed for ${Math.round(age / 1000)} s)`;
}

/** The lease in a message: its strings are a stranger's (any store can hold any bytes), so shown escaped. */
const describe = (l: RunLease) =>
  `run ${shown(l.run)} (pid ${l.pid} on ${shown(l.host)}, started ${shown(l.started)}, renewed ${shown(l.renewed)})`;

const shown = (text: string) => {
  const cut = text.length > 80 ? `${text.slice(0, 80)}...` : text;
  return /^[\x20-\x7e]*$/.test(cut) ? cut : JSON.stringify(cut).replace(/[^\x20-\x7e]/g, '?');
};

function lockedError(held: RunLease, o: Settings, when = ''): RunLockedError {
  const free =
    held.host === hostname()
      ? 'stop that process first'
      : `it is stale ${Math.round(o.ttlMs / 1000)} s after its last renewal; delete ${o.kind.key} there if that run is gone`;
  return new RunLockedError(
    `another ${o.kind.holder} holds ${o.location}${when ? ` ${when}` : ''}: ${describe(held)}; ${o.kind.harm}; ${free}, or give another ${o.names.of('out')}`,
  );
}

const randomId = () => randomUUID().slice(0, 8);
