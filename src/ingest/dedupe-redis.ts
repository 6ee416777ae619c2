/**
 * The dedupe index shared by every worker of a distributed job, in Redis: the exact hash as a key owned by
 * the unit attempt that kept it, and the pHash's four 16-bit bands as sets (multi-index hashing, as
 * DedupeIndex). Check-and-add runs as one Lua script, so two workers can never both keep the same image.
 * Claims carry "unit:attempt": a unit retried after its worker died (its shard never committed) takes its
 * old claims over instead of seeing its own images as duplicates.
 *
 * A claim is final for other units only once its attempt has committed the unit (`afterCommit` writes the
 * unit's done key; seeded claims are committed by definition). Until then a duplicate of it is *pending*: the
 * claiming worker may still die, and its unit, redone, fail that image's row (a 503 the second time), which
 * would leave the image in no shard. A unit asks again about its pending duplicates before committing
 * (`confirm`); those still unconfirmed are listed `duplicate_unconfirmed` and fetched again by the job's
 * confirmation pass once every unit is committed (retry.ts), deduped then against the committed shards.
 *
 * The index belongs to one dataset (its manifest id names the prefix, queue.ts), starts from the dataset's
 * committed shards as the local DedupeIndex.fromDataset does (`seed`), and every key it writes expires
 * (`INDEX_TTL_S` after its last write), so an abandoned dataset's claims do not stay in Redis forever.
 *
 * An index can vanish mid-job (Redis flushed, restarted without persistence, keys evicted), taking the claims
 * of the units in flight with it: two units could then both keep an image. So each seeding ends by writing a
 * new random *epoch*; a worker's unit (`checkEpoch`) reads it before its first claim, every claim checks it in
 * the same script, and the unit checks it once more just before committing (`beforeCommit`). A unit whose
 * epoch is gone or changed throws IndexLostError and never commits; the producer, which seeds again when its
 * queued units vanish, has the unit done again against the new index.
 */
import { randomUUID } from 'node:crypto';
import { StoreUnavailableError } from '../errors.js';
import type { Redis } from 'ioredis';
import type { UnitRecord } from '../shards/dataset.js';
import type { Store } from '../shards/store.js';
import {
  BANDS,
  bandOf,
  committedHashes,
  flipMasks,
  isPending,
  type Deduper,
  type DuplicateKind,
  type PendingDuplicate,
  type Verdict,
} from './dedupe.js';

/** How long an index key lives after its last write: far longer than any job, short enough not to leak. */
export const INDEX_TTL_S = 30 * 24 * 3600;

/** The owner tag of a committed unit's images in the index ("unit:attempt", as a worker's claims; SCRIPT names it too). */
const SEEDED = 'committed';

/** The unit's dedupe claims were made in an index that is gone or was seeded again: it must not commit. */
export class IndexLostError extends StoreUnavailableError {
  constructor(prefix: string) {
    super(
      `the dataset's dedupe index in Redis (${prefix}) was lost or seeded again while this unit ran (flushed, evicted or restarted?): the unit is not committed; the producer seeds the index again and has it redone`,
    );
    this.name = 'IndexLostError';
  }
}

/**
 * Check-and-claim (mode 'claim') or check only (mode 'confirm'). A claim's owner is "unit:attempt:row" (seeded:
 * "unit:committed"). It is *committed* when its attempt is "committed" or is the one the unit's done key names
 * (afterCommit); a duplicate of a committed owner's image, or of another row of this attempt, is final
 * ('exact', 'near'); of another unit's uncommitted attempt, pending ('exact?', 'near?'); a claim of this unit's
 * earlier attempt is taken over; this very row's own claim is no duplicate ('mine'): a script run twice (a
 * reply lost and the command resent on reconnect) answers the same. A final verdict wins over a pending one.
 * Returns false when the image is claimed, 'new' when (confirm) nothing holds it.
 */
