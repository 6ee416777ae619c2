/**
 * `mkdir -p` that always ends and says what is wrong. Node's `mkdir(dir, { recursive: true })` spins forever
 * when mkdir reports ENOENT for a parent that exists (seen under /proc on Node 20.20), and reports ENOENT for
 * EROFS and for a file in the way; this walks the path one level at a time instead.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError, StoreUnavailableError } from '../errors.js';
import { diskWriteError } from './disk-errors.js';

/**
 * Creates `dir` and its missing parents. Errors (one line, naming the path): ConfigError when a path component
 * is a file; AccessDeniedError on a read-only file system or a denied permission, StoreUnavailableError on a
 * full disk (both from diskWriteError); StoreUnavailableError when the file system refuses for another reason.
 */
export async function makeDirs(dir: string): Promise<void> {
  const target = resolve(dir);
  const missing: string[] = [];
  for (let at = target; ; at = dirname(at)) {
    const kind = await kindOf(at, target);
    if (kind === 'dir') break;
    if (kind === 'file') throw new ConfigError(`cannot create ${target}: ${at} is a file, not a directory`);
    missing.push(at); // 'none', or 'under-file': an ancestor is a file, named when the walk reaches it
    if (dirname(at) === at) break;
  }
  for (const path of missing.reverse()) {
    await mkdir(path).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST' && (await kindOf(path, target)) === 'dir') return; // created meanwhile
      throw failed(err, path, target);
    });
  }
}

async function kindOf(path: string, target: string): Promise<'dir' | 'file' | 'none' | 'under-file'> {
  try {
    return (await stat(path)).isDirectory() ? 'dir' : 'file';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'none';
    if (code === 'ENOTDIR') return 'under-file';
    throw failed(err as NodeJS.ErrnoException, path, target);
  }
}

function failed(err: NodeJS.ErrnoException, path: string, target: string): Error {
  const disk = diskWriteError(err, path, 'create'); // a full, read-only or forbidden disk, worded as every write
  if (disk) return disk;
  if (err.code === 'EEXIST' || err.code === 'ENOTDIR')
    return new ConfigError(`cannot create ${target}: ${path} is a file, not a directory`, { cause: err });
  return new StoreUnavailableError(`cannot create ${path}: the file system refuses (${err.code ?? err.message})`, {
    cause: err,
  });
}
