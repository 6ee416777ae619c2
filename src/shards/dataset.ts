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
import { FAILURES_DIR, failuresKey, MANIFEST_KEY, SHARDS_DIR, shardKey, UNITS_DIR, unitKey } from './keys.js';
import { checkStore, getBytes, type Store } from './store.js';

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
  /** SHA-256 of the shard file, hex (`inspect --verify` checks it); absent in records written before it was kept. */
  sha256?: string;
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

/**
 * Every committed unit, in unit order. A malformed record is a corrupt dataset (InvalidShardError), not a
 * skipped unit; `store` not a Store (a URL string) is a ConfigError naming openStore.
 */
export async function listUnits(store: Store): Promise<UnitRecord[]> {
  checkStore(store, 'the dataset store');
  const units: UnitRecord[] = [];
  for await (const info of store.list(`${UNITS_DIR}/`)) {
    const id = /^units\/(\d{6,})\.json$/.exec(info.key)?.[1];
    if (id === undefined) continue;
    units.push(parseUnit(await getBytes(store, info.key), `${store.url}/${info.key}`, Number(id)));
  }
  return units.sort((a, b) => a.unit - b.unit);
}

/** Unit `unit`'s record from its file at `where`; an InvalidShardError saying what is wrong and how to redo it. */
function parseUnit(bytes: Uint8Array, where: string, unit: number): UnitRecord {
  let value: UnitRecord;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8')) as UnitRecord;
  } catch {
    throw new InvalidShardError(`${where}: unit record is not valid JSON; ${redoUnit(unit)}`);
  }
  const ok =
    value !== null &&
    typeof value === 'object' &&
    Number.isSafeInteger(value.unit) &&
    typeof value.shard === 'string' &&
    Number.isSafeInteger(value.records) &&
    Number.isSafeInteger(value.bytes) &&
    Number.isSafeInteger(value.batches);
  if (!ok)
    throw new InvalidShardError(`${where}: unit record lacks unit/shard/records/bytes/batches; ${redoUnit(unit)}`);
  if (value.unit !== unit)
    throw new InvalidShardError(`${where}: unit record says unit ${value.unit}; ${redoUnit(unit)}`);
  // Readers open the files a record names: only the unit's own (a hand-edited `../../etc/passwd` is refused here).
  const named = [value.shard, ...(value.failures === undefined ? [] : [value.failures])];
  const own = [shardKey(unit), ...(value.failures === undefined ? [] : [failuresKey(unit)])];
  if (named.some((key, i) => key !== own[i]))
    throw new InvalidShardError(
      `${where}: unit record names ${named.map((k) => JSON.stringify(k)).join(' and ')}, not its own ${own.join(' and ')}; ${redoUnit(unit)}`,
    );
  // Readers order and split records by these counts (the stream's quota and batch order): they must be possible.
  if (value.records < 0 || value.bytes < 0 || value.batches < 0 || value.records > 0 !== value.batches > 0)
    throw new InvalidShardError(
      `${where}: unit record counts ${value.records} records in ${value.batches} batches; ${redoUnit(unit)}`,
    );
  if (value.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(String(value.sha256)))
    throw new InvalidShardError(`${where}: unit record's sha256 is not 64 hex digits; ${redoUnit(unit)}`);
  value.failed ??= {};
  value.duplicates ??= { exact: 0, near: 0 };
  return value;
}

/**
 * How to repair a unit whose committed files are damaged: without its record the unit is uncommitted, and the
 * job's next run does it again (its shard and failure file rewritten).
 */
export function redoUnit(unit: number): string {
  return `delete ${unitKey(unit)} and rerun the same command to redo unit ${unit}`;
}

/** The summary `wildstream inspect --json` prints. */
export interface DatasetSummary {
  shards: number;
  records: number;
  bytes: number;
  failed: FailureCounts;
  duplicates: DuplicateCounts;
  /** What checkDataset found wrong, one line each with its fix; empty for a healthy dataset. */
  problems: string[];
}

