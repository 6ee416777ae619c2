/**
 * Every name a store holds below its prefix (dataset.ts describes the dataset's layout): the folders, the unit
 * files, the locks, a crawl's and a training run's objects, an exported model's files, the pipeline's stamps, the
 * record key, and the names a local store writes beside them (temp files, the staged shard). Made here and
 * nowhere else, so writers, readers, docs, tests and the up-front key length check (key-limits.ts, through
 * longestKeys) agree on one form.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

export const SHARDS_DIR = 'shards';
export const UNITS_DIR = 'units';
export const FAILURES_DIR = 'failures';
export const MANIFEST_KEY = 'dataset.json';
/** The lease of the job writing a dataset, and of the run writing a checkpoint store (run-lock.ts). */
export const INGEST_LOCK_KEY = 'ingest.lock';
/** Present while a queued job's units may still be committed by workers (ingest/dataset-lock.ts). */
export const QUEUE_MARK_KEY = 'queue.json';
export const TRAIN_LOCK_KEY = 'train.lock';

/** A unit's file stem: its number, zero-padded to 6 digits (more digits past 999999, so names stay unique). */
export function unitName(unit: number): string {
  return String(wholeNumber('unit', unit)).padStart(6, '0');
}

export function shardKey(unit: number): string {
  return `${SHARDS_DIR}/${unitName(unit)}.arrow`;
}

export function unitKey(unit: number): string {
  return `${UNITS_DIR}/${unitName(unit)}.json`;
}

export function failuresKey(unit: number): string {
  return `${FAILURES_DIR}/${unitName(unit)}.jsonl`;
}

/** A crawl's progress in its dataset (crawl/state.ts): its settings, its units, and the mark of its end. */
export const CRAWL_DIR = 'crawl';
export const CRAWL_CONFIG_KEY = `${CRAWL_DIR}/config.json`;
export const CRAWL_DONE_KEY = `${CRAWL_DIR}/done.json`;
export const CRAWL_UNITS_DIR = `${CRAWL_DIR}/units`;

export function crawlUnitKey(unit: number): string {
  return `${CRAWL_UNITS_DIR}/${unitName(unit)}.json`;
}

/** A training run's store (train/checkpoint.ts, train/metrics.ts): checkpoints and metric parts by step. */
export const CHECKPOINTS_DIR = 'checkpoints';
export const METRICS_DIR = 'metrics';

/** A step's file stem: `step-` and its number, zero-padded to 9 digits. */
export function stepName(step: number): string {
  return `step-${String(wholeNumber('step', step)).padStart(9, '0')}`;
}

export function checkpointKey(step: number): string {
  return `${CHECKPOINTS_DIR}/${stepName(step)}.ckpt`;
}

export function metricsKey(step: number): string {
  return `${METRICS_DIR}/${stepName(step)}.jsonl`;
}

/** A run that starts over moves its metric parts to `metrics/archive/<time>/`, the time it did so. */
export function metricsArchiveDir(started: Date): string {
  return `${METRICS_DIR}/archive/${started.toISOString().replace(/[:.]/g, '-')}/`;
}

export function metricsArchiveKey(started: Date, step: number): string {
  return `${metricsArchiveDir(started)}${stepName(step)}.jsonl`;
}

/** An exported model (train/export.ts): model.json, the commit point, names its weights file by their hash. */
export const MODEL_JSON_KEY = 'model.json';
/** The weights file an export is writing, until its model.json is: what the next export removes if it was cut short. */
export const EXPORT_PENDING_KEY = 'export-pending.json';

export function weightsKey(sha256Hex: string): string {
  return `weights-${sha256Hex.slice(0, 16)}.bin`;
}

/** A pipeline's stamp of a finished output stage, in the run's store (pipeline/finished.ts). */
export const STAMPS_DIR = 'pipeline';
export const STAMPED_STAGES = ['export', 'embed', 'report'] as const;
export type StampedStage = (typeof STAMPED_STAGES)[number];

export function stampKey(stage: StampedStage): string {
  return `${STAMPS_DIR}/${stage}.json`;
}

/**
 * The record key of the input at `position` (from 0) of `unit`'s inputs: `000012-00345` is
 * input 345 of unit 12. Unit numbers are unique in a dataset (appended jobs and retry passes take new ones)
 * and a unit's inputs are a pure function of the job, so the key is unique in the dataset and the same on
 * every rerun. Positions past 99999 take more digits. Datasets written before this form hold 12-digit row
 * indices (`000000000345`); no reader parses a key, so both forms read alike and never collide (no `-`).
 */
export function recordKey(unit: number, position: number): string {
  return `${unitName(unit)}-${String(wholeNumber('position', position)).padStart(5, '0')}`;
}

/** The record key form recordKey writes. */
export const RECORD_KEY = /^\d{6,}-\d{5,}$/;

/** The temp file a local put writes beside `path` and renames into place; `list` never shows one. */
export const TEMP_MARK = '.ws-tmp-';

export function tempName(path: string): string {
  return `${path}${TEMP_MARK}${randomBytes(6).toString('hex')}`;
}

/** A local dataset stages its shards inside itself (staging.ts), each process in its own folder. */
export const STAGING_DIR = '.staging';

/** A process's staging folder: its host (made safe for a file name) and pid. */
export function stagingFolderName(host: string, pid: number): string {
  return `${host.replace(/[^A-Za-z0-9.]/g, '_') || 'host'}-${pid}`;
}

/** The name of a shard file while it is staged (writer.ts). */
export function stagedShardName(): string {
  return `shard-${randomBytes(6).toString('hex')}.arrow`;
}

/**
 * The longest forms of every key a job writes below a store's prefix: each builder above called with the largest
 * value its arguments can take (unit and step numbers at Number.MAX_SAFE_INTEGER, the latest Date), so the
 * up-front check (key-limits.ts) reserves room for whatever these builders make, and follows when a name changes.
 * `local`: the paths a local store also writes below its root, the shard a dataset stages in itself; each key's
 * temp file the check adds itself (it applies to every put).
 */
export function longestKeys(local = false): string[] {
  const most = Number.MAX_SAFE_INTEGER;
  const latest = new Date(8.64e15);
  const keys = [
    MANIFEST_KEY,
    INGEST_LOCK_KEY,
    QUEUE_MARK_KEY,
    shardKey(most),
    unitKey(most),
    failuresKey(most),
    CRAWL_CONFIG_KEY,
    CRAWL_DONE_KEY,
    crawlUnitKey(most),
    TRAIN_LOCK_KEY,
    checkpointKey(most),
    metricsKey(most),
    metricsArchiveKey(latest, most),
    MODEL_JSON_KEY,
    weightsKey('f'.repeat(64)),
    ...STAMPED_STAGES.map(stampKey),
  ];
  if (local) keys.push(`${STAGING_DIR}/${stagingFolderName(hostname(), most)}/${stagedShardName()}`);
  return keys;
}

function wholeNumber(name: string, value: number): number {
  // A caller's bug, not a user's input: no stage computes a negative or fractional unit or position.
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number, got ${value}`);
  return value;
}
