/**
 * The one retry and timeout policy every remote store request goes through: a bounded number of attempts,
 * exponential backoff with full jitter between them (the AWS Architecture Blog's "full jitter"), an idle timeout
 * on every byte stream and an overall deadline per attempt.
 *
 * What must stay true: a request's response body is read *inside* the retried function, so a reset, a truncated
 * body or a stall after the headers arrived is retried like a 503 (the SDK's own retry ends when headers arrive).
 * Transient faults (network errors, timeouts, 429/500/502/503/504, SlowDown, short bodies) are retried; answers
 * (403, 404, a bad request, our own typed errors) never are. When the attempts run out the caller gets a
 * StoreUnavailableError naming the object and the last cause.
 */
import { Readable } from 'node:stream';
import { ConfigError, StoreUnavailableError, WildstreamError } from '../errors.js';
import type { StoreOptions } from './store-contract.js';

export interface RetryPolicy {
  /** Attempts per request, the first included. */
  attempts: number;
  /** Backoff before retry n is uniform in [0, min(maxDelayMs, baseDelayMs * 2^(n-1))]. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** An attempt fails when no byte moves for this long (waiting for headers, or mid-body). */
  idleTimeoutMs: number;
  /** An attempt fails when it takes longer than this in all (request, headers and a buffered body). */
  attemptTimeoutMs: number;
  /** An attempt fails when the connection is not established within this. */
  connectTimeoutMs: number;
}

/** The defaults of StoreOptions' retry settings; documented there. */
export const RETRY_DEFAULTS: Readonly<RetryPolicy> = {
  attempts: 8,
  baseDelayMs: 100,
  maxDelayMs: 5_000,
  idleTimeoutMs: 30_000,
  attemptTimeoutMs: 120_000,
  connectTimeoutMs: 5_000,
};

/** The most attempts AWS_MAX_ATTEMPTS may ask for: the bound of `--store-attempts`, which it stands for. */
const ENV_MAX_ATTEMPTS = 100;

/**
 * Attempts from AWS_MAX_ATTEMPTS, or undefined when unset. Checked here, naming the variable: a bad value was
 * reported as `maxAttempts ... got null`, an option the user never set, and 1e9 retried a dead store for days.
 */
function envAttempts(): number | undefined {
  const env = process.env.AWS_MAX_ATTEMPTS;
  if (env === undefined || env.trim() === '') return undefined;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 1 || n > ENV_MAX_ATTEMPTS) {
    throw new ConfigError(
      `AWS_MAX_ATTEMPTS must be an integer from 1 to ${ENV_MAX_ATTEMPTS} (attempts per storage request, as --store-attempts), got ${JSON.stringify(env)}`,
    );
  }
  return n;
}

/** Resolves and validates the retry settings of StoreOptions (bad values are ConfigErrors naming the option). */
export function retryPolicy(options: StoreOptions = {}): RetryPolicy {
  const attempts = options.maxAttempts ?? envAttempts() ?? RETRY_DEFAULTS.attempts;
  const policy: RetryPolicy = {
    attempts,
    baseDelayMs: options.retryBaseDelayMs ?? RETRY_DEFAULTS.baseDelayMs,
    maxDelayMs: options.retryMaxDelayMs ?? RETRY_DEFAULTS.maxDelayMs,
    idleTimeoutMs: options.requestTimeoutMs ?? RETRY_DEFAULTS.idleTimeoutMs,
    attemptTimeoutMs: options.attemptTimeoutMs ?? RETRY_DEFAULTS.attemptTimeoutMs,
    connectTimeoutMs: options.connectTimeoutMs ?? RETRY_DEFAULTS.connectTimeoutMs,
  };
  const check = (name: string, value: number, min: number) => {
    if (!Number.isFinite(value) || value < min) {
      throw new ConfigError(`store option ${name} must be a number >= ${min}, got ${JSON.stringify(value)}`);
    }
  };
  if (!Number.isSafeInteger(policy.attempts) || policy.attempts < 1) {
    throw new ConfigError(`store option maxAttempts must be an integer >= 1, got ${JSON.stringify(attempts)}`);
  }
  check('retryBaseDelayMs', policy.baseDelayMs, 0);
  check('retryMaxDelayMs', policy.maxDelayMs, 0);
  check('requestTimeoutMs', policy.idleTimeoutMs, 1);
  check('attemptTimeoutMs', policy.attemptTimeoutMs, 1);
  check('connectTimeoutMs', policy.connectTimeoutMs, 1);
  return policy;
}

/** A fault that another attempt may not meet: a stalled, cut or short response. Never leaves this module's callers. */
export class TransientError extends Error {
  constructor(
    message: string,
    readonly code: 'WS_IDLE_TIMEOUT' | 'WS_ATTEMPT_TIMEOUT' | 'WS_SHORT_BODY' | 'WS_BAD_RANGE',
  ) {
    super(message);
    this.name = 'TransientError';
  }
}

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const RETRY_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'RequestThrottled',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'TimeoutError',
]);
const RETRY_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'ERR_HTTP_ABORTED',
]);

