/**
 * Where shards are staged before upload, so that a killed run's leftovers are found and removed by the next
 * run instead of filling /tmp. A local dataset stages inside itself (`<dataset>/.staging/`, the same disk
 * as its shards); a remote one in the user's cache directory, under a folder named after the store URL.
 *
 * Distributed workers share a dataset, so each process stages in its own folder, `<host>-<pid>`. A run
 * removes a folder only when its owner is surely gone: the same host and that pid not alive, or nothing in
 * it modified for `staleMs` (another host's process cannot be asked; a worker that writes nothing for that
 * long has also lost its unit's queue lock, so the unit is redone elsewhere anyway).
 */
import { createHash } from 'node:crypto';
import { readdir, rm, rmdir, stat } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { processExists } from '../process-exists.js';
import type { Store } from './store.js';
import { makeDirs } from './make-dirs.js';
import { STAGING_DIR, stagingFolderName } from './keys.js';

export interface StagingOptions {
  /** A folder untouched this long is removed whoever owns it. @default 24 hours */
  staleMs?: number;
}

const opened = new Map<string, Promise<string>>();

/** The folder under which shards for `store` are staged. */
export function stagingRoot(store: Store): string {
  const local = (store as { root?: unknown }).root;
  if (store.url.startsWith('file://') && typeof local === 'string') return join(local, STAGING_DIR);
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const id = createHash('sha256').update(store.url).digest('hex').slice(0, 16);
  return join(cache, 'wildstream', 'staging', id);
}

/** This process's staging folder for `store`, made once per process after removing dead runs' folders. */
export function openStaging(store: Store, options: StagingOptions = {}): Promise<string> {
  const root = stagingRoot(store);
  let dir = opened.get(root);
  if (!dir) {
    dir = prepare(root, options.staleMs ?? 24 * 3600_000);
    opened.set(root, dir);
    dir.catch(() => opened.delete(root)); // a failure is reported to the caller; the next call tries again
  }
  return dir;
}

/**
 * Removes this process's staging folder for `store` once nothing is staged in it, and the staging root once no
 * other process's folder is left in it, so a finished job leaves no `.staging/` in its dataset. Call it when
 * the process's writers for `store` are done (a job's end); a later openStaging makes the folder again. A
 * folder that still holds a file stays (rmdir refuses it), as does anything it cannot remove: never an error.
 */
export async function closeStaging(store: Store): Promise<void> {
  const root = stagingRoot(store);
  const dir = opened.get(root);
  if (!dir) return;
  opened.delete(root);
  const path = await dir.catch(() => null);
  if (path === null) return;
  await rmdir(path).catch(() => {});
  await rmdir(root).catch(() => {});
}

async function prepare(root: string, staleMs: number): Promise<string> {
  const mine = stagingFolderName(hostname(), process.pid);
  await makeDirs(join(root, mine));
  for (const entry of await readdir(root, { withFileTypes: true })) {
    if (entry.name === mine) continue;
    const path = join(root, entry.name);
    if (ownerIsGone(entry.name) || (await newestChange(path)) < Date.now() - staleMs) {
      await rm(path, { recursive: true, force: true });
    }
  }
  return join(root, mine);
}

/** True only for a folder of this host whose process no longer exists. */
function ownerIsGone(name: string): boolean {
  const match = /-(\d+)$/.exec(name);
  const pid = Number(match?.[1]);
  return match !== null && name === stagingFolderName(hostname(), pid) && !processExists(pid);
}

/** Latest mtime of a path or anything directly in it (staged files sit one level down). */
async function newestChange(path: string): Promise<number> {
  let newest = (await stat(path)).mtimeMs;
  const entries = await readdir(path).catch(() => [] as string[]);
  for (const name of entries) {
    const info = await stat(join(path, name)).catch(() => null);
    if (info) newest = Math.max(newest, info.mtimeMs);
  }
  return newest;
}