const SCRIPT = `
local me, shaKey, radius, hi, lo, nOwn, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local epoch, epochKey, donePrefix, mode = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
if epoch ~= '' then
  if redis.call('GET', epochKey) ~= epoch then return 'lost' end
  redis.call('EXPIRE', epochKey, ttl)
end
local myUnit, myAttempt, myRow = string.match(me, '^([^:]+):([^:]+):?(.*)$')
local done = {}
local function verdict(owner)
  if not owner then return 'new' end
  local unit, attempt, row = string.match(owner, '^([^:]+):([^:]+):?(.*)$')
  if unit == myUnit and attempt == myAttempt then
    if row == myRow then return 'mine' end
    return 'final'
  end
  if unit == myUnit then return 'stale' end
  if attempt == 'committed' then return 'final' end
  if done[unit] == nil then done[unit] = redis.call('GET', donePrefix .. unit) end
  if done[unit] == attempt then return 'final' end
  return 'pending'
end
local exact = verdict(redis.call('GET', shaKey))
if exact == 'final' then return 'exact' end
if exact == 'mine' and mode == 'claim' then return false end
local near = 'new'
if radius > 0 then
  for i = 12 + nOwn, #ARGV do
    for _, m in ipairs(redis.call('SMEMBERS', ARGV[i])) do
      local h, l, owner = string.match(m, '^(%d+):(%d+):(.+)$')
      local x, c = bit.bxor(tonumber(h), hi), 0
      while x ~= 0 do x = bit.band(x, x - 1); c = c + 1 end
      local y = bit.bxor(tonumber(l), lo)
      while y ~= 0 do y = bit.band(y, y - 1); c = c + 1 end
      if c <= radius then
        local v = verdict(owner)
        if v == 'final' then return 'near' end
        if v == 'pending' then near = 'pending' end
      end
    end
  end
end
if exact == 'pending' then return 'exact?' end
if near == 'pending' then return 'near?' end
if mode == 'confirm' then return 'new' end
redis.call('SET', shaKey, me, 'EX', ttl)
for i = 12, 11 + nOwn do
  redis.call('SADD', ARGV[i], hi .. ':' .. lo .. ':' .. me)
  redis.call('EXPIRE', ARGV[i], ttl)
end
return false
`;

/** Deletes a claim's exact key if this owner still holds it, and its members of the band sets. */
const RELEASE = `
if redis.call('GET', ARGV[1]) == ARGV[2] then redis.call('DEL', ARGV[1]) end
for i = 4, #ARGV do redis.call('SREM', ARGV[i], ARGV[3]) end
return 1
`;

export class RedisDedupe implements Deduper {
  private readonly probes: number[];
  private readonly attempt = randomUUID().slice(0, 8);
  /** "unit:attempt" of this index's unit, once it has asked (a worker's index serves one unit). */
  private me: string | null = null;
  /** The epoch this unit's claims are made in, read before the first (checkEpoch only). */
  private epoch: Promise<string> | null = null;

