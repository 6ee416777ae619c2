/**
 * Planning and the dataset manifest. A job is identified by a fingerprint of its lists' contents and of every
 * option that changes the output; units are consecutive runs of `unitSize` rows, numbered from the job's first
 * unit. Rerunning the same job resumes it; a different job on the same store needs `--append`, which gives
 * it the unit numbers after the last job's.
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
): Promise<{ job: JobEntry; resumed: boolean }> {
  const manifest = (await readManifest(store)) ?? { format: 'wildstream-dataset', version: 1, jobs: [] };
  const existing = manifest.jobs.find((j) => j.fingerprint === planned.fingerprint);
  if (existing) return { job: existing, resumed: true };
  if (manifest.jobs.length > 0 && !append) {
    throw new ConfigError(
      `${store.url} already holds a dataset made from other lists or options; rerun the same command to resume it, or pass --append to add to it`,
    );
  }
  const last = manifest.jobs.at(-1);
  const job: JobEntry = { ...planned, firstUnit: last ? last.firstUnit + last.units : 0, createdAt: new Date().toISOString() };
  manifest.jobs.push(job);
  await store.put(MANIFEST_KEY, Buffer.from(JSON.stringify(manifest, null, 1)));
  return { job, resumed: false };
}
