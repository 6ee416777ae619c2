/**
 * The dataset stream: committed units -> shuffled records, epoch after epoch, reading record batches with
 * ranged GETs and keeping a bounded number of bytes prefetched. The order is `order.ts`'s pure function of
 * (seed, epoch, units, rank, worldSize, windowShards, groupBatches); the cursor after any record restores the
 * stream exactly there, and records the settings its position counts under (`order`): a stream opened at a
 * cursor of other settings, or at a group, offset or position its epoch does not have, is a CursorError rather
 * than records silently repeated or skipped. (mosaicml-streaming's state_dict likewise carries its seed.)
 * With worldSize > 1 every rank's epoch ends after the same number of records (its quota, order.ts), the
 * records cut counted in `stats.trimmed`. With `follow`, an empty dataset is waited for and each new epoch
 * picks up units committed since.
 *
 * A stream never spins: an epoch read from its start that yields no record (units of 0 records, every shard
 * or batch unreadable) is a NoDataError saying what the dataset holds, or with `follow`, a wait for new
 * units that `onWait` announces. Every wait (listing, shard footers, batches, polling) ends on `signal`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { checkOptionsObject, ConfigError, InvalidShardError, NoDataError, NotFoundError, shown } from '../errors.js';
import { listUnits, type UnitRecord } from '../shards/dataset.js';
import { ShardReader } from '../shards/reader.js';
import type { ImageRecord } from '../shards/schema.js';
import { checkStore, type Store } from '../shards/store.js';
import { abortable } from '../abort.js';
import { defined } from '../defaults.js';
import {
  committedBatches,
  dealShards,
  epochGroups,
  inRanges,
  rankQuota,
  shuffleGroup,
  toRanges,
  unitsDigest,
  windowGroups,
  type BatchRef,
} from './order.js';

export interface StreamCursor {
  epoch: number;
  /** Group (within the epoch, for this rank) holding the next record, and records of it already yielded. */
  group: number;
  offset: number;
  /** Records yielded so far in this epoch: the next record's draw index. */
  position: number;
  /** The units this epoch reads, as id ranges; null until the epoch has started. */
  units: Array<[number, number]> | null;
  /**
   * Those units' committed counts (order.ts `unitsDigest`). A stream resuming inside an epoch whose units
   * were recommitted since with other counts (a unit redone after damage) restarts that epoch rather than
   * repeat and skip records by an order that no longer holds, and says so. Absent in older cursors: unchecked.
   */
  digest?: string;
  /**
   * The settings that define the order the position counts in: a stream with any of them different refuses
   * the cursor (a CursorError naming it). Every cursor a stream yields has it; a cursor without it (written
   * before it was recorded, or START) is taken under the stream's settings, unchecked.
   */
  order?: CursorOrder;
}

/** What orders a stream besides its units (see order.ts): a cursor's position means something only under these. */
export interface CursorOrder {
  seed: number;
  rank: number;
  worldSize: number;
  windowShards: number;
  groupBatches: number;
}

const ORDER_FIELDS = ['seed', 'rank', 'worldSize', 'windowShards', 'groupBatches'] as const;

/**
 * A resume cursor that does not fit the stream: malformed, taken under other order settings (seed, rank,
 * worldSize, windowShards, groupBatches), or at a group, offset or position (past the rank's quota) its epoch
 * does not have. `field` names the cursor's field at fault (e.g. `order.seed`, `group`).
 */
