/**
 * The one ingest planner, for the local executor (job.ts), the BullMQ one (queue.ts) and every source (URL
 * lists, a crawl's image candidates; source.ts). A job is identified by a fingerprint of its source's parts
 * and of every option that changes the output; units are consecutive runs of `unitSize` rows, numbered from
 * the job's first unit. Rerunning the same job resumes it; a different job on the same store needs
 * `--append`, which gives it the unit numbers after the last job's. A retry pass (`--retry-failed`, retry.ts)
 * is an entry of its own, numbered after the last entry, that names its job in `retryOf`.
 */
import { createHash, randomUUID } from 'node:crypto';
import { ConfigError } from '../errors.js';
import { listUnits, manifestProblem, MANIFEST_KEY, type UnitRecord } from '../shards/dataset.js';
import { getBytes, openStore, type Store } from '../shards/store.js';
import { abortable, DEFAULT_DEDUPE_RADIUS, DEFAULT_UNIT_SIZE, type IngestOptions } from './run-options.js';
import { listSource, type IngestSource, type SourcePart } from './source.js';
import { summariseRun, type IngestSummary } from './summary.js';
import { listFiles, type UrlListOptions, type UrlRow } from './url-list.js';

export interface JobEntry {
  fingerprint: string;
  /** The source's parts (list files, or the list a stage produced), as source.ts describes them. */
  lists: SourcePart[];
  options: Record<string, unknown>;
  rows: number;
  firstUnit: number;
  units: number;
  createdAt: string;
  /** On a retry pass (`ingest --retry-failed`): the fingerprint of the job whose failed URLs it refetches. */
  retryOf?: string;
  /** On a retry pass: its number among the job's passes, from 1. */
  pass?: number;
  /** On a retry pass: the failure reasons it refetches (fixed when the pass is registered, so a rerun resumes it). */
  retryReasons?: string[];
}

export interface Manifest {
  format: 'wildstream-dataset';
  version: 1;
  /**
   * The dataset's identity: random, written when the dataset is created (or, for a dataset made before ids,
   * when a job is next registered in it). A dataset deleted and made again at the same location gets another,
   * so state kept outside the store (a queue's Redis dedupe index and job ids, queue.ts) never outlives it.
   */
  id?: string;
  jobs: JobEntry[];
}

/** Hashes the lists and counts their rows. */
export async function planJob(
  files: readonly string[],
  listOptions: UrlListOptions,
  outputOptions: Record<string, unknown>,
  unitSize: number,
): Promise<Omit<JobEntry, 'firstUnit' | 'createdAt'>> {
  return planSource(listSource(files, listOptions), listOptions, outputOptions, unitSize);
}

/** Identifies a source's job (its parts and the options) and counts its rows. */
export async function planSource(
  source: IngestSource,
  listOptions: UrlListOptions,
  outputOptions: Record<string, unknown>,
  unitSize: number,
): Promise<Omit<JobEntry, 'firstUnit' | 'createdAt'>> {
  const lists = await source.parts();
  let rows = 0;
  for await (const _ of source.rows()) rows++;
  const options = { ...listOptions, ...outputOptions, unitSize };
  const fingerprint = createHash('sha256')
    .update(JSON.stringify({ lists: lists.map((l) => l.sha256), options }))
    .digest('hex')
    .slice(0, 32);
  return { fingerprint, lists, options, rows, units: Math.ceil(rows / unitSize) };
}

/** One unit of a planned job: its number, its rows, and whether it is committed already. */
export interface PlannedUnit {
  unit: number;
  rows: UrlRow[];
  committed: boolean;
}

/** A job registered in its dataset's manifest, ready for an executor to run its uncommitted units. */
export interface IngestPlan {
  store: Store;
  job: JobEntry;
  manifest: Manifest;
  /** Whether the job was in the manifest already (this run resumes it). */
  resumed: boolean;
  /** Every unit committed in the store, of any job (the dedupe index starts from them). */
  committed: UnitRecord[];
  /** The job's units, and its retry passes', committed before this run. */
  earlier: UnitRecord[];
  /** Units of the job's own range committed before this run. */
  skipped: number;
  extraColumns: string[];
  /** The job's units in order, rows read from the source as they are reached. */
  units(): AsyncIterable<PlannedUnit>;
}

/** The outputs options that enter the fingerprint (list options and the unit size join them in planSource). */
export function outputOptionsOf(options: IngestOptions): Record<string, unknown> {
  return { decode: options.decode ?? {}, dedupeRadius: options.dedupeRadius ?? DEFAULT_DEDUPE_RADIUS };
}

