/**
 * The dataset layout on a store:
 *
 *   <root>/dataset.json          the job that produced it (list fingerprint and options), written at start
 *   <root>/shards/NNNNNN.arrow   one Arrow IPC file per unit of work
 *   <root>/failures/NNNNNN.jsonl each failed URL of the unit (row, url, reason, HTTP status; failures.ts)
 *   <root>/units/NNNNNN.json     the unit's committed record, written last
 *
 * A unit exists only when its record does: UnitWriter (unit-writer.ts) puts the shard, then the failure file,
 * then (atomically) the record, so readers and resumed jobs trust `units/` alone and ignore orphan shards and
 * failure files from interrupted runs. Every name here comes from keys.ts (record keys: `recordKey`).
 */
import { InvalidShardError, NotFoundError } from '../errors.js';
import { addCounts, type FailureCounts } from './failures.js';
import { MANIFEST_KEY, UNITS_DIR, unitKey } from './keys.js';
import { getBytes, type Store } from './store.js';

export {
  FAILURES_DIR,
  MANIFEST_KEY,
  RECORD_KEY,
  SHARDS_DIR,
  UNITS_DIR,
  failuresKey,
  recordKey,
  shardKey,
  unitKey,
  unitName,
} from './keys.js';

/** Counts of records dropped as duplicates. */
export interface DuplicateCounts {
  exact: number;
  near: number;
}

/** What a unit commits: written as `units/NNNNNN.json` after its shard is in place. */
export interface UnitRecord {
  unit: number;
  /** Key of the shard relative to the dataset root. */
  shard: string;
  /** Rows in the shard. */
  records: number;
  /** Size of the shard file in bytes. */
  bytes: number;
  batches: number;
  /** Inputs the unit was given (URLs, pages). */
  inputs: number;
  /** Failures by reason, e.g. `{"http_404": 3, "decode_error": 1}`. */
  failed: FailureCounts;
  /** Key of the unit's failure file (one line per failed URL, see failures.ts); absent when nothing failed. */
  failures?: string;
  duplicates: DuplicateCounts;
  /** Seconds spent in each phase, plus wall time. */
  timings: Record<string, number>;
  startedAt: string;
  committedAt: string;
}

/** Puts a unit's record, the unit's commit point: its shard and failure file must already be in the store
 * (UnitWriter.commit keeps that order). */
export async function commitUnit(store: Store, record: UnitRecord): Promise<void> {
  await store.put(unitKey(record.unit), Buffer.from(JSON.stringify(record, null, 1)));
}

/** Every committed unit, in unit order. A malformed record is a corrupt dataset, not a skipped unit. */
export async function listUnits(store: Store): Promise<UnitRecord[]> {
  const units: UnitRecord[] = [];
  for await (const info of store.list(`${UNITS_DIR}/`)) {
    if (!/^units\/\d{6,}\.json$/.test(info.key)) continue;
    units.push(parseUnit(await getBytes(store, info.key), `${store.url}/${info.key}`));
  }
  return units.sort((a, b) => a.unit - b.unit);
}

function parseUnit(bytes: Uint8Array, where: string): UnitRecord {
  let value: UnitRecord;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8')) as UnitRecord;
  } catch {
    throw new InvalidShardError(`${where}: unit record is not valid JSON`);
  }
  const ok =
    value !== null &&
    typeof value === 'object' &&
    Number.isSafeInteger(value.unit) &&
    typeof value.shard === 'string' &&
    Number.isSafeInteger(value.records) &&
    Number.isSafeInteger(value.bytes);
  if (!ok) throw new InvalidShardError(`${where}: unit record lacks unit/shard/records/bytes`);
  value.failed ??= {};
  value.duplicates ??= { exact: 0, near: 0 };
  return value;
}

/** The summary `wildstream inspect --json` prints. */
export interface DatasetSummary {
  shards: number;
  records: number;
  bytes: number;
  failed: FailureCounts;
  duplicates: DuplicateCounts;
}

export function summarise(units: readonly UnitRecord[]): DatasetSummary {
  const summary: DatasetSummary = { shards: 0, records: 0, bytes: 0, failed: {}, duplicates: { exact: 0, near: 0 } };
  for (const unit of units) {
    summary.shards += 1;
    summary.records += unit.records;
    summary.bytes += unit.bytes;
    addCounts(summary.failed, unit.failed);
    summary.duplicates.exact += unit.duplicates.exact;
    summary.duplicates.near += unit.duplicates.near;
  }
  return summary;
}

/** Summarises a dataset; a store with neither a manifest nor a unit holds no dataset and is an error. */
export async function inspectDataset(store: Store): Promise<DatasetSummary> {
  const units = await listUnits(store);
  if (units.length === 0 && !(await store.head(MANIFEST_KEY))) {
    throw new NotFoundError(`no wildstream dataset at ${store.url} (no ${MANIFEST_KEY} and no committed units)`);
  }
  return summarise(units);
}
