/**
 * What an ingest job reads: rows with URLs, from URL list files or from another stage (a crawl's image
 * candidates). The planner (plan.ts) identifies a job by its source's parts and options, and cuts its rows
 * into units by index, so a source must give the same rows in the same order on every run.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { basename } from 'node:path';
import { extraColumnsOf, readUrlLists, type UrlListOptions, type UrlRow } from './url-list.js';

/** One part of a source as the manifest records it: a list file, or the list a stage produced. */
export interface SourcePart {
  name: string;
  bytes: number;
  sha256: string;
}

export interface IngestSource {
  /** The parts the job's fingerprint is made from (same parts, same job: a rerun resumes it). */
  parts(): Promise<SourcePart[]>;
  /** Every row, indexed from 0 in a fixed order; a row that cannot be ingested carries its reason in `bad`. */
  rows(): AsyncIterable<UrlRow>;
  /** Names of the extra columns the rows carry (shard columns). */
  extraColumns(): Promise<string[]>;
}

/** URL list files (already expanded by `listFiles`), read in the order given. */
export function listSource(files: readonly string[], options: UrlListOptions = {}): IngestSource {
  return {
    parts: async () => Promise.all(files.map(hashFile)),
    rows: () => readUrlLists(files, options),
    extraColumns: () => extraColumnsOf(files, options),
  };
}

async function hashFile(file: string): Promise<SourcePart> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { name: basename(file), bytes, sha256: hash.digest('hex') };
}

/** A part made from bytes a stage produced (hashed as a list file of those bytes would be). */
export function bytesPart(name: string, bytes: Uint8Array): SourcePart {
  return { name, bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
}
