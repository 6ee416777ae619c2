/**
 * What a store backend implements (the Store interface and the options every store takes) and the key and range
 * rules every backend enforces. Backends import this module; `store.ts` re-exports it beside `openStore`, which
 * loads the backends, so no backend imports the module that loads it.
 */
import { resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.js';

export interface ObjectInfo {
  key: string;
  size: number;
  /** Opaque version tag: the S3 ETag, or size+mtime locally. */
  etag: string;
}

export type PutBody = Uint8Array | Readable;

export interface Store {
  /** The URL the store was opened from, normalised. */
  readonly url: string;
  /** Writes the whole object atomically: readers never observe a partial object. */
  put(key: string, body: PutBody): Promise<void>;
  /** Streams the whole object. Throws NotFoundError when absent. */
  get(key: string): Promise<Readable>;
  /** Bytes `start..end` inclusive (HTTP `Range: bytes=start-end` semantics); exactly `end - start + 1` bytes. */
  getRange(key: string, start: number, end: number, options?: RangeOptions): Promise<Uint8Array>;
  /** Size and etag, or null when the object does not exist. */
  head(key: string): Promise<ObjectInfo | null>;
  /** Every object under `prefix`, in key order; pages through large listings lazily. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Removes the object; removing an absent object is not an error (as on S3). */
  delete(key: string): Promise<void>;
  /**
   * Deletes what killed `put`s left directly in the folder `dirKey` (`checkpoints`): a local store's temp
   * files, which no listing shows and nothing else removes; a remote store has none. Only for a folder no live
   * writer shares (a run's checkpoints, under its lock). Returns the names removed.
   */
  sweepUnfinished?(dirKey: string): Promise<string[]>;
}

export interface RangeOptions {
  /**
   * The bytes in a SharedArrayBuffer, so that worker threads can read views of them without a copy or a
   * transfer (the augment pool's records). @default false
   */
  shared?: boolean;
}

/** Options shared by every store; each store reads the ones that concern it. */
export interface StoreOptions {
  /** S3 endpoint URL for S3-compatible servers (MinIO, R2, Ceph). @default AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL */
  s3Endpoint?: string;
  /** Path-style S3 addressing (`endpoint/bucket/key`). @default true when an endpoint is set, else false */
  s3PathStyle?: boolean;
  /** S3 region. @default AWS_REGION, else us-east-1 */
  s3Region?: string;
  /**
   * Attempts per request, the first included: every read, write, list, head and delete of a remote store goes
   * through one retry policy (`retry.ts`) that retries network errors, resets, truncated bodies, timeouts, 429,
   * 500, 502, 503 and SlowDown, never 403 or 404. Enough that a run survives 15 % failed requests.
   * @default AWS_MAX_ATTEMPTS, else 8
   */
  maxAttempts?: number;
  /** First backoff before a retry; each retry waits a uniform random time up to twice the last cap. @default 100 */
  retryBaseDelayMs?: number;
  /** Cap on one backoff. @default 5000 */
  retryMaxDelayMs?: number;
  /** Milliseconds to establish a connection before the attempt fails. @default 5000 */
  connectTimeoutMs?: number;
  /** Keys per LIST page; small values exercise paging in tests. @default 1000 */
  listPageSize?: number;
  /**
   * Idle timeout: milliseconds an attempt may wait for the next byte (the response headers, or more of a body,
   * or the server to take more of an upload) before it fails and is retried. @default 30000
   */
  requestTimeoutMs?: number;
  /** Overall deadline of one attempt: request, headers and a buffered body (a range, a record, a part). @default 120000 */
  attemptTimeoutMs?: number;
}

/**
 * Why a `/`-separated path may not name an object, or undefined when it may: an empty, `.` or `..` segment, or a
 * control character. One rule for object keys (checkKey) and S3 URL prefixes (parseS3Url). S3 itself accepts
 * such keys (AWS, "Naming Amazon S3 objects", object-keys.html: any UTF-8, though some characters "might require
 * special handling"), but HTTP clients, proxies and servers remove dot segments from request paths (RFC 3986
 * section 5.2.4; s3rver and fake-s3 do, jubos/fake-s3#251), and collapse or keep `//` as they like, so a request
 * for such a key may reach another key, or with a leading `..` another bucket (path-style `/bucket/key`).
 */
export function pathProblem(path: string): string | undefined {
  if (/[\u0000-\u001f\u007f]/.test(path)) return 'control characters are not allowed';
  const bad = path.split('/').find((part) => part === '' || part === '.' || part === '..');
  if (bad === undefined) return undefined;
  return bad === '' ? 'segments may not be empty ("//" or a leading "/")' : `segments may not be "." or ".."`;
}

/**
 * Rejects keys that are empty, absolute, or contain `.`/`..`/empty segments (pathProblem), backslashes or control
 * characters. Throws ConfigError naming the key.
 */
export function checkKey(key: string): string {
  const problem =
    typeof key !== 'string' || key === ''
      ? 'a key is a non-empty string'
      : key.includes('\\')
        ? 'backslashes are not allowed'
        : pathProblem(key);
  if (problem) throw new ConfigError(`invalid object key ${JSON.stringify(key)}: ${problem}`);
  return key;
}

/** The bucket and key prefix an `s3://bucket/prefix` URL names; the prefix has no trailing `/`. */
export interface S3Location {
  bucket: string;
  prefix: string;
}

/**
 * Parses and validates an S3 store URL: a valid bucket name, and a prefix whose segments obey pathProblem
 * (trailing slashes are dropped). The one place that decides what an S3 URL may be: openStore calls it before
 * loading the SDK, and S3Store's constructor calls it again. Throws ConfigError naming the URL and the fix.
 */
export function parseS3Url(url: string): S3Location {
  const match = /^s3:\/\/([^/]*)\/?(.*)$/is.exec(url);
  if (!match || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(match[1]!)) {
    throw new ConfigError(`invalid S3 URL ${url}: expected s3://bucket/prefix with a valid bucket name`);
  }
  const prefix = match[2]!.replace(/\/+$/, '');
  const problem = prefix ? pathProblem(prefix) : undefined;
  if (problem) {
    throw new ConfigError(
      `invalid S3 URL ${url}: prefix ${problem}, since HTTP clients and servers rewrite such paths; ` +
        `write the prefix as plain names with one "/" between them, e.g. s3://${match[1]}/datasets/web-v1`,
    );
  }
  return { bucket: match[1]!, prefix };
}

/**
 * The absolute folder a local store location names: a `file:` URL or a path (relative to the working directory).
 * Throws ConfigError for a `file:` URL that names no local path (`file://host/x`).
 */
export function localRoot(location: string): string {
  if (!/^file:/i.test(location)) return resolve(location);
  try {
    return resolve(fileURLToPath(location));
  } catch (err) {
    throw new ConfigError(`invalid file URL ${location}: ${(err as Error).message}`);
  }
}

/** Validates an inclusive byte range. */
export function checkRange(start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new ConfigError(`invalid byte range ${start}-${end}`);
  }
}

/** Joins a prefix and a relative key with exactly one `/`. */
export function joinKey(prefix: string, key: string): string {
  if (!prefix) return key;
  return prefix.endsWith('/') ? prefix + key : `${prefix}/${key}`;
}
