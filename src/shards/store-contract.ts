/**
 * What a store backend implements (the Store interface and the options every store takes) and the key and range
 * rules every backend enforces. Backends import this module; `store.ts` re-exports it beside `openStore`, which
 * loads the backends, so no backend imports the module that loads it.
 */
import type { Readable } from 'node:stream';
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

/** Rejects keys that are empty, absolute, or contain `.`/`..`/empty segments or control characters. */
export function checkKey(key: string): string {
  const bad =
    typeof key !== 'string' ||
    key === '' ||
    key.startsWith('/') ||
    key.includes('\\') ||
    /[\u0000-\u001f]/.test(key) ||
    key.split('/').some((part) => part === '' || part === '.' || part === '..');
  if (bad) throw new ConfigError(`invalid object key ${JSON.stringify(key)}`);
  return key;
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