export class CursorError extends ConfigError {
  override readonly code = 'WS_ERR_CURSOR';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

export interface StreamOptions {
  /** @default 0 */
  seed?: number;
  /**
   * This consumer's share of the shards (0 to worldSize - 1). Shards are dealt to ranks whole, balanced by
   * their committed records; with worldSize > 1 every rank's epoch holds the same number of records, the
   * fewest any rank's shards hold, and a rank's records past that are cut (counted in `stats.trimmed`, at most
   * its last unit's records), as torch's DistributedSampler(drop_last=True). A dataset with fewer units
   * holding records than ranks gives every rank 0: a NoDataError saying to lower worldSize. The quota counts
   * committed records, so a rank that skips an unreadable shard or batch can still fall short of it. @default 0
   */
  rank?: number;
  /** Consumers (DDP ranks) sharing the dataset, each opening its own stream. @default 1 */
  worldSize?: number;
  /** Shards whose batches are mixed together. @default 4 */
  windowShards?: number;
  /** Record batches per shuffle group (the records of a group are permuted). @default 8 */
  groupBatches?: number;
  /** Bytes of record batches fetched ahead of the consumer (at least one group). @default 256 MiB */
  prefetchBytes?: number;
  /** Stop after this many epochs. @default unbounded */
  epochs?: number;
  /**
   * Wait for units to appear and pick up new ones at each epoch. One rank only (worldSize 1): ranks list the
   * committed units each on its own, so a unit committed while one rank starts an epoch and another has not
   * would give them other orders (overlapping records, epochs of other lengths). @default false
   */
  follow?: boolean;
  /** Milliseconds between listings while following an empty dataset. @default 5000 */
  pollMs?: number;
  /** Where to resume. @default the start of epoch 0 */
  cursor?: StreamCursor;
  /** Records' bytes in SharedArrayBuffers, for consumers that hand them to worker threads. @default false */
  sharedMemory?: boolean;
  /** Ends every wait of the stream (storage reads, polling) with the signal's reason. @default none */
  signal?: AbortSignal;
  /** Told, once per wait, what a following stream is waiting for. @default nothing */
  onWait?: (message: string) => void;
  /** Told the first time each reason makes the stream skip a shard or batch (training goes on without it). @default nothing */
  onSkip?: (message: string) => void;
}

export interface StreamItem {
  record: ImageRecord;
  epoch: number;
  /** Index of the record within its epoch. */
  position: number;
  /** The cursor after this record. */
  cursor: StreamCursor;
}

export interface StreamStats {
  records: number;
  /** Shards or batches skipped because they could not be read, by reason. */
  skipped: Record<string, number>;
  /** The first error message behind each reason of `skipped`. */
  examples: Record<string, string>;
  /** Milliseconds the consumer waited for storage. */
  waitMs: number;
  /**
   * Committed records of this rank's epochs past its quota, cut so that every rank's epoch is as long
   * (worldSize > 1; see StreamOptions.rank), counted when an epoch reaches its quota. A record of a skipped
   * shard past the cut counts here too. Always 0 with worldSize 1.
   */
  trimmed: number;
  /** Epochs restarted because a cursor's units were recommitted with other counts (StreamCursor.digest). */
  restarts: number;
}

interface GroupPlan {
  index: number;
  /** The group's batches whose shard opened, in window order. */
  refs: Array<{ reader: ShardReader; batch: number }>;
  /** Whether every batch of the group is in `refs` (no shard of it was unreadable). */
  whole: boolean;
  bytes: number;
}

/** A group's records, and whether they are all it committed (no shard or batch of it was skipped). */
interface GroupRows {
  rows: ImageRecord[];
  whole: boolean;
}

/** The start of epoch 0; frozen, since every loader opened without a cursor hands it out as its `cursor()`. */
export const START: StreamCursor = Object.freeze({ epoch: 0, group: 0, offset: 0, position: 0, units: null });

export class DatasetStream {
  readonly stats: StreamStats = { records: 0, skipped: {}, examples: {}, waitMs: 0, trimmed: 0, restarts: 0 };
  private readonly o: Required<Omit<StreamOptions, 'epochs' | 'signal' | 'onWait' | 'onSkip'>> &
    Pick<StreamOptions, 'epochs' | 'signal' | 'onWait' | 'onSkip'>;
  /** The units of the epoch being read. */
  private units: UnitRecord[] = [];
  /** Units (as id ranges) that gave nothing, and why: a following stream waits until the committed set differs. */
  private stale: { units: Array<[number, number]>; why: string } | null = null;
  /** The settings every cursor this stream yields records (one object, shared by all of them). */
  private readonly order: Readonly<CursorOrder>;