export function summarise(units: readonly UnitRecord[]): DatasetSummary {
  const summary: DatasetSummary = {
    shards: 0,
    records: 0,
    bytes: 0,
    failed: {},
    duplicates: { exact: 0, near: 0 },
    problems: [],
  };
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

/**
 * Summarises a dataset's committed `units` (listUnits) and checks it (checkDataset): the problems found are in
 * the summary, not thrown, so the caller can show the counts with them. `failed` sums the unit records, so a URL
 * that failed in a job and again in a retry pass counts twice; ingest's inspectDataset counts each failed URL
 * once. Errors: NotFoundError when the store holds no dataset (neither a manifest nor a unit); the store's errors.
 */
export async function inspectShards(store: Store, units: readonly UnitRecord[]): Promise<DatasetSummary> {
  const manifest = await store.head(MANIFEST_KEY);
  if (units.length === 0 && !manifest) {
    throw new NotFoundError(`no wildstream dataset at ${store.url} (no ${MANIFEST_KEY} and no committed units)`);
  }
  return { ...summarise(units), problems: await checkDataset(store, units, manifest !== null) };
}

/**
 * What a reader, a resumed ingest or a retry pass would refuse, found without reading a shard: `dataset.json`
 * parses as a manifest, each committed unit's shard exists at the size its record gives, and the failure file
 * its record names exists (one listing of `shards/` and one of `failures/`). Returns one line per problem,
 * saying how to repair it. Errors: the store's.
 */
export async function checkDataset(
  store: Store,
  units: readonly UnitRecord[],
  hasManifest: boolean,
): Promise<string[]> {
  const problems: string[] = [];
  if (hasManifest) {
    const why = manifestProblem(await getBytes(store, MANIFEST_KEY));
    if (why) {
      problems.push(`${MANIFEST_KEY} ${why}; restore it from a copy, or ingest again into a new --out`);
    }
  }
  const redo = (unit: UnitRecord) => redoUnit(unit.unit);
  const sizes = await objectSizes(
    store,
    SHARDS_DIR,
    units.map((u) => u.shard),
  );
  for (const unit of units) {
    const size = sizes.get(unit.shard);
    const found = size === undefined ? 'is missing' : size !== unit.bytes ? `is ${size} bytes` : null;
    if (found) problems.push(`${unit.shard} ${found}, ${unitKey(unit.unit)} says ${unit.bytes} bytes; ${redo(unit)}`);
  }
  // A unit's failure file is what --retry-failed refetches from: without it the unit's failed URLs are unknown.
  const listed = units.filter((u) => u.failures !== undefined);
  const failures = await objectSizes(
    store,
    FAILURES_DIR,
    listed.map((u) => u.failures!),
  );
  for (const unit of listed.filter((u) => !failures.has(u.failures!))) {
    problems.push(`${unit.failures} is missing, ${unitKey(unit.unit)} lists its failed URLs there; ${redo(unit)}`);
  }
  return problems;
}

/** Why `bytes` is not a dataset manifest (the shape ingest's readManifest requires), or null when it is one. */
export function manifestProblem(bytes: Uint8Array): string | null {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return 'is not valid JSON';
  }
  const manifest = value as { format?: unknown; jobs?: unknown } | null;
  const ok = manifest !== null && typeof manifest === 'object' && Array.isArray(manifest.jobs);
  return ok && manifest.format === 'wildstream-dataset' ? null : 'is not a wildstream dataset manifest';
}

/**
 * The size of each object of `dir/` that exists: one listing (a dataset of a million units costs about a
 * thousand LIST pages, not a million HEADs). Unit records name only their own files there (parseUnit).
 */
async function objectSizes(store: Store, dir: string, keys: readonly string[]): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  if (keys.length === 0) return sizes;
  for await (const info of store.list(`${dir}/`)) sizes.set(info.key, info.size);
  return sizes;
}
