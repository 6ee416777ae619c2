/**
 * Planning and the dataset manifest. A job is identified by a fingerprint of its lists' contents and of every
 * option that changes the output; units are consecutive runs of `unitSize` rows, numbered from the job's first
 * unit. Rerunning the same job resumes it; a different job on the same store needs `--append`, which gives
 * it the unit numbers after the last job's. A retry pass (`--retry-failed`, retry.ts) is an entry of its own,
 * numbered after the last entry, that names its job in `retryOf`.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { basename } from 'node:path';
import { ConfigError } from '../errors.js';
import { getBytes, type Store } from '../shards/store.js';
import { MANIFEST_KEY } from '../shards/dataset.js';
import { readUrlLists, type UrlListOptions } from './url-list.js';

export interface JobEntry {
  fingerprint: string;
  lists: Array<{ name: string; bytes: number; sha256: string }>;
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
  jobs: JobEntry[];
}

/** Hashes the lists and counts their rows. */
export async function planJob(
  files: readonly string[],
  listOptions: UrlListOptions,
  outputOptions: Record<string, unknown>,
  unitSize: number,
): Promise<Omit<JobEntry, 'firstUnit' | 'createdAt'>> {
  const lists = [];
  for (const file of files) {
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of createReadStream(file)) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    lists.push({ name: basename(file), bytes, sha256: hash.digest('hex') });
  }
  let rows = 0;
  for await (const _ of readUrlLists(files, listOptions)) rows++;
  const options = { ...listOptions, ...outputOptions, unitSize };
  const fingerprint = createHash('sha256')
    .update(JSON.stringify({ lists: lists.map((l) => l.sha256), options }))
    .digest('hex')
    .slice(0, 32);
  return { fingerprint, lists, options, rows, units: Math.ceil(rows / unitSize) };
}

export async function readManifest(store: Store): Promise<Manifest | null> {
  if (!(await store.head(MANIFEST_KEY))) return null;
  const text = Buffer.from(await getBytes(store, MANIFEST_KEY)).toString('utf8');
  try {
    const manifest = JSON.parse(text) as Manifest;
    if (manifest.format !== 'wildstream-dataset' || !Array.isArray(manifest.jobs)) throw new Error('bad shape');
    return manifest;
  } catch {
    throw new ConfigError(`${store.url}/${MANIFEST_KEY} is not a wildstream dataset manifest`);
  }
}

/**
 * Finds this job in the manifest (resume) or adds it (new dataset, or `append`), and returns its entry.
 * Refuses a different job on an existing dataset without `append`.
 */
export async function registerJob(
  store: Store,
  planned: Omit<JobEntry, 'firstUnit' | 'createdAt'>,
  append: boolean,
): Promise<{ job: JobEntry; resumed: boolean; manifest: Manifest }> {
  const manifest = (await readManifest(store)) ?? { format: 'wildstream-dataset', version: 1, jobs: [] };
  const existing = manifest.jobs.find((j) => j.fingerprint === planned.fingerprint);
  if (existing) return { job: existing, resumed: true, manifest };
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
