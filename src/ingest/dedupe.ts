/**
 * Exact and near-duplicate index. Exact: a set of SHA-256 digests. Near: 64-bit pHashes within a Hamming
 * radius, found by multi-index hashing: the hash is cut into 4 bands of 16 bits; by the pigeonhole principle
 * two hashes within radius r agree within floor(r/4) bits on at least one band, so a query probes each band's
 * table at the few band values that close and checks only those candidates, never the whole index.
 */
import { ShardReader } from '../shards/reader.js';
import { redoUnit, type UnitRecord } from '../shards/dataset.js';
import { InvalidShardError } from '../errors.js';
import type { Store } from '../shards/store.js';
import { hamming } from './phash.js';

export const BANDS = 4;
const BAND_BITS = 16;

export type DuplicateKind = 'exact' | 'near';

/**
 * A duplicate of an image that another unit, still uncommitted, claimed first (a shared index only): final once
 * that unit commits with it, and not if its worker dies and the unit, redone, fails that image's row. The row
 * is then neither kept nor dropped: `confirm` asks again before the unit commits.
 */
export interface PendingDuplicate {
  pending: DuplicateKind;
  sha256: Uint8Array;
  phash: bigint;
}

export type Verdict = DuplicateKind | PendingDuplicate | null;

/**
 * Decides whether an image duplicates one already kept, and records it when not. `unit` names the unit asking:
 * a shared index (Redis) must not count a retried unit's own earlier images as duplicates.
 */
export interface Deduper {
  /** `row`: the image's position in the unit, naming its claim (a shared index answers a repeated call alike). */
  check(sha256: Uint8Array, phash: bigint, unit: number, row: number): Promise<Verdict> | Verdict;
  /**
   * Withdraws what `check` may have claimed for rows whose verdict never arrived (they are listed failed), just
   * before the unit commits; a throw leaves the unit uncommitted.
   */
  release?(unsure: ReadonlyArray<{ sha256: Uint8Array; phash: bigint; row: number }>): Promise<void>;
  /**
   * Asks again about the unit's pending duplicates, just before it commits: for each, its final kind once the
   * image's holder has committed it, or null while none has (the row is then listed `duplicate_unconfirmed`,
   * and the job's confirmation pass fetches it again once every unit is committed: retry.ts).
   */
  confirm?(pending: readonly PendingDuplicate[]): Promise<Array<DuplicateKind | null>>;
  /** Throws when the unit's claims no longer hold (a shared index lost or seeded again): it must not commit. */
  beforeCommit?(): Promise<void>;
  /** Marks the unit's claims committed (after its record is put), making other units' duplicates of them final. */
  afterCommit?(unit: number): Promise<void>;
}

export function isPending(v: Verdict): v is PendingDuplicate {
  return typeof v === 'object' && v !== null;
}

export class DedupeIndex implements Deduper {
  private readonly exact = new Set<string>();
  private readonly tables = Array.from({ length: BANDS }, () => new Map<number, bigint[]>());
  private readonly probes: number[];
  size = 0;

  /** @param radius Hamming radius for near duplicates; 0 disables near-duplicate detection. */
  constructor(readonly radius = 8) {
    this.probes = flipMasks(Math.floor(radius / BANDS));
  }

  check(sha256: Uint8Array, phash: bigint): DuplicateKind | null {
    return this.checkAndAdd(sha256, phash);
  }

  /** Classifies an image and, when it is new, adds it: one synchronous step, so callers never race. */
  checkAndAdd(sha256: Uint8Array, phash: bigint): DuplicateKind | null {
    const digest = Buffer.from(sha256).toString('hex');
    if (this.exact.has(digest)) return 'exact';
    if (this.radius > 0 && this.hasNear(phash)) return 'near';
    this.add(digest, phash);
    return null;
  }

  private hasNear(phash: bigint): boolean {
    for (let b = 0; b < BANDS; b++) {
      const band = bandOf(phash, b);
      for (const mask of this.probes) {
        for (const other of this.tables[b]!.get(band ^ mask) ?? [])
          if (hamming(phash, other) <= this.radius) return true;
      }
    }
    return false;
  }

  private add(digest: string, phash: bigint): void {
    this.exact.add(digest);
    this.size++;
    if (this.radius === 0) return;
    for (let b = 0; b < BANDS; b++) {
      const band = bandOf(phash, b);
      const bucket = this.tables[b]!.get(band);
      if (bucket) bucket.push(phash);
      else this.tables[b]!.set(band, [phash]);
    }
  }

  /** Rebuilds the index from committed shards' `sha256`/`phash` columns: no state lives only in memory. */
  static async fromDataset(store: Store, units: readonly UnitRecord[], radius: number): Promise<DedupeIndex> {
    const index = new DedupeIndex(radius);
    for (const unit of units)
      for await (const batch of committedHashes(store, unit))
        for (const h of batch) index.checkAndAdd(h.sha256, h.phash);
    return index;
  }
}

/**
 * The sha256 and pHash of each record of a committed unit's shard, a record batch at a time: what a dedupe
 * index is rebuilt from. Throws the InvalidShardError of a shard that does not read (a shard damaged at its
 * committed size, which inspect cannot see), with how to redo its unit; the store's errors.
 */
export async function* committedHashes(
  store: Store,
  unit: UnitRecord,
): AsyncGenerator<Array<{ sha256: Uint8Array; phash: bigint }>> {
  try {
    const reader = await ShardReader.open(store, unit.shard, { size: unit.bytes });
    for await (const batch of reader.batches()) {
      const sha = batch.getChild('sha256')!;
      const ph = batch.getChild('phash')!;
      yield Array.from({ length: batch.numRows }, (_, i) => ({ sha256: sha.get(i)!, phash: ph.get(i)! }));
    }
  } catch (err) {
    if (!(err instanceof InvalidShardError)) throw err;
    throw new InvalidShardError(`${err.message}; ${redoUnit(unit.unit)}`, { cause: err });
  }
}

export function bandOf(hash: bigint, band: number): number {
  return Number((hash >> BigInt(band * BAND_BITS)) & 0xffffn);
}

/** Every 16-bit mask with at most `bits` bits set: the band values a probe must visit. */
export function flipMasks(bits: number): number[] {
  const masks: number[] = [];
  for (let m = 0; m < 1 << BAND_BITS; m++) {
    let c = 0;
    for (let x = m; x; x &= x - 1) c++;
    if (c <= bits) masks.push(m);
  }
  return masks;
}
