/**
 * Checks of what an S3-compatible server answers, before its bytes or keys are trusted. A gateway, cache or
 * server bug can answer a ranged GET with another window of the object than asked (RFC 9110 §14.4: a 206's
 * Content-Range says which) or a listing that repeats itself; taking such an answer as it is would hand the
 * reader shifted bytes (a shard reported corrupt, a model loaded wrong) or list forever. Each is a fault of
 * that one answer, so it is a TransientError: retried like a cut body, and reported if it persists.
 */
import { StoreUnavailableError } from '../errors.js';
import { TransientError } from './retry.js';

/** Where a GET's body lies in the object. */
export interface ServedWindow {
  /** The object's byte the body starts at. */
  from: number;
  /** The object's size when the answer says it (a 206's Content-Range total, or a 200's whole body). */
  size?: number;
}

/** What a GetObject answer carries that places its body (the SDK's output fields). */
export interface GetAnswer {
  ContentRange?: string;
  $metadata: { httpStatusCode?: number };
}

/**
 * Where the body of `answer` lies: a 206 by its Content-Range (`bytes a-b/size`, size `*` when unknown), a
 * 200 is the whole object from byte 0 (servers may ignore a Range). A 206 without a readable Content-Range
 * cannot be placed: a TransientError.
 */
export function servedWindow(answer: GetAnswer, bodyBytes: number): ServedWindow {
  const range = answer.ContentRange;
  if (range === undefined && answer.$metadata.httpStatusCode !== 206) return { from: 0, size: bodyBytes };
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(range?.trim() ?? '');
  if (!m || Number(m[2]) < Number(m[1]))
    throw new TransientError(
      `partial answer with no usable Content-Range (${JSON.stringify(range ?? null)})`,
      'WS_BAD_RANGE',
    );
  return { from: Number(m[1]), ...(m[3] === '*' ? {} : { size: Number(m[3]) }) };
}

/**
 * The bytes `start`..`end` (inclusive) out of a GET answer's body placed at `served`. An answer that starts
 * after `start`, or stops before `end` although the object goes on (or its size is unknown), is a
 * TransientError; `null` when the object truly ends before `end` (its size is known and at most `end`).
 */
export function sliceServed(body: Uint8Array, served: ServedWindow, start: number, end: number): Uint8Array | null {
  if (served.from > start)
    throw new TransientError(`answer starts at byte ${served.from}, not at the ${start} asked for`, 'WS_BAD_RANGE');
  const offset = start - served.from;
  const bytes = body.subarray(offset, offset + end - start + 1);
  if (bytes.byteLength === end - start + 1) return bytes;
  if (served.size !== undefined && served.size <= end && served.from + body.byteLength >= served.size) return null;
  throw new TransientError(
    `answer holds bytes ${served.from}-${served.from + body.byteLength - 1}, short of the ${start}-${end} asked for`,
    'WS_BAD_RANGE',
  );
}

/**
 * Guards a ListObjectsV2 walk: S3 never sends a continuation token twice nor a key twice, so a page that
 * does is a server fault. A repeated token would list forever (botocore's paginators stop on it, with
 * "The same next token was received twice"), and a repeated key would count its unit or shard twice. Keys
 * already seen are dropped. A repeated token ends the walk in a StoreUnavailableError, and so do more pages of
 * keys all seen before than pages that brought new ones (a walk going round under new tokens; a server that
 * starts over once passes). Empty pages count as neither: S3 sends them where deleted versions fill a page.
 */
export class ListingGuard {
  private readonly tokens = new Set<string>();
  private readonly keys = new Set<string>();
  private freshPages = 0;
  private stalePages = 0;
  constructor(private readonly where: string) {}

  /** The keys of one page not listed before. */
  page(keys: readonly string[]): string[] {
    const fresh = keys.filter((key) => !this.keys.has(key));
    if (fresh.length > 0) this.freshPages++;
    else if (keys.length > 0 && ++this.stalePages > this.freshPages) this.fault('pages of keys it had listed already');
    for (const key of fresh) this.keys.add(key);
    return fresh;
  }

  /** The token to ask for the next page with, refused when the server sent it before. */
  next(token: string): string {
    if (this.tokens.has(token)) this.fault('the same continuation token twice');
    this.tokens.add(token);
    return token;
  }

  private fault(what: string): never {
    throw new StoreUnavailableError(
      `listing ${this.where} failed: the server sent ${what} (a server fault; listing on would never end)`,
    );
  }
}
