/**
 * A store on the local filesystem. `put` writes a temp file beside the target, fsyncs it, renames it into
 * place and fsyncs the directory, so a crash leaves either the old object, the new one, or a stray temp
 * file that `list` never shows.
 */
import { constants } from 'node:fs';
import { open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { AccessDeniedError, ConfigError, NotFoundError, StoreUnavailableError, WildstreamError } from '../errors.js';
import {
  checkKey,
  checkRange,
  localRoot,
  type ObjectInfo,
  type PutBody,
  type RangeOptions,
  type Store,
  type StoreOptions,
} from './store-contract.js';
import { diskWriteError } from './disk-errors.js';
import { checkLocalPath, nameTooLong } from './key-limits.js';
import { TEMP_MARK, tempName } from './keys.js';
import { makeDirs } from './make-dirs.js';

/** The most one `read` call is asked for (1 GiB, below the int32 limit of Node's fs bindings). */
const READ_PIECE = 2 ** 30;

export class LocalStore implements Store {
  readonly url: string;
  readonly root: string;

  constructor(location: string, _options: StoreOptions = {}) {
    this.root = localRoot(location);
    this.url = `file://${this.root}`;
  }

  /** The key's file; a key the file system would refuse as too long (key-limits.ts) throws before any call. */
  private path(key: string): string {
    const full = join(this.root, checkKey(key));
    if (!full.startsWith(this.root + sep)) throw new ConfigError(`key escapes the store root: ${key}`);
    return checkLocalPath(full);
  }

  /** Errors: every disk failure (mkdir, write, fsync, rename) as diskWriteError words it, naming the target. */
  async put(key: string, body: PutBody): Promise<void> {
    const target = this.path(key);
    const temp = checkLocalPath(tempName(target)); // one name longer than the target's
    await wrap(key, () => makeDirs(dirname(target)), target);
    await wrap(key, () => writeAtomically(target, temp, body), target);
  }

  async get(key: string): Promise<Readable> {
    const handle = await this.openFile(key);
    return handle.createReadStream({ autoClose: true });
  }

  /**
   * Opens a regular file for reading. Non-blocking, so a FIFO (which would block the open until a writer
   * comes) is seen for what it is; a FIFO, device or directory is no object, as head says.
   */
  private async openFile(key: string): Promise<FileHandle> {
    const handle = await wrap(key, () => open(this.path(key), constants.O_RDONLY | constants.O_NONBLOCK));
    const info = await handle.stat().catch(async (err: unknown) => {
      await handle.close();
      throw mapFsError(err, key);
    });
    if (info.isFile()) return handle;
    await handle.close();
    throw new NotFoundError(`no such object: ${key} (not a regular file)`);
  }

  async getRange(key: string, start: number, end: number, options: RangeOptions = {}): Promise<Uint8Array> {
    checkRange(start, end);
    const handle = await this.openFile(key);
    try {
      const length = end - start + 1;
      // Checked before allocating: a range from a damaged length field may ask for gigabytes.
      const { size } = await handle.stat();
      if (end >= size) throw new NotFoundError(`range ${start}-${end} is beyond the end of ${key} (${size} bytes)`);
      const buffer = options.shared ? Buffer.from(new SharedArrayBuffer(length)) : Buffer.allocUnsafe(length);
      let filled = 0;
      while (filled < length) {
        // Node's FileHandle.read aborts the process (a native assertion) on a length above 2^31 - 1.
        const { bytesRead } = await handle.read(buffer, filled, Math.min(length - filled, READ_PIECE), start + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      if (filled < length) {
        throw new NotFoundError(`range ${start}-${end} is beyond the end of ${key} (${start + filled} bytes)`);
      }
      return buffer;
    } finally {
      await handle.close();
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const info = await stat(this.path(key));
      if (!info.isFile()) return null;
      return { key, size: info.size, etag: `${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}` };
    } catch (err) {
      // ENOTDIR: a part of the path is a file (a store root that is a file holds no object).
      if (['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code!)) return null;
      throw mapFsError(err, key);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Walk only the directory the prefix names, then filter by the rest of the prefix.
    const cut = prefix.lastIndexOf('/');
    const dirKey = cut >= 0 ? prefix.slice(0, cut) : '';
    checkLocalPath(join(this.root, prefix));
    const keys = await walk(this.root, dirKey);
    for (const key of keys.filter((k) => k.startsWith(prefix)).sort()) {
      const info = await this.head(key);
      if (info) yield info;
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.path(key);
    await wrap(key, () => rm(path, { force: true }), path);
  }

  async sweepUnfinished(dirKey: string): Promise<string[]> {
    const dir = this.path(dirKey);
    const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return [];
      throw mapFsError(err, dirKey);
    });
    const unfinished = names.filter((n) => n.includes(TEMP_MARK));
    for (const name of unfinished) {
      await wrap(`${dirKey}/${name}`, () => rm(join(dir, name), { force: true }), join(dir, name));
    }
    return unfinished;
  }
}

/**
 * Writes `temp` (beside `target`), fsync, rename over it, fsync the directory. Whatever fails (a full disk
 * mid-write, a rename), the target still holds the last committed object and no temp file is left; the raw error
 * is thrown.
 */
async function writeAtomically(target: string, temp: string, body: PutBody): Promise<void> {
  const handle = await open(temp, 'w');
  try {
    if (body instanceof Uint8Array) await handle.writeFile(body);
    else for await (const chunk of body as Readable) await handle.write(chunk as Uint8Array);
    await handle.sync();
    await handle.close();
    await rename(temp, target);
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(temp, { force: true }).catch(() => {});
    throw err;
  }
  await syncDir(dirname(target));
}

/** Every file key below `dirKey`, skipping temp files. A missing directory is an empty listing. */
async function walk(root: string, dirKey: string): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    entries = await readdir(dirKey ? join(root, dirKey) : root, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR')
      return out;
    throw mapFsError(err, dirKey);
  }
  for (const entry of entries) {
    const key = dirKey ? `${dirKey}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await walk(root, key)));
    else if (entry.isFile() && !entry.name.includes(TEMP_MARK)) out.push(key);
  }
  return out;
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Runs `fn`, mapping what it throws with mapFsError. */
async function wrap<T>(key: string, fn: () => Promise<T>, path?: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw mapFsError(err, key, path);
  }
}

/**
 * The typed error for a failed file system call on `key`. With `path` (the call wrote there), a full, read-only
 * or forbidden disk is worded by diskWriteError, as every local write is, and a target that is a folder is a
 * ConfigError; otherwise ENOENT, EISDIR and ENOTDIR are NotFoundError, EACCES and EPERM AccessDeniedError, and anything else StoreUnavailableError.
 */
function mapFsError(err: unknown, key: string, path?: string): Error {
  if (err instanceof WildstreamError) return err;
  const disk = path === undefined ? undefined : diskWriteError(err, path);
  if (disk) return disk;
  const tooLong = nameTooLong(err, path ?? key);
  if (tooLong) return tooLong;
  const code = (err as NodeJS.ErrnoException).code;
  const why = (err as Error).message;
  // A write whose target is a folder names no object to be found: the caller named the wrong place (an --out
  // that is a folder), which a retry cannot mend. A path through a file is makeDirs' to say.
  if (path !== undefined && code === 'EISDIR')
    return new ConfigError(`cannot write ${key}: ${path} is a directory`, { cause: err });
  // A write that finds no file to make (a folder like /proc that takes none) has no object to be missing.
  if (path !== undefined && code === 'ENOENT')
    return new ConfigError(`cannot write ${key} at ${path}: ${why}`, { cause: err });
  if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR')
    return new NotFoundError(`no such object: ${key}`, { cause: err });
  if (code === 'EACCES' || code === 'EPERM')
    return new AccessDeniedError(`access denied to ${key}: ${why}`, { cause: err });
  return new StoreUnavailableError(`local store failed on ${key}: ${why}`, { cause: err });
}
