/**
 * Why an input did not become a record, and the per-unit file that lists each failed URL.
 *
 *   <root>/failures/NNNNNN.jsonl   one JSON object per failed row of unit NNNNNN: {"row","url","reason","status"}
 *
 * JSON Lines rather than Arrow: the file is small, and every tool reads it without a library (`jq`, `grep`,
 * pandas `read_json(lines=True)`, DuckDB `read_json`, `pyarrow.json`). It is put before the unit's record,
 * which names it in `failures`, so a committed unit's failure file is always complete; a file without a
 * committed record (an interrupted run) is ignored and rewritten, as orphan shards are.
 */
import { InvalidShardError, NotFoundError } from '../errors.js';
import { failuresKey } from './keys.js';
import { getBytes, type Store } from './store.js';

export { FAILURES_DIR, failuresKey } from './keys.js';

/** The named reasons a row fails for; with `http_NNN` (the response status) they make `FailureReason`. */
export const NAMED_REASONS = [
  // the list row and its URL (url-list.ts and the list readers, fetch.ts)
  'bad_row',
  'row_too_long',
  'list_corrupt',
  'url_missing',
  'url_scheme',
  'url_invalid',
  'url_too_long',
  'url_encoding',
  // fetching (fetch.ts, body.ts)
  'blocked_address',
  'connection_error',
  'dns_error',
  'timeout',
  'body_error',
  'too_many_redirects',
  'redirect',
  'too_large',
  'robots_tag',
  'content_encoding_unsupported',
  'content_encoding_error',
  // decoding (decode.ts)
  'not_an_image',
  'svg_refused',
  'unsupported_format',
  'too_many_pixels',
  'decode_memory',
  'too_small',
  'aspect_ratio',
  'decode_error',
  // dedupe (ingest/dedupe.ts): a copy of an image a unit of a distributed job held uncommitted, until the
  // job's confirmation pass fetches it again (retry.ts)
  'duplicate_unconfirmed',
  // a bug or an unexpected library error while processing one row
  'internal_error',
] as const;

export type FailureReason = (typeof NAMED_REASONS)[number] | `http_${number}`;

/**
 * Failures by `FailureReason`, as a unit record and a summary count them. Writers count only typed reasons
 * (UnitWriter.fail); the keys stay plain strings when read, so a dataset from a newer version (with reasons
 * this one does not name) still reads.
 */
export type FailureCounts = Record<string, number>;

/** Adds `more`'s counts into `into`. */
export function addCounts(into: FailureCounts, more: Readonly<FailureCounts>): FailureCounts {
  for (const [reason, n] of Object.entries(more)) into[reason] = (into[reason] ?? 0) + n;
  return into;
}

export function isFailureReason(value: string): value is FailureReason {
  return /^http_\d{3}$/.test(value) || (NAMED_REASONS as readonly string[]).includes(value);
}

/** One failed row of a unit. */
export interface FailureRecord {
  /** The row's index in the job's concatenated URL lists (a retry pass finds the row again by it). */
  row: number;
  url: string;
  /** A `FailureReason`; reasons added by newer versions are kept as the strings they are. */
  reason: FailureReason | (string & {});
  /** The HTTP status for `http_NNN` reasons, else null. */
  status: number | null;
}

/** The HTTP status a reason carries (`http_404` -> 404), or null. */
export function httpStatusOf(reason: string): number | null {
  const m = /^http_(\d{3})$/.exec(reason);
  return m ? Number(m[1]) : null;
}

/** Puts a unit's failure file (before its record commits the unit) and returns its key; null when none failed. */
export async function writeFailures(
  store: Store,
  unit: number,
  failures: readonly FailureRecord[],
): Promise<string | null> {
  if (failures.length === 0) return null;
  const sorted = [...failures].sort((a, b) => a.row - b.row);
  const key = failuresKey(unit);
  await store.put(key, Buffer.from(sorted.map((f) => `${JSON.stringify(f)}\n`).join('')));
  return key;
}

/**
 * Reads a committed unit's failure file. A line that is not a failure record, or a file its unit record names
 * that is gone, is a corrupt dataset (InvalidShardError, saying how to repair it).
 */
export async function readFailures(store: Store, key: string): Promise<FailureRecord[]> {
  const bytes = await getBytes(store, key).catch((err: unknown) => {
    if (!(err instanceof NotFoundError)) throw err;
    const unit = /(\d+)\.jsonl$/.exec(key)?.[1];
    const redo = unit ? `delete units/${unit}.json and rerun the ingest without --retry-failed to redo that unit` : '';
    throw new InvalidShardError(`${store.url}/${key} is missing: a unit record lists its failed URLs there; ${redo}`);
  });
  const text = Buffer.from(bytes).toString('utf8');
  const out: FailureRecord[] = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    let value: FailureRecord;
    try {
      value = JSON.parse(line) as FailureRecord;
    } catch {
      throw new InvalidShardError(`${store.url}/${key}:${i + 1}: failure record is not valid JSON`);
    }
    if (!Number.isSafeInteger(value?.row) || typeof value.url !== 'string' || typeof value.reason !== 'string') {
      throw new InvalidShardError(`${store.url}/${key}:${i + 1}: failure record lacks row/url/reason`);
    }
    out.push(value);
  }
  return out;
}
