/**
 * URL lists: `.txt` (one URL a line, `#` comments), `.csv`/`.tsv` with a header, `.jsonl`, `.parquet`, and
 * `.gz` of the text formats; several files or directories, read in sorted path order so that row indices,
 * and therefore units, are a deterministic function of the inputs.
 *
 * Rows are yielded as found; whether a URL is usable is decided per row by `checkUrl`, so junk lands in the
 * unit's failure histogram instead of stopping the job.
 */
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { parse as parseCsv } from 'csv-parse';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { ConfigError } from '../errors.js';
import { CORE_COLUMNS } from '../shards/schema.js';

export interface UrlRow {
  /** Position in the concatenated lists, from 0. */
  index: number;
  url: string;
  caption: string | null;
  /** A `source_page` column (the page an image was found on, as crawls write), else null. */
  sourcePage: string | null;
  /** Other columns of the list, kept as shard columns. */
  extra: Record<string, string | null>;
}

export interface UrlListOptions {
  /** Column holding the URL (csv, tsv, jsonl, parquet). @default "url" */
  urlCol?: string;
  /** Column holding the caption, if any. @default "caption" */
  captionCol?: string;
}

export const LIST_EXTENSIONS = ['.txt', '.csv', '.tsv', '.jsonl', '.parquet'];
/** Longest URL accepted; longer lines are junk. */
export const MAX_URL_LENGTH = 8192;

/** Expands directories into their list files, sorted; refuses files of unknown type. */
export async function listFiles(paths: readonly string[]): Promise<string[]> {
  if (paths.length === 0) throw new ConfigError('no URL list given');
  const files: string[] = [];
  for (const path of paths) {
    const info = await stat(path).catch(() => {
      throw new ConfigError(`URL list not found: ${path}`);
    });
    if (info.isDirectory()) {
      const names = (await readdir(path)).filter((n) => formatOf(n) !== null).sort();
      if (names.length === 0) throw new ConfigError(`no URL lists (${LIST_EXTENSIONS.join(', ')}[.gz]) in ${path}`);
      files.push(...names.map((n) => resolve(join(path, n))));
    } else if (formatOf(path) === null) {
      throw new ConfigError(`unknown URL list type: ${path}; expected ${LIST_EXTENSIONS.join(', ')} or .gz of the text ones`);
    } else {
      files.push(resolve(path));
    }
  }
  return files;
}

type Format = 'txt' | 'csv' | 'tsv' | 'jsonl' | 'parquet';

function formatOf(path: string): Format | null {
  const m = /\.(txt|csv|tsv|jsonl|parquet)(\.gz)?$/i.exec(path);
  if (!m || (m[2] && m[1]!.toLowerCase() === 'parquet')) return null;
  return m[1]!.toLowerCase() as Format;
}

/** Why a URL cannot be fetched, or null if it is a plausible http(s) URL. */
export function checkUrl(url: string): string | null {
  if (url.length > MAX_URL_LENGTH) return 'url_too_long';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'url_invalid';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'url_scheme';
  if (!parsed.hostname) return 'url_invalid';
  return null;
}

/** Extra column names a set of lists will produce, from their headers (first row for jsonl/parquet). */
export async function extraColumnsOf(files: readonly string[], options: UrlListOptions = {}): Promise<string[]> {
  const names = new Set<string>();
  for (const file of files) {
    for await (const row of readOne(file, options, 0, true)) for (const k of Object.keys(row.extra)) names.add(k);
  }
  return [...names];
}

/** Every row of every list, with a global index. */
export async function* readUrlLists(files: readonly string[], options: UrlListOptions = {}): AsyncIterable<UrlRow> {
  let index = 0;
  for (const file of files) {
    for await (const row of readOne(file, options, index, false)) {
      yield row;
      index = row.index + 1;
    }
  }
}

async function* readOne(file: string, options: UrlListOptions, first: number, headerOnly: boolean): AsyncIterable<UrlRow> {
  const format = formatOf(file)!;
  const urlCol = options.urlCol ?? 'url';
  const captionCol = options.captionCol ?? 'caption';
  let index = first;
  if (format === 'txt') {
    if (headerOnly) return;
    for await (const line of createInterface({ input: open(file), crlfDelay: Infinity })) {
      const url = line.trim();
      if (url === '' || url.startsWith('#')) continue;
      yield { index: index++, url, caption: null, sourcePage: null, extra: {} };
    }
    return;
  }
  const objects = format === 'parquet' ? readParquet(file) : format === 'jsonl' ? readJsonl(file) : readCsv(file, format);
  let checked = false;
  for await (const object of objects) {
    if (JUNK in object) {
      yield { index: index++, url: '', caption: null, sourcePage: null, extra: {} };
      continue;
    }
    if (!checked) {
      if (!(urlCol in object)) {
        throw new ConfigError(`column "${urlCol}" not found in ${file}; columns: ${Object.keys(object).join(', ') || 'none'}`);
      }
      checked = true;
    }
    const extra: Record<string, string | null> = {};
    for (const [key, value] of Object.entries(object)) {
      if (key !== urlCol && key !== captionCol && key !== 'source_page') extra[columnName(key)] = value == null ? null : String(value);
    }
    yield { index: index++, url: String(object[urlCol] ?? ''), caption: str(object[captionCol]), sourcePage: str(object.source_page), extra };
    if (headerOnly) return;
  }
}

function str(value: unknown): string | null {
  return value == null || value === '' ? null : String(value);
}

/** A list column name made safe as a shard column (core names get an `extra_` prefix). */
export function columnName(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^([^A-Za-z_])/, '_$1').slice(0, 64) || '_';
  return CORE_COLUMNS.includes(safe) ? `extra_${safe}`.slice(0, 64) : safe;
}

function open(file: string): Readable {
  const stream = createReadStream(file);
  return file.toLowerCase().endsWith('.gz') ? stream.pipe(createGunzip()) : stream;
}

async function* readCsv(file: string, format: 'csv' | 'tsv'): AsyncIterable<Record<string, unknown>> {
  const parser = open(file).pipe(
    parseCsv({
      columns: true,
      delimiter: format === 'tsv' ? '\t' : ',',
      relax_column_count: true,
      relax_quotes: true,
      skip_empty_lines: true,
      bom: true,
      max_record_size: 1024 * 1024,
    }),
  );
  try {
    yield* parser as AsyncIterable<Record<string, unknown>>;
  } catch (err) {
    throw new ConfigError(`cannot parse ${file}: ${(err as Error).message}`);
  }
}

/** Marks a jsonl line that is not a JSON object. */
const JUNK = Symbol('junk');

async function* readJsonl(file: string): AsyncIterable<Record<string | symbol, unknown>> {
  let line = 0;
  for await (const text of createInterface({ input: open(file), crlfDelay: Infinity })) {
    line++;
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = null;
    }
    // A junk line still takes a row index, so it is counted as a failed URL rather than vanishing.
    yield value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : { [JUNK]: line };
  }
}

async function* readParquet(file: string): AsyncIterable<Record<string, unknown>> {
  const buffer = await asyncBufferFromFile(file);
  const metadata = await parquetMetadataAsync(buffer);
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    yield* (await parquetReadObjects({ file: buffer, metadata, rowStart, rowEnd })) as Record<string, unknown>[];
    rowStart = rowEnd;
  }
}
