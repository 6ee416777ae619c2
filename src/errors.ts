/**
 * Typed errors with a stable `code`, in the manner of undici's `lib/core/errors.js`.
 *
 * A failed *sample* (a 404, an undecodable image) is data and never becomes one of these; these are for
 * faults that stop a run: storage, configuration, corrupt datasets, programming errors. The CLI prints
 * `error.message` on one line and exits 1, so messages must be one line and name what went wrong.
 */
export class WildstreamError extends Error {
  readonly code: string = 'WS_ERR';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An option or config value is invalid. The CLI maps this to exit code 2. */
export class ConfigError extends WildstreamError {
  override readonly code: string = 'WS_ERR_CONFIG';
}

/**
 * A batch handed to train is malformed: a crop's data of another type than its `dtype` says, a ByteCrop's
 * mean or std that is not 3 finite numbers (std positive). A BatchSource's fault, not the run's settings.
 */
export class InvalidBatchError extends WildstreamError {
  override readonly code = 'WS_ERR_INVALID_BATCH';
}

/** A store URL names a scheme no store implements: a bad value, so also a ConfigError. */
export class UnsupportedStoreError extends ConfigError {
  override readonly code = 'WS_ERR_UNSUPPORTED_STORE';
}

/** The object (or local file) does not exist. */
export class NotFoundError extends WildstreamError {
  override readonly code = 'WS_ERR_NOT_FOUND';
}

/** The S3 bucket does not exist. */
export class BucketNotFoundError extends WildstreamError {
  override readonly code = 'WS_ERR_BUCKET_NOT_FOUND';
}

/** Credentials were refused or lack permission. */
export class AccessDeniedError extends WildstreamError {
  override readonly code = 'WS_ERR_ACCESS_DENIED';
}

/** The store could not be reached or kept failing after retries (connection refused, timeout, 5xx). */
export class StoreUnavailableError extends WildstreamError {
  override readonly code = 'WS_ERR_STORE_UNAVAILABLE';
}

/** Bytes that should be an Arrow IPC shard of ours are not (truncated, not Arrow, wrong schema). */
export class InvalidShardError extends WildstreamError {
  override readonly code = 'WS_ERR_INVALID_SHARD';
}

/**
 * A dataset from which no sample can ever come (no records, every shard unreadable, every image
 * undecodable): the message says what the dataset holds and why nothing of it is usable.
 */
export class NoDataError extends WildstreamError {
  override readonly code = 'WS_ERR_NO_DATA';
}

/** An error that carries the exit code the CLI should end with. */
export class ExitCodeError extends WildstreamError {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** A run stopped cleanly on a signal (state saved): the CLI exits 128 + the signal's number, as shells do. */
export class InterruptedError extends ExitCodeError {
  override readonly code = 'WS_ERR_INTERRUPTED';
}

/** One line, whatever the error: what the CLI prints before exiting. */
export function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s*\n\s*/g, ' ').trim() || 'unknown error';
}

/**
 * Refuses keys of `options` that are not in `known` (a misspelt key would otherwise be dropped without a word
 * and its default used), naming them and the `what`s there are: `unknown augment option "flip": the options
 * are ...`.
 */
export function refuseUnknownKeys(options: object, known: readonly string[], what: string): void {
  const unknown = Object.keys(options).filter((k) => !known.includes(k));
  if (unknown.length === 0) return;
  const names = unknown.map((k) => JSON.stringify(k)).join(', ');
  throw new ConfigError(
    `unknown ${what}${unknown.length === 1 ? '' : 's'} ${names}: the ${what.split(' ').pop()}s are ${known.join(', ')}`,
  );
}

/** Refuses options that are not an object (null, a number) with a ConfigError naming `what`. */
export function checkOptionsObject(options: unknown, what: string): void {
  if (options !== null && typeof options === 'object' && !Array.isArray(options)) return;
  throw new ConfigError(`${what} must be an object, got ${shown(options)}`);
}

/** A value as a message shows it: `NaN`, `"4"` (a string), `null`, `an object`. */
export function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'an array';
  if (v !== null && typeof v === 'object') return 'an object';
  if (typeof v === 'function') return 'a function';
  return String(v);
}