  /** `store` is opened at the dataset's root (its URL names the prefix). */
  constructor(
    private readonly store: Store,
    options: StreamOptions = {},
  ) {
    checkStore(store, "DatasetStream's store");
    checkOptionsObject(options, 'stream options');
    this.o = {
      seed: 0,
      rank: 0,
      worldSize: 1,
      windowShards: 4,
      groupBatches: 8,
      prefetchBytes: 256 * 2 ** 20,
      follow: false,
      pollMs: 5000,
      cursor: START,
      sharedMemory: false,
      ...defined(options),
    };
    validateStreamOptions(this.o);
    const { seed, rank, worldSize, windowShards, groupBatches } = this.o;
    this.order = Object.freeze({ seed, rank, worldSize, windowShards, groupBatches });
    checkCursorOrder(this.o.cursor, this.order);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<StreamItem> {
    let cursor = this.o.cursor;
    while (this.o.epochs === undefined || cursor.epoch < this.o.epochs) {
      const units = await this.epochUnits(cursor);
      this.units = units;
      cursor = this.atUnits(cursor, units);
      const fromStart = cursor.group === 0 && cursor.offset === 0;
      const [records, skipped] = [this.stats.records, { ...this.stats.skipped }];
      yield* this.epoch(units, cursor);
      if (fromStart && this.stats.records === records) {
        const why = `no record could be read: ${this.describe()}${unreadable(this.stats, skipped)}`;
        if (!this.o.follow) throw new NoDataError(`${why}${this.rankShare(units)}`);
        this.requireNewUnits(cursor.units!, why);
      }
      cursor = { ...START, epoch: cursor.epoch + 1 };
    }
  }

  /**
   * The cursor with its epoch's units and their digest; a cursor inside an epoch whose units changed their
   * counts since it was taken becomes that epoch's start, with a warning (its records are read again).
   */
  private atUnits(cursor: StreamCursor, units: UnitRecord[]): StreamCursor {
    const at = { ...cursor, units: toRanges(units.map((u) => u.unit)), digest: unitsDigest(units) };
    const inside = cursor.group > 0 || cursor.offset > 0 || cursor.position > 0;
    if (!inside || cursor.digest === undefined || cursor.digest === at.digest) return at;
    this.stats.restarts++;
    this.o.onSkip?.(
      `warning: the units of epoch ${cursor.epoch} were committed again with other counts since the cursor was ` +
        `taken (a unit redone?), so its order changed: epoch ${cursor.epoch} restarts from its beginning, and ` +
        `its records read before the cursor are read again (counted in "restarts")`,
    );
    return { ...at, group: 0, offset: 0, position: 0 };
  }

  /**
   * For a message: this rank among several, and why its quota is 0 when fewer units hold records than there
   * are ranks (some rank then holds none, and every rank yields as many as the rank with the fewest).
   */
  private rankShare(units: readonly UnitRecord[]): string {
    const { rank, worldSize } = this.o;
    if (worldSize === 1) return '';
    const holding = units.filter((u) => u.records > 0).length;
    if (holding === 0 || holding >= worldSize) return ` (rank ${rank} of ${worldSize})`;
    const advice = `use a worldSize of at most ${holding}, or more units`;
    if (units.length <= rank) {
      return (
        ` (rank ${rank} of ${worldSize}: shards are dealt to ranks whole, and the ${plural(units.length, 'shard')} ` +
        `went to ranks below ${rank}, so this rank has none; ${advice})`
      );
    }
    return (
      ` (rank ${rank} of ${worldSize}: every rank yields as many records per epoch as the rank with the fewest, ` +
      `and shards are dealt to ranks whole: ${plural(holding, 'unit')} holding records leave some of ` +
      `${worldSize} ranks none, so every rank yields 0; ${advice})`
    );
  }

  /**
   * Tells a following stream that the records of `units` (an epoch's, as in its cursors) were read but gave
   * nothing (`why`): from the next epoch on it waits for the committed units to differ before reading again.
   */
  requireNewUnits(units: Array<[number, number]>, why: string): void {
    this.stale = { units, why };
  }

  /** What the dataset holds as of the current epoch: units, records, and why its units' inputs failed. */
  describe(): string {
    const units = this.units;
    const records = units.reduce((n, u) => n + u.records, 0);
    const failed: Record<string, number> = {};
    for (const u of units) for (const [k, v] of Object.entries(u.failed)) failed[k] = (failed[k] ?? 0) + v;
    const inputs = Object.keys(failed).length > 0 ? `; its inputs failed: ${histogram(failed)}` : '';
    return `${this.store.url} holds ${plural(units.length, 'committed unit')} with ${plural(records, 'record')}${inputs}`;
  }

  /** The units of the cursor's epoch: those it names, or (starting an epoch) every committed one. */
  private async epochUnits(cursor: StreamCursor): Promise<UnitRecord[]> {
    for (let told = false; ; told = true) {
      const all = await abortable(listUnits(this.store), this.o.signal);
      const units = cursor.units ? all.filter((u) => inRanges(cursor.units!, u.unit)) : all;
      if (cursor.units && units.length !== cursor.units.reduce((n, [lo, hi]) => n + hi - lo + 1, 0)) {
        throw new NotFoundError(
          `the cursor's epoch ${cursor.epoch} names units that are no longer committed in ${this.store.url}`,
        );
      }
      const stale = this.stale;
      const same = stale !== null && !cursor.units && sameRanges(toRanges(units.map((u) => u.unit)), stale.units);
      if (units.length > 0 && !same) {
        this.stale = null;
        return units;
      }
      if (!this.o.follow) throw new NotFoundError(`no committed units in ${this.store.url}`);
      if (!told) {
        const why = same ? stale.why : `no committed units in ${this.store.url} yet`;
        this.o.onWait?.(`following: ${why}; waiting for new units (polling every ${this.o.pollMs} ms)`);
      }
      await sleep(this.o.pollMs, undefined, { signal: this.o.signal });
    }
  }

  /**
   * The epoch's records from `start` on, up to this rank's quota; reaching the quota counts the records cut
   * in `stats.trimmed`. Errors: a CursorError for a group or position the epoch does not have.
   */
  private async *epoch(units: UnitRecord[], start: StreamCursor): AsyncGenerator<StreamItem> {
    const { seed, rank, worldSize, windowShards, groupBatches } = this.o;
    const deal = dealShards(units, seed, start.epoch, worldSize);
    const shards = deal.shards[rank]!;
    const quota = rankQuota(deal);
    const groups = epochGroups(shards, windowShards, groupBatches);
    // An epoch of no groups has group 0, where its (empty) start is.
    if (start.group > 0 && start.group >= groups)
      throw pastTheEnd('group', start, `it has ${plural(groups, 'group')} for this rank`);
    if (start.position > quota)
      throw pastTheEnd('position', start, `each of its ${worldSize} ranks yields ${plural(quota, 'record')}`);
    const position = start.position < quota ? yield* this.records(shards, start, quota) : start.position;
    // Counted once: a stream stopped at the quota's last record and resumed from its cursor counts it here.
    if (position >= quota) this.stats.trimmed += deal.records[rank]! - quota;
  }

  /** The records of `shards` from `start` on, while fewer than `quota` of the epoch; returns the next position. */
  private async *records(shards: UnitRecord[], start: StreamCursor, quota: number): AsyncGenerator<StreamItem, number> {
    const { seed } = this.o;
    const epoch = start.epoch;
    const plans = this.groupPlans(shards, epoch, start.group);
    const ahead: Array<{ plan: GroupPlan; records: Promise<GroupRows> }> = [];
    let done = false;
    const fill = async () => {
      let bytes = ahead.reduce((n, a) => n + a.plan.bytes, 0);
      while (!done && (ahead.length === 0 || bytes < this.o.prefetchBytes)) {
        const next = await abortable(plans.next(), this.o.signal);
        if (next.done) done = true;
        else {
          const records = this.load(next.value);
          records.catch(() => {}); // surfaced when awaited in order
          ahead.push({ plan: next.value, records });
          bytes += next.value.bytes;
        }
      }
    };
    let position = start.position;
    await fill();
    while (ahead.length > 0 && position < quota) {
      const { plan, records } = ahead.shift()!;
      const filling = fill();
      filling.catch(() => {}); // surfaced when awaited below; a consumer that stops at a yield never awaits it
      const t0 = performance.now();
      const group = await abortable(records, this.o.signal);
      const rows = shuffleGroup(group.rows, seed, epoch, plan.index);
      this.stats.waitMs += performance.now() - t0;
      let skip = plan.index === start.group ? start.offset : 0;
      if (skip > rows.length) {
        // A group that lost a shard or batch since the cursor was taken is short, not the cursor wrong.
        if (group.whole) throw pastTheEnd('offset', start, `group ${start.group} holds ${rows.length} records`);
        skip = rows.length;
      }
      for (let i = skip; i < rows.length && position < quota; i++) {
        this.stats.records++;
        const cursor: StreamCursor = {
          epoch,
          group: plan.index,
          offset: i + 1,
          position: position + 1,
          units: start.units,
          ...(start.digest !== undefined && { digest: start.digest }),
          order: this.order,
        };
        yield { record: rows[i]!, epoch, position, cursor };
        position++;
      }
      await filling;
    }
    return position;
  }

  /**
   * The epoch's groups from `fromGroup` on, opening shard footers window by window from the cursor's on.
   * A window's batches are permuted by the counts its unit records committed, never by what its shards hold
   * now: a shard unreadable in one run and not in another (or since a cursor was taken) moves no other
   * shard's batch, so a resumed stream repeats and loses nothing of them. What stays: the one group holding
   * batches of a shard readable then and unreadable now is shuffled over fewer rows (shuffleGroup), so a
   * cursor inside that group can repeat or skip records of that group only.
   */
  private async *groupPlans(shards: UnitRecord[], epoch: number, fromGroup: number): AsyncGenerator<GroupPlan> {
    const { windowShards, groupBatches, seed } = this.o;
    let index = 0;
    for (let w = 0; w * windowShards < shards.length; w++) {
      const window = shards.slice(w * windowShards, (w + 1) * windowShards);
      const groups = windowGroups(window.map(committedBatches), groupBatches, seed, epoch, w);
      if (index + groups.length <= fromGroup) {
        index += groups.length; // a window before the cursor's: not a byte of it is read
        continue;
      }
      const readers = await Promise.all(window.map((u) => this.openShard(u)));
      for (const group of groups) {
        if (index >= fromGroup) yield this.plan(index, group, readers);
        index++;
      }
    }
  }

  /** A group's batches to read: those of a shard that did not open are left out (counted when it failed to). */
  private plan(index: number, group: BatchRef[], readers: Array<ShardReader | null>): GroupPlan {
    const refs = group.flatMap(({ shard, batch }) => {
      const reader = readers[shard];
      return reader ? [{ reader, batch }] : [];
    });
    const bytes = refs.reduce((n, r) => n + r.reader.batchBytes(r.batch), 0);
    return { index, refs, whole: refs.length === group.length, bytes };
  }

  /**
   * The unit's shard, or null when it has no records, or cannot be read or holds other record batches than
   * its unit record says (a `bad_shard` skip: its batches would not be the ones the order placed).
   */
  private async openShard(unit: UnitRecord): Promise<ShardReader | null> {
    if (unit.records === 0) return null; // nothing to read (ingest commits such a unit when every input failed)
    try {
      const reader = await ShardReader.open(this.store, unit.shard, { size: unit.bytes, shared: this.o.sharedMemory });
      if (reader.numBatches === unit.batches) return reader;
      throw new InvalidShardError(
        `${this.store.url}/${unit.shard}: the shard holds ${reader.numBatches} record batches, ` +
          `but unit ${unit.unit}'s record committed ${shown(unit.batches)}`,
      );
    } catch (err) {
      if (!(err instanceof InvalidShardError)) throw err;
      this.skip('bad_shard', err);
      return null;
    }
  }

  /** A group's records in batch order; an unreadable batch is skipped and counted. */
  private async load(plan: GroupPlan): Promise<GroupRows> {
    let whole = plan.whole;
    const batches = await Promise.all(
      plan.refs.map(async ({ reader, batch }) => {
        try {
          return await reader.readRecords(batch);
        } catch (err) {
          if (!(err instanceof InvalidShardError)) throw err;
          this.skip('bad_batch', err);
          whole = false;
          return [];
        }
      }),
    );
    return { rows: batches.flat(), whole };
  }

  private skip(reason: string, err: Error): void {
    countSkip(this.stats, reason, err, this.o.onSkip);
  }
}

/**
 * Counts unreadable data skipped for `reason` (e.g. bad_shard) in `stats`, keeping the first error's message
 * and telling `onSkip` once per reason: what the stream does, shared with readers of whole datasets (embed).
 */
export function countSkip(
  stats: Pick<StreamStats, 'skipped' | 'examples'>,
  reason: string,
  err: Error,
  onSkip?: (message: string) => void,
): void {
  stats.skipped[reason] = (stats.skipped[reason] ?? 0) + 1;
  if (stats.examples[reason] !== undefined) return;
  stats.examples[reason] = err.message;
  onSkip?.(
    `warning: skipping unreadable data (${reason}): ${err.message}; the run goes on without it, counted in "skipped"`,
  );
}

/** `{a: 2, b: 1}` as "a 2, b 1". */
export function histogram(counts: Record<string, number>): string {
  return Object.entries(counts)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

/** The skips since `before`, each with its first error, as "; unreadable: bad_shard 1 (why)". */
function unreadable(stats: StreamStats, before: Record<string, number>): string {
  const now = Object.entries(stats.skipped)
    .map(([k, v]) => [k, v - (before[k] ?? 0)] as const)
    .filter(([, v]) => v > 0);
  if (now.length === 0) return '';
  return `; unreadable: ${now.map(([k, v]) => `${k} ${v} (${stats.examples[k]})`).join(', ')}`;
}

function sameRanges(a: ReadonlyArray<readonly [number, number]>, b: ReadonlyArray<readonly [number, number]>): boolean {
  return a.length === b.length && a.every(([lo, hi], i) => lo === b[i]![0] && hi === b[i]![1]);
}

/** A cursor pointing past what its epoch holds: resuming there would skip the rest of the epoch unseen. */
function pastTheEnd(field: 'group' | 'offset' | 'position', c: StreamCursor, holds: string): CursorError {
  return new CursorError(
    field,
    `the stream cursor's ${field} ${c[field]} is past the end of epoch ${c.epoch}: ${holds} (cursor ${JSON.stringify(c)}); ` +
      `resume from a cursor this dataset's stream gave, or start the stream afresh`,
  );
}

/** Refuses a cursor recording order settings other than the stream's (a cursor that records none is taken as is). */
function checkCursorOrder(c: StreamCursor, own: Readonly<CursorOrder>): void {
  if (c.order === undefined) return;
  for (const field of ORDER_FIELDS) {
    const was = c.order[field];
    if (was !== own[field]) {
      throw new CursorError(
        `order.${field}`,
        `the stream cursor was taken with ${field} ${JSON.stringify(was)}, but this stream has ${field} ${own[field]}: ` +
          `its position counts records in another order, so resuming there would repeat some and skip others; ` +
          `resume with ${field} ${JSON.stringify(was)}, or start the stream afresh`,
      );
    }
  }
}

/** Whether `units` is null or ascending, disjoint inclusive ranges of unit ids, as `toRanges` makes them. */
function wellFormedUnits(units: unknown): boolean {
  if (units === null) return true;
  if (!Array.isArray(units)) return false;
  let last = -1;
  for (const range of units as unknown[]) {
    if (!Array.isArray(range) || range.length !== 2) return false;
    const [lo, hi] = range as unknown[];
    if (!(Number.isSafeInteger(lo) && Number.isSafeInteger(hi))) return false;
    if (!((lo as number) > last && (lo as number) <= (hi as number))) return false;
    last = hi as number;
  }
  return true;
}

export function validateStreamOptions(o: StreamOptions): void {
  const int = (name: keyof StreamOptions, min: number, max = Number.MAX_SAFE_INTEGER) => {
    const v = o[name];
    if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)) {
      throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${shown(v)}`);
    }
  };
  const typed = (name: keyof StreamOptions, type: 'boolean' | 'function') => {
    const v = o[name];
    if (v !== undefined && typeof v !== type)
      throw new ConfigError(`${name} must be ${type === 'boolean' ? 'true or false' : 'a function'}, got ${shown(v)}`);
  };
  int('seed', 0, 2 ** 32 - 1);
  int('worldSize', 1, 65536);
  int('rank', 0, (o.worldSize ?? 1) - 1);
  int('windowShards', 1, 1024);
  int('groupBatches', 1, 4096);
  int('prefetchBytes', 0);
  int('epochs', 0);
  int('pollMs', 1, 3_600_000);
  typed('follow', 'boolean');
  if (o.follow && (o.worldSize ?? 1) > 1)
    throw new ConfigError(
      `follow takes one rank, got worldSize ${o.worldSize}: ranks would each list the units committed when their ` +
        `epoch starts, and a unit committed between two ranks' listings gives them overlapping records and epochs ` +
        `of other lengths; follow with worldSize 1, or read a dataset whose ingest has finished`,
    );
  typed('sharedMemory', 'boolean');
  typed('onWait', 'function');
  typed('onSkip', 'function');
  // Every wait listens on the signal: anything else failed inside a wait, as an uncaught TypeError.
  const signal = o.signal as Partial<AbortSignal> | null | undefined;
  if (signal !== undefined && !(typeof signal?.addEventListener === 'function' && typeof signal.aborted === 'boolean'))
    throw new ConfigError(`signal must be an AbortSignal, got ${shown(o.signal)}`);
  const c = o.cursor as unknown;
  if (c === undefined) return;
  const malformed = (field: string, what: string) =>
    new CursorError(field, `malformed stream cursor ${JSON.stringify(c)}: ${what}`);
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw malformed('cursor', 'not an object');
  const cursor = c as Record<string, unknown>;
  for (const field of ['epoch', 'group', 'offset', 'position'] as const) {
    const v = cursor[field];
    if (!(Number.isSafeInteger(v) && (v as number) >= 0))
      throw malformed(field, `${field} must be an integer >= 0, got ${shown(v)}`);
  }
  if (!wellFormedUnits(cursor.units))
    throw malformed('units', 'units must be null or ascending, disjoint [first, last] ranges of unit ids');
  if (cursor.digest !== undefined && !(typeof cursor.digest === 'string' && /^[0-9a-f]{16}$/.test(cursor.digest)))
    throw malformed('digest', `digest must be 16 hex digits, got ${shown(cursor.digest)}`);
  if (cursor.order === undefined) return;
  const order = cursor.order as Record<string, unknown> | null;
  if (order === null || typeof order !== 'object') throw malformed('order', 'order must be an object');
  for (const field of ORDER_FIELDS) {
    if (!Number.isSafeInteger(order[field]))
      throw malformed(`order.${field}`, `order.${field} must be an integer, got ${shown(order[field])}`);
  }
}