interface ErrorShape {
  name?: string;
  code?: string;
  cause?: unknown;
  $metadata?: { httpStatusCode?: number };
}

/** True for faults another attempt may not meet; false for answers (403, 404, 400) and our own typed errors. */
export function isRetryable(err: unknown, depth = 0): boolean {
  if (err instanceof TransientError) return true;
  if (err instanceof WildstreamError || err === null || typeof err !== 'object' || depth > 4) return false;
  const e = err as ErrorShape;
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && status >= 300) return RETRY_STATUS.has(status);
  if (RETRY_NAMES.has(e.name ?? '') || RETRY_CODES.has(e.code ?? '')) return true;
  return e.cause !== undefined && isRetryable(e.cause, depth + 1);
}

/** One line for a cause: its code and first message line. */
export function describeCause(err: unknown): string {
  const e = (err ?? {}) as ErrorShape & { message?: string };
  const status = e.$metadata?.httpStatusCode;
  const head = [status && status >= 300 ? `HTTP ${status}` : '', e.code && !e.message?.includes(e.code) ? e.code : '']
    .filter(Boolean)
    .join(' ');
  const text = (e.message || e.name || String(err)).split('\n')[0]!;
  return head ? `${head} ${text}` : text;
}

/** Full-jitter backoff before retry number `retry` (1 for the first retry). */
export function backoffMs(policy: RetryPolicy, retry: number): number {
  return Math.random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(retry - 1, 30));
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** What an attempt gets: its abort signal (fires on the attempt deadline) and its number, from 1. */
export interface Attempt {
  signal: AbortSignal;
  number: number;
}

/**
 * Runs `fn` until it succeeds, fails with an answer (mapped by `mapError`), or has failed transiently
 * `policy.attempts` times (a StoreUnavailableError naming `where` and the last cause).
 */
export async function withRetry<T>(
  policy: RetryPolicy,
  where: string,
  fn: (attempt: Attempt) => Promise<T>,
  mapError: (err: unknown) => Error,
): Promise<T> {
  for (let number = 1; ; number++) {
    const controller = new AbortController();
    const timer = setTimeout(
      () =>
        controller.abort(new TransientError(`attempt took over ${policy.attemptTimeoutMs} ms`, 'WS_ATTEMPT_TIMEOUT')),
      policy.attemptTimeoutMs,
    );
    let failure: unknown;
    try {
      return await fn({ signal: controller.signal, number });
    } catch (err) {
      // An abort surfaces as the SDK's AbortError; the reason says why.
      failure = controller.signal.aborted ? controller.signal.reason : err;
    } finally {
      clearTimeout(timer);
    }
    if (!isRetryable(failure)) throw mapError(failure);
    if (number >= policy.attempts) throw gaveUp(where, number, failure);
    await sleep(backoffMs(policy, number));
  }
}

export function gaveUp(where: string, attempts: number, cause: unknown): StoreUnavailableError {
  const tries = attempts === 1 ? '1 attempt' : `${attempts} attempts`;
  return new StoreUnavailableError(`${where} failed after ${tries}: ${describeCause(cause)}`, { cause });
}

/**
 * Yields `body`'s chunks, failing with a TransientError (and destroying the body, which closes its socket) when
 * the next chunk takes over `idleMs` or `signal` aborts. The clock runs only while a chunk is awaited, so a slow
 * consumer is never mistaken for a stalled server.
 */
export async function* idleGuard(
  body: Readable | AsyncIterable<Uint8Array>,
  idleMs: number,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array> {
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
  const destroy = (err?: Error) => (body as Readable).destroy?.(err);
  let finished = false;
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      let onAbort: (() => void) | undefined;
      const stop = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new TransientError(`no bytes received for ${idleMs} ms`, 'WS_IDLE_TIMEOUT')),
          idleMs,
        );
        if (signal?.aborted) reject(signal.reason);
        onAbort = () => reject(signal!.reason);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
      let next: IteratorResult<Uint8Array>;
      try {
        next = await Promise.race([iterator.next(), stop]);
      } catch (err) {
        destroy(err as Error);
        throw err;
      } finally {
        clearTimeout(timer);
        if (onAbort) signal?.removeEventListener('abort', onAbort);
      }
      if (next.done) {
        finished = true;
        return;
      }
      yield next.value;
    }
  } finally {
    if (!finished) destroy();
  }
}

/**
 * Reads a whole response body under the idle timeout and checks its length against the `expected` one the
 * headers promised (Content-Length): a body cut short is a TransientError, so the request is retried.
 */
export async function readBody(
  body: Readable | AsyncIterable<Uint8Array>,
  expected: number | undefined,
  idleMs: number,
  signal?: AbortSignal,
): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  let received = 0;
  for await (const chunk of idleGuard(body, idleMs, signal)) {
    chunks.push(chunk);
    received += chunk.byteLength;
  }
  if (expected !== undefined && received !== expected) {
    throw new TransientError(`body ended after ${received} of ${expected} bytes`, 'WS_SHORT_BODY');
  }
  return Buffer.concat(chunks, received);
}
