/**
 * The dedupe index shared by every worker of a distributed job, in Redis: the exact hash as a key owned by
 * the unit attempt that kept it, and the pHash's four 16-bit bands as sets (multi-index hashing, as
 * DedupeIndex). Check-and-add runs as one Lua script, so two workers can never both keep the same image.
 * Claims carry "unit:attempt": a unit retried after its worker died (its shard never committed) takes its
 * old claims over instead of seeing its own images as duplicates.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { BANDS, bandOf, flipMasks, type Deduper, type DuplicateKind } from './dedupe.js';

const SCRIPT = `
local me, shaKey, radius, hi, lo, nOwn = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local myUnit = string.match(me, '^([^:]+):')
local function verdict(owner)
  if not owner then return 'new' end
  if owner == me then return 'dup' end
  if string.match(owner, '^([^:]+):') == myUnit then return 'stale' end
  return 'dup'
end
if verdict(redis.call('GET', shaKey)) == 'dup' then return 'exact' end
if radius > 0 then
  for i = 7 + nOwn, #ARGV do
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
redis.call('SET', shaKey, me)
for i = 7, 6 + nOwn do redis.call('SADD', ARGV[i], hi .. ':' .. lo .. ':' .. me) end
return false
`;

export class RedisDedupe implements Deduper {
  private readonly probes: number[];
  private readonly attempt = randomUUID().slice(0, 8);

  /** `prefix` names the dataset (one index per output store). */
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly radius: number,
  ) {
    this.probes = radius > 0 ? flipMasks(Math.floor(radius / BANDS)) : [];
  }

  async check(sha256: Uint8Array, phash: bigint, unit: number): Promise<DuplicateKind | null> {
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
      `${unit}:${this.attempt}`,
      `${p}:sha:${Buffer.from(sha256).toString('hex')}`,
      this.radius,
      hi,
      lo,
      own.length,
      ...own,
      ...probe,
    );
    return result === 'exact' || result === 'near' ? result : null;
  }
}
