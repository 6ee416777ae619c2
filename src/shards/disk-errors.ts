/**
 * The one place where a failed write to local disk becomes the user's error. Every local write path goes
 * through it: the local store's put (mkdir, temp file write, fsync, rename, directory fsync), `makeDirs`, and the
 * shard staged by ShardWriter (`<dataset>/.staging/...`), so a full disk reads the same wherever it fills.
 */
import { AccessDeniedError, StoreUnavailableError, WildstreamError } from '../errors.js';
import { nameTooLong } from './key-limits.js';

/**
 * The typed one-line error for a write to `path` that failed with `err`, or undefined when `err` is not about
 * the disk (the caller maps it). Errors: StoreUnavailableError for ENOSPC and EDQUOT (retryable once space is
 * freed: a unit is committed by its record, written last, so nothing committed is lost); AccessDeniedError for
 * EROFS, EACCES and EPERM; KeyTooLongError for ENAMETOOLONG (nameTooLong). A WildstreamError is returned as it is.
 *
 * @param verb what was being done to `path`: `write` for files, `create` for directories.
 */
export function diskWriteError(err: unknown, path: string, verb: 'write' | 'create' = 'write'): Error | undefined {
  if (err instanceof WildstreamError) return err;
  switch ((err as NodeJS.ErrnoException | undefined)?.code) {
    case 'ENOSPC':
      return full('disk full', path, err);
    case 'EDQUOT':
      return full('disk quota exceeded', path, err);
    case 'EROFS':
      return new AccessDeniedError(`cannot write to ${path}: read-only file system`, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new AccessDeniedError(`cannot ${verb} ${path}: permission denied`, { cause: err });
    default:
      return nameTooLong(err, path);
  }
}

function full(what: string, path: string, cause: unknown): StoreUnavailableError {
  return new StoreUnavailableError(`${what}: cannot write ${path}; committed data is intact, free space and rerun`, {
    cause,
  });
}
