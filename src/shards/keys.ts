/**
 * Every name the dataset layout gives (dataset.ts describes the layout): the folders, the unit files, and the
 * record key. Made here and nowhere else, so writers, readers, docs and tests agree on one form.
 */
export const SHARDS_DIR = 'shards';
export const UNITS_DIR = 'units';
export const FAILURES_DIR = 'failures';
export const MANIFEST_KEY = 'dataset.json';

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

/**
 * The key of the record made from the input at `position` (from 0) of `unit`'s inputs: `000012-00345` is
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

function wholeNumber(name: string, value: number): number {
  // A caller's bug, not a user's input: no stage computes a negative or fractional unit or position.
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number, got ${value}`);
  return value;
}
