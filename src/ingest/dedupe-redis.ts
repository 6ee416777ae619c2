/**
 * The dedupe index shared by every worker of a distributed job, in Redis: the exact hash as a key owned by
 * the unit attempt that kept it, and the pHash's four 16-bit bands as sets (multi-index hashing, as
 * DedupeIndex). Check-and-add runs as one Lua script, so two workers can never both keep the same image.
 * Claims carry "unit:attempt": a unit retried after its worker died (its shard never committed) takes its
 * old claims over instead of seeing its own images as duplicates.
 *
 * The index belongs to one dataset (its manifest id names the prefix, queue.ts), starts from the dataset's
 * committed shards as the local DedupeIndex.fromDataset does (`seed`), and every key it writes expires
 * (`INDEX_TTL_S` after its last write), so an abandoned dataset's claims do not stay in Redis forever.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { UnitRecord } from '../shards/dataset.js';
import { ShardReader } from '../shards/reader.js';
import type { Store } from '../shards/store.js';
import { BANDS, bandOf, flipMasks, type Deduper, type DuplicateKind } from './dedupe.js';

/** How long an index key lives after its last write: far longer than any job, short enough not to leak. */
export const INDEX_TTL_S = 30 * 24 * 3600;

/** The owner tag of a committed unit's images in the index ("unit:attempt", as a worker's claims). */
const SEEDED = 'committed';

const SCRIPT = `
local me, shaKey, radius, hi, lo, nOwn, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local myUnit = string.match(me, '^([^:]+):')
local function verdict(owner)
  if not owner then return 'new' end
  if owner == me then return 'dup' end
  if string.match(owner, '^([^:]+):') == myUnit then return 'stale' end
  return 'dup'
end
if verdict(redis.call('GET', shaKey)) == 'dup' then return 'exact' end
if radius > 0 then
  for i = 8 + nOwn, #ARGV do
    for _, m in ipairs(redis.call('SMEMBERS', ARGV[i])) do
      local h, l, owner = string.match(m, '^(%d+):(%d+):(.+)$')
      if verdict(owner) == 'dup' then
        local x, c = bit.bxor(tonumber(h), hi), 0
        while x ~= 0 do x = bit.band(x, x - 1); c = c + 1 end
        local y = bit.bxor(tonumber(l), lo)
        while y ~= 0 do y = bit.band(y, y - 1); c = c + 1 end
        if c <= radius then return 'near' end
      end
    end
  end
end
redis.call('SET', shaKey, me, 'EX', ttl)
for i = 8, 7 + nOwn do
  redis.call('SADD', ARGV[i], hi .. ':' .. lo .. ':' .. me)
  redis.call('EXPIRE', ARGV[i], ttl)
end
return false
`;

export class RedisDedupe implements Deduper {
  private readonly probes: number[];
  private readonly attempt = randomUUID().slice(0, 8);

  /** `prefix` names one dataset's index (queue.ts: by the dataset's manifest id). */
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    readonly radius: number,
  ) {
    this.probes = radius > 0 ? flipMasks(Math.floor(radius / BANDS)) : [];
  }

  check(sha256: Uint8Array, phash: bigint, unit: number): Promise<DuplicateKind | null> {
    return this.claim(`${unit}:${this.attempt}`, sha256, phash);
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
      const reader = await ShardReader.open(store, unit.shard, { size: unit.bytes });
      for await (const batch of reader.batches()) {
        const sha = batch.getChild('sha256')!;
        const ph = batch.getChild('phash')!;
        const claims = Array.from({ length: batch.numRows }, (_, i) =>
          this.claim(`${unit.unit}:${SEEDED}`, sha.get(i), ph.get(i)),
        );
        await Promise.all(claims);
      }
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

  private async claim(me: string, sha256: Uint8Array, phash: bigint): Promise<DuplicateKind | null> {
    const p = this.prefix;
    const own = Array.from({ length: BANDS }, (_, b) => `${p}:band:${b}:${bandOf(phash, b)}`);
    const probe =
      this.radius > 0
        ? Array.from({ length: BANDS }, (_, b) =>
            this.probes.map((m) => `${p}:band:${b}:${bandOf(phash, b) ^ m}`),
          ).flat()
        : [];
    const hi = Number(phash >> 32n),
      lo = Number(phash & 0xffffffffn);
    const result = await this.redis.eval(
      SCRIPT,
      0,
      me,
      `${p}:sha:${Buffer.from(sha256).toString('hex')}`,
      this.radius,
      hi,
      lo,
      own.length,
      INDEX_TTL_S,
      ...own,
      ...probe,
    );
    return result === 'exact' || result === 'near' ? result : null;
  }
}
