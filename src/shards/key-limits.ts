/**
 * How long a key may be, checked twice. Up front (checkStoreUrl, before a stage runs): a store's prefix or root
 * must leave room for the longest key a job writes below it (keys.ts longestKeys, derived from the key builders,
 * so the room follows any change of a name). At the store (every S3 request, every local path): a key over the
 * limit fails before a request or a file system call. Both throw KeyTooLongError, a ConfigError (exit 2): the fix
 * is a shorter prefix or path, and no retry mends it.
 *
 * - S3: a key is at most 1024 bytes of UTF-8 (AWS, "Naming Amazon S3 objects"): AWS answers KeyTooLongError,
 *   s3rver answers 500 to each of the retries.
 * - Local: a name (one path component) is at most 255 bytes (NAME_MAX of ext4, xfs, btrfs, tmpfs), a path at
 *   most 4095 (Linux's PATH_MAX, 4096 with the terminating NUL). A file system with shorter names (eCryptfs) still
 *   answers ENAMETOOLONG, which nameTooLong words the same way.
 */
import { ConfigError } from '../errors.js';
import { tempName } from './keys.js';

export const S3_MAX_KEY_BYTES = 1024;
export const NAME_MAX_BYTES = 255;
export const PATH_MAX_BYTES = 4095;

/** A key, prefix or local path longer than the store takes. */
export class KeyTooLongError extends ConfigError {
  override readonly code = 'WS_ERR_KEY_TOO_LONG';
}

/** Bytes of `text` in UTF-8, as S3 and file systems count them (`é` is 2). */
export function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/** The store's check of a whole S3 key (prefix and key) before a request; returns the key. */
export function checkS3Key(bucket: string, fullKey: string): string {
  const size = utf8Bytes(fullKey);
  if (size > S3_MAX_KEY_BYTES)
    throw new KeyTooLongError(
      `object key too long: s3://${bucket}/${fullKey} is ${size} bytes of UTF-8, and S3 takes keys of at most ${S3_MAX_KEY_BYTES} bytes`,
    );
  return fullKey;
}

/** The store's check of an absolute local path before a file system call; returns the path. */
export function checkLocalPath(path: string): string {
  const long = longestName(path);
  if (utf8Bytes(long) > NAME_MAX_BYTES)
    throw new KeyTooLongError(`path too long: ${path} holds ${nameTooLongText(long)}`);
  const size = utf8Bytes(path);
  if (size > PATH_MAX_BYTES)
    throw new KeyTooLongError(
      `path too long: ${path} is ${size} bytes of UTF-8, and paths are at most ${PATH_MAX_BYTES} bytes (PATH_MAX)`,
    );
  return path;
}

/**
 * The up-front check of an S3 store: `prefix` (of `url`) joined with each of `keys` must fit S3's limit.
 * Throws KeyTooLongError naming the prefix, its size, the limit, and the bytes the longest key needs beyond it.
 */
export function checkS3Room(url: string, prefix: string, keys: readonly string[]): void {
  const size = utf8Bytes(prefix);
  const key = longest(keys);
  const need = key === undefined ? 0 : utf8Bytes(key) + (prefix ? 1 : 0);
  if (size + need <= S3_MAX_KEY_BYTES) return;
  if (key === undefined || !prefix)
    throw new KeyTooLongError(
      `S3 key ${prefix || key} of ${url} is ${size + need} bytes of UTF-8, and S3 takes keys of at most ${S3_MAX_KEY_BYTES} bytes; use a shorter name`,
    );
  throw new KeyTooLongError(
    `S3 prefix ${prefix} of ${url} is ${size} bytes of UTF-8, and S3 keys are at most ${S3_MAX_KEY_BYTES} bytes: ` +
      `the longest key written below it (${key}) needs ${need} bytes beyond the prefix, so the prefix may have at ` +
      `most ${S3_MAX_KEY_BYTES - need} bytes; use a shorter prefix`,
  );
}

/**
 * The up-front check of a local store at the absolute path `root` (of `url`): each name at most NAME_MAX bytes,
 * including the temp file a put writes beside each of `keys`, and the longest path at most PATH_MAX. Throws
 * KeyTooLongError naming the name or the path, its size, the limit, and the bytes the longest key needs beyond it.
 */
export function checkLocalRoom(url: string, root: string, keys: readonly string[]): void {
  const folder = longestName(root);
  if (utf8Bytes(folder) > NAME_MAX_BYTES)
    throw new KeyTooLongError(`store path ${root} holds ${nameTooLongText(folder)}; use shorter folder names`);
  // What a put writes first: the key's temp file, one name longer than the key's own.
  const written = keys.map((key) => tempName(key));
  const name = longest(written.map(longestName));
  if (name !== undefined && utf8Bytes(name) > NAME_MAX_BYTES)
    throw new KeyTooLongError(
      `cannot write in ${url}: a write goes through a temp file named ${name}, ${utf8Bytes(name)} bytes of UTF-8, ` +
        `and file systems take names of at most ${NAME_MAX_BYTES} bytes (NAME_MAX); use a shorter name`,
    );
  const size = utf8Bytes(root);
  const path = longest(written);
  const need = path === undefined ? 0 : utf8Bytes(path) + (root.endsWith('/') ? 0 : 1);
  if (size + need <= PATH_MAX_BYTES) return;
  throw new KeyTooLongError(
    `store path ${root} is ${size} bytes of UTF-8, and paths are at most ${PATH_MAX_BYTES} bytes (PATH_MAX): ` +
      `the longest path written below it (${path}) needs ${need} bytes beyond it, so the store path may have at ` +
      `most ${PATH_MAX_BYTES - need} bytes; use a shorter path`,
  );
}

/**
 * KeyTooLongError for a file system call on `path` that failed with ENAMETOOLONG (a file system whose limits are
 * below NAME_MAX or PATH_MAX), or undefined for any other error.
 */
export function nameTooLong(err: unknown, path: string): KeyTooLongError | undefined {
  if ((err as NodeJS.ErrnoException | undefined)?.code !== 'ENAMETOOLONG') return undefined;
  const name = longestName(path);
  return new KeyTooLongError(
    `path too long: the file system refuses ${path} (${utf8Bytes(path)} bytes of UTF-8, its longest name ` +
      `${utf8Bytes(name)}); use a shorter path`,
    { cause: err },
  );
}

function nameTooLongText(name: string): string {
  return `the name ${name}, ${utf8Bytes(name)} bytes of UTF-8, and file systems take names of at most ${NAME_MAX_BYTES} bytes (NAME_MAX)`;
}

/** The name (path component) of `path` with the most bytes. */
function longestName(path: string): string {
  return longest(path.split('/')) ?? '';
}

/** The item of `texts` with the most UTF-8 bytes, or undefined when there is none. */
function longest(texts: readonly string[]): string | undefined {
  let most: string | undefined;
  for (const text of texts) if (most === undefined || utf8Bytes(text) > utf8Bytes(most)) most = text;
  return most;
}