/** Plans `options`' job and registers it in the dataset at `options.out`; see IngestPlan. */
export async function planIngest(options: IngestOptions): Promise<IngestPlan> {
  const unitSize = options.unitSize ?? DEFAULT_UNIT_SIZE;
  const source = options.source ?? listSource(await listFiles(options.lists), options.list);
  const store = await openStore(options.out, options.store);
  const planned = await abortable(
    planSource(source, options.list ?? {}, outputOptionsOf(options), unitSize),
    options.signal,
  );
  const { job, resumed, manifest } = await registerJob(store, planned, options.append ?? false);
  const committed = await listUnits(store);
  const member = inJob(manifest, job);
  const earlier = committed.filter((u) => member(u.unit));
  const done = new Set(committed.map((u) => u.unit));
  const skipped = committed.filter((u) => u.unit >= job.firstUnit && u.unit < job.firstUnit + job.units).length;
  const extraColumns = await abortable(source.extraColumns(), options.signal);
  const units = async function* (): AsyncIterable<PlannedUnit> {
    for await (const [unit, rows] of groupUnits(source.rows(), unitSize, job.firstUnit))
      yield { unit, rows, committed: done.has(unit) };
  };
  return { store, job, manifest, resumed, committed, earlier, skipped, extraColumns, units };
}

/** The summary of a run of `plan` that committed `run`: the same function for every executor. */
export function summarisePlan(
  plan: IngestPlan,
  run: readonly UnitRecord[],
  started: number,
  retryHint?: boolean,
): IngestSummary {
  return summariseRun({
    run,
    earlier: plan.earlier,
    unitsTotal: plan.job.units,
    skipped: plan.skipped,
    resumed: plan.resumed,
    rows: plan.job.rows,
    started,
    retryHint,
  });
}

/** Rows cut into units: a row's unit is `firstUnit + index / unitSize`. */
export async function* groupUnits(
  rows: AsyncIterable<UrlRow>,
  unitSize: number,
  firstUnit: number,
): AsyncIterable<[number, UrlRow[]]> {
  let current: UrlRow[] = [];
  let unit = firstUnit;
  for await (const row of rows) {
    const rowUnit = firstUnit + Math.floor(row.index / unitSize);
    if (rowUnit !== unit && current.length > 0) yield [unit, current];
    if (rowUnit !== unit) current = [];
    unit = rowUnit;
    current.push(row);
  }
  if (current.length > 0) yield [unit, current];
}

export async function readManifest(store: Store): Promise<Manifest | null> {
  if (!(await store.head(MANIFEST_KEY))) return null;
  const bytes = await getBytes(store, MANIFEST_KEY);
  const why = manifestProblem(bytes); // the check `inspect` makes
  if (why) throw new ConfigError(`${store.url}/${MANIFEST_KEY} ${why}`);
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as Manifest;
}

/**
 * Finds this job in the manifest (resume) or adds it (new dataset, or `append`), and returns its entry.
 * Refuses a different job on an existing dataset without `append`. Gives the dataset its `id` if it has none.
 */
export async function registerJob(
  store: Store,
  planned: Omit<JobEntry, 'firstUnit' | 'createdAt'>,
  append: boolean,
): Promise<{ job: JobEntry; resumed: boolean; manifest: Manifest }> {
  const manifest = (await readManifest(store)) ?? { format: 'wildstream-dataset', version: 1, jobs: [] };
  const unnamed = !manifest.id;
  manifest.id ??= randomUUID();
  const existing = manifest.jobs.find((j) => j.fingerprint === planned.fingerprint);
  if (existing) {
    if (unnamed) await store.put(MANIFEST_KEY, Buffer.from(JSON.stringify(manifest, null, 1)));
    return { job: existing, resumed: true, manifest };
  }
  if (manifest.jobs.length > 0 && !append) {
    throw new ConfigError(
      `${store.url} already holds a dataset made from other lists or options; rerun the same command to resume it, or pass --append to add to it`,
    );
  }
  const job: JobEntry = { ...planned, firstUnit: nextUnit(manifest), createdAt: new Date().toISOString() };
  await addEntry(store, manifest, job);
  return { job, resumed: false, manifest };
}

/** The first unit number no entry of the manifest has taken. */
export function nextUnit(manifest: Manifest): number {
  const last = manifest.jobs.at(-1);
  return last ? last.firstUnit + last.units : 0;
}

/** Adds a job or a retry pass to the manifest and writes it (before any of the entry's units is written). */
export async function addEntry(store: Store, manifest: Manifest, entry: JobEntry): Promise<void> {
  manifest.jobs.push(entry);
  await store.put(MANIFEST_KEY, Buffer.from(JSON.stringify(manifest, null, 1)));
}

/** The job's retry passes, in order. */
export function retryPasses(manifest: Manifest, job: JobEntry): JobEntry[] {
  return manifest.jobs.filter((j) => j.retryOf === job.fingerprint).sort((a, b) => (a.pass ?? 0) - (b.pass ?? 0));
}

/** Whether a unit number belongs to the job or to one of its retry passes. */
export function inJob(manifest: Manifest, job: JobEntry): (unit: number) => boolean {
  const ranges = [job, ...retryPasses(manifest, job)].map((e) => [e.firstUnit, e.firstUnit + e.units] as const);
  return (unit) => ranges.some(([a, b]) => unit >= a && unit < b);
}