  /**
   * `prefix` names one dataset's index (queue.ts: by the dataset's manifest id). `checkEpoch`: one unit's
   * index, whose claims must all be made in one seeding's epoch (a worker's; the producer seeds without it).
   */
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    readonly radius: number,
    private readonly checkEpoch = false,
  ) {
    this.probes = radius > 0 ? flipMasks(Math.floor(radius / BANDS)) : [];
  }

  private get epochKey(): string {
    return `${this.prefix}:epoch`;
  }

  async check(sha256: Uint8Array, phash: bigint, unit: number, row: number): Promise<Verdict> {
    const epoch = this.checkEpoch ? await this.currentEpoch() : '';
    this.me = `${unit}:${this.attempt}`;
    return this.claim(`${this.me}:${row}`, sha256, phash, epoch, 'claim');
  }

  /**
   * Withdraws the claims `check` may have made for rows it did not answer (Redis unreachable, a reply lost):
   * the unit does not keep those images, so its commit must not make other units' copies of them final.
   * Throws Redis errors: the unit must not commit then.
   */
  async release(unsure: ReadonlyArray<{ sha256: Uint8Array; phash: bigint; row: number }>): Promise<void> {
    for (const u of unsure) {
      const owner = `${this.me}:${u.row}`;
      const member = `${halves(u.phash).join(':')}:${owner}`;
      await this.redis.eval(RELEASE, 0, this.shaKey(u.sha256), owner, member, ...this.bandKeys(u.phash));
    }
  }

  /** Each pending duplicate's final kind, or null while no committed unit holds its image (see Deduper). */
  async confirm(pending: readonly PendingDuplicate[]): Promise<Array<DuplicateKind | null>> {
    const me = this.me ?? `-:${this.attempt}`;
    const verdicts = await Promise.all(pending.map((p) => this.claim(me, p.sha256, p.phash, '', 'confirm')));
    return verdicts.map((v) => (isPending(v) ? null : v));
  }

  /** Marks this attempt as the one that committed `unit`: its claims are final for every other unit. */
  async afterCommit(unit: number): Promise<void> {
    await this.redis.set(`${this.prefix}:done:${unit}`, this.attempt, 'EX', INDEX_TTL_S);
  }

  /** Throws IndexLostError when the epoch the unit's claims were made in is gone or changed. */
  async beforeCommit(): Promise<void> {
    if (!this.checkEpoch || !this.epoch) return; // no claim made: nothing to lose
    if ((await this.redis.get(this.epochKey)) !== (await this.epoch)) throw new IndexLostError(this.prefix);
  }

  private currentEpoch(): Promise<string> {
    this.epoch ??= this.redis.get(this.epochKey).then((e) => {
      if (e === null) throw new IndexLostError(this.prefix);
      return e;
    });
    return this.epoch;
  }

  /**
   * Starts a new epoch (after seeding): units whose claims were made in an earlier one will not commit.
   * `keep`: only when the index has none (a producer started again leaves its workers' units running).
   */
  async newEpoch(o: { keep?: boolean } = {}): Promise<void> {
    if (o.keep) await this.redis.set(this.epochKey, randomUUID(), 'EX', INDEX_TTL_S, 'NX');
    else await this.redis.set(this.epochKey, randomUUID(), 'EX', INDEX_TTL_S);
  }

  /**
   * Adds the images of committed units, as DedupeIndex.fromDataset does for a local job, so a queued job
   * dedupes against everything the dataset already holds. Idempotent: a unit's images are claimed by
   * "unit:committed", so seeding again finds its own claims, and takes over those of the attempt that
   * committed the unit. Pipelined per record batch (one connection runs the calls in order).
   * @throws the store's errors reading a shard; Redis errors.
   */
  async seed(store: Store, units: readonly UnitRecord[]): Promise<void> {
    for (const unit of units) {
      for await (const batch of committedHashes(store, unit))
        await Promise.all(batch.map((h) => this.claim(`${unit.unit}:${SEEDED}`, h.sha256, h.phash, '', 'claim')));
    }
  }

  /** Removes every key of the index (SCAN + UNLINK): for a job whose dataset has every unit committed. */
  async clear(): Promise<void> {
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${this.prefix}:*`, 'COUNT', 1000);
      if (keys.length > 0) await this.redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  }

  /** Check-and-add (or check only: 'confirm') in one script; `epoch` '' claims without checking it (seeding). */
  private async claim(
    me: string,
    sha256: Uint8Array,
    phash: bigint,
    epoch: string,
    mode: 'claim' | 'confirm',
  ): Promise<Verdict> {
    const p = this.prefix;
    const own = this.bandKeys(phash);
    const probe =
      this.radius > 0
        ? Array.from({ length: BANDS }, (_, b) =>
            this.probes.map((m) => `${p}:band:${b}:${bandOf(phash, b) ^ m}`),
          ).flat()
        : [];
    const [hi, lo] = halves(phash);
    const result = await this.redis.eval(
      SCRIPT,
      0,
      me,
      this.shaKey(sha256),
      this.radius,
      hi,
      lo,
      own.length,
      INDEX_TTL_S,
      epoch,
      this.epochKey,
      `${p}:done:`,
      mode,
      ...own,
      ...probe,
    );
    if (result === 'lost') throw new IndexLostError(this.prefix);
    if (result === 'exact' || result === 'near') return result;
    if (result === 'exact?' || result === 'near?')
      return { pending: result === 'exact?' ? 'exact' : 'near', sha256, phash };
    return null;
  }

  private shaKey(sha256: Uint8Array): string {
    return `${this.prefix}:sha:${Buffer.from(sha256).toString('hex')}`;
  }

  /** The band sets an image's pHash is a member of (SCRIPT adds it to them as "hi:lo:owner"). */
  private bandKeys(phash: bigint): string[] {
    return Array.from({ length: BANDS }, (_, b) => `${this.prefix}:band:${b}:${bandOf(phash, b)}`);
  }
}

/** A pHash as two 32-bit numbers, as SCRIPT's bit operations take it. */
function halves(phash: bigint): [number, number] {
  return [Number(phash >> 32n), Number(phash & 0xffffffffn)];
}
