/**
 * Which failed URLs of a dataset are failed *now*: a URL that `--retry-failed` later fetched is no longer failed,
 * and one that failed again is failed once (with its latest reason), not once per attempt. The same replay serves
 * a retry pass choosing its rows (retry.ts) and `inspect` counting failures, so the two never disagree.
 *
 * The replay, per job: start from the failure files of the job's units; for each retry pass in order, the rows
 * it takes are those whose latest outcome is a failure with one of its reasons, in row order, `unitSize` rows
 * per unit (as the pass wrote them); each committed unit of the pass settles its rows (they leave the failed
 * set) and its failure file puts back those that failed again. A pass stopped part-way settles only what it
 * committed, so a count taken mid-pass is exact too.
 */
import { inspectShards, listUnits, type DatasetSummary, type UnitRecord } from '../shards/dataset.js';
import { verifyShards } from '../shards/verify.js';
import { addCounts, readFailures, type FailureCounts, type FailureRecord } from '../shards/failures.js';
import type { Store } from '../shards/store.js';
import { readManifest, retryPasses, type JobEntry } from './plan.js';

/** Whether `reason` is one of `specs` (`http_5xx` matching any 5xx). */
export function matchesReason(reason: string, specs: readonly string[]): boolean {
  return specs.some(
    (s) => s === reason || (/^http_\dxx$/.test(s) && /^http_\d{3}$/.test(reason) && reason[5] === s[5]),
  );
}

/** The rows of `latest` that a pass with `reasons` takes, in row order. */
export function rowsTaken(latest: ReadonlyMap<number, FailureRecord>, reasons: readonly string[]): FailureRecord[] {
  return [...latest.values()].filter((f) => matchesReason(f.reason, reasons)).sort((a, b) => a.row - b.row);
}

/**
 * The latest failure of every row of `job` that is failed after the given passes (in pass order; each settles
 * only the rows of its committed units). Errors: the store's; InvalidShardError for a malformed failure file.
 */
export async function latestFailures(
  store: Store,
  byUnit: ReadonlyMap<number, UnitRecord>,
  job: JobEntry,
  passes: readonly JobEntry[],
): Promise<Map<number, FailureRecord>> {
  const latest = new Map<number, FailureRecord>();
  await addFailures(store, byUnit, job, latest);
  for (const pass of passes) {
    const taken = rowsTaken(latest, pass.retryReasons ?? []);
    const unitSize = Number(pass.options.unitSize) || taken.length;
    for (let i = 0; i < pass.units; i++) {
      if (!byUnit.has(pass.firstUnit + i)) continue;
      for (const f of taken.slice(i * unitSize, (i + 1) * unitSize)) latest.delete(f.row);
    }
    await addFailures(store, byUnit, pass, latest);
  }
  return latest;
}

async function addFailures(
  store: Store,
  byUnit: ReadonlyMap<number, UnitRecord>,
  entry: JobEntry,
  latest: Map<number, FailureRecord>,
): Promise<void> {
  for (let unit = entry.firstUnit; unit < entry.firstUnit + entry.units; unit++) {
    const key = byUnit.get(unit)?.failures;
    if (key) for (const f of await readFailures(store, key)) latest.set(f.row, f);
  }
}

/**
 * The dataset's failed URLs by reason, each counted once with its latest outcome (see the module comment).
 * A job without retry passes is counted from its unit records alone; only a retried job's failure files are read.
 */
export async function outstandingFailures(store: Store, units: readonly UnitRecord[]): Promise<FailureCounts> {
  const counts: FailureCounts = {};
  for (const unit of units) addCounts(counts, unit.failed);
  const manifest = await readManifest(store);
  if (!manifest) return counts;
  const byUnit = new Map(units.map((u) => [u.unit, u]));
  for (const job of manifest.jobs.filter((j) => !j.retryOf)) {
    const passes = retryPasses(manifest, job);
    if (passes.length === 0) continue;
    for (const entry of [job, ...passes]) {
      for (let unit = entry.firstUnit; unit < entry.firstUnit + entry.units; unit++) {
        for (const [reason, n] of Object.entries(byUnit.get(unit)?.failed ?? {})) counts[reason]! -= n;
      }
    }
    for (const f of (await latestFailures(store, byUnit, job, passes)).values()) {
      counts[f.reason] = (counts[f.reason] ?? 0) + 1;
    }
  }
  return Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0));
}

/**
 * Summarises a dataset and checks it, as `wildstream inspect` prints it: shards, records, bytes and duplicates
 * from the unit records, `failed` as outstandingFailures counts it (a URL a retry pass fetched is not failed),
 * and the problems checkDataset finds (in the summary, not thrown); with `verify`, also those verifyShards finds
 * reading every shard whole. Errors: NotFoundError when the store holds
 * no dataset; ConfigError for an unreadable dataset.json; InvalidShardError for a malformed unit record or
 * failure file; the store's errors.
 */
export async function inspectDataset(store: Store, o: { verify?: boolean } = {}): Promise<DatasetSummary> {
  const units = await listUnits(store);
  const summary = await inspectShards(store, units);
  if (o.verify) summary.problems.push(...(await verifyShards(store, units)));
  // With problems (a corrupt dataset.json among them) `failed` stays the unit records' sum, shown beside them.
  if (summary.problems.length > 0) return summary;
  return { ...summary, failed: await outstandingFailures(store, units) };
}
