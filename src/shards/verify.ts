/**
 * The deep check of `inspect --verify`: every committed shard read whole and held to its unit record, as
 * mosaicml-streaming checks a shard against the hash its index keeps. checkDataset (sizes only, no shard read)
 * misses a shard damaged at its committed size (a flipped bit, a rewritten file) and a record whose counts
 * disagree with its shard, which the stream then refuses (`bad_shard`) or reads past; this finds both.
 */
import { createHash } from 'node:crypto';
import { RecordBatchReader } from 'apache-arrow';
import { InvalidShardError, NotFoundError, oneLine } from '../errors.js';
import { checkArrowFile } from './arrow-bounds.js';
import { redoUnit, type UnitRecord } from './dataset.js';
import { getBytes, type Store } from './store.js';

/** Shards read at once: each is held whole while it is checked. */
const SHARDS_IN_FLIGHT = 4;

/**
 * One line per problem of `units`' shards, each with its repair: a shard whose bytes do not hash to the
 * record's `sha256` (records written before it was kept have none: their counts are still checked), that is
 * not a readable Arrow IPC file, or whose record batches or rows differ from the record's. A missing shard is
 * checkDataset's to report, so it is skipped here. Errors: the store's.
 */
export async function verifyShards(store: Store, units: readonly UnitRecord[]): Promise<string[]> {
  const problems: Array<string | null> = new Array(units.length).fill(null);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < units.length; i = next++) problems[i] = await verifyShard(store, units[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(SHARDS_IN_FLIGHT, units.length) }, worker));
  return problems.filter((p): p is string => p !== null);
}

async function verifyShard(store: Store, unit: UnitRecord): Promise<string | null> {
  const bytes = await getBytes(store, unit.shard).catch((err: unknown) => {
    if (err instanceof NotFoundError) return null;
    throw err;
  });
  if (bytes === null) return null;
  const problem = (what: string) => `${unit.shard} ${what}; ${redoUnit(unit.unit)}`;
  if (unit.sha256 !== undefined) {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (sha256 !== unit.sha256) return problem(`does not hash to the sha256 its unit record holds (damaged)`);
  }
  let batches = 0;
  let records = 0;
  try {
    checkArrowFile(bytes, unit.shard); // bounds first: apache-arrow trusts the counts it reads
    for await (const batch of await RecordBatchReader.from(bytes)) {
      batches++;
      records += batch.numRows;
    }
  } catch (err) {
    if (err instanceof InvalidShardError) return `${oneLine(err)}; ${redoUnit(unit.unit)}`;
    return problem(`is not a readable Arrow IPC file (${oneLine(err)})`);
  }
  if (batches !== unit.batches || records !== unit.records)
    return problem(
      `holds ${records} records in ${batches} batches, its unit record says ${unit.records} in ${unit.batches}`,
    );
  return null;
}
