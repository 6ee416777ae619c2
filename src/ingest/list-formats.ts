/**
 * The list formats, each read into the same items: its header (column names) when it has one, then one item
 * per row, a fault in place of each row it cannot read. Text goes through list-text.ts, so every format
 * treats byte order marks, line ends and invalid text alike.
 */
import { ConfigError } from '../errors.js';
import { csvRecords } from './list-csv.js';
import { readParquet } from './list-parquet.js';
import { readLines, type LineFault } from './list-text.js';

export { PARQUET_CODECS } from './list-parquet.js';

export type Format = 'txt' | 'csv' | 'tsv' | 'jsonl' | 'parquet';

export type ListItem =
  | { kind: 'header'; columns: string[] }
  | { kind: 'row'; cells: Record<string, unknown> }
  | { kind: 'fault'; fault: LineFault['fault'] };

/** Most columns a list may have; each becomes a shard column. */
export const MAX_COLUMNS = 1024;

export function formatOf(path: string): Format | null {
  const m = /\.(txt|csv|tsv|jsonl|parquet)(\.gz)?$/i.exec(path);
  if (!m || (m[2] && m[1]!.toLowerCase() === 'parquet')) return null;
  return m[1]!.toLowerCase() as Format;
}

/** The items of one list file; txt rows have the single column `url`. */
export function readList(file: string, format: Format): AsyncIterable<ListItem> {
  switch (format) {
    case 'txt':
      return readTxt(file);
    case 'csv':
      return readTable(file, csvRecords(readLines(file)));
    case 'tsv':
      return readTable(file, tsvRecords(file));
    case 'jsonl':
      return readJsonl(file);
    case 'parquet':
      return readParquet(file, MAX_COLUMNS); // list-parquet.ts
  }
}

const fault = (f: LineFault): ListItem => ({ kind: 'fault', fault: f.fault });

/** One URL a line; blank lines and `#` comments are no row. */
async function* readTxt(file: string): AsyncIterable<ListItem> {
  for await (const line of readLines(file)) {
    if (typeof line !== 'string') {
      yield fault(line);
      continue;
    }
    const url = line.trim();
    if (url !== '' && !url.startsWith('#')) yield { kind: 'row', cells: { url } };
  }
}

/** TSV as IANA's text/tab-separated-values defines it: no quoting, a field ends at a tab or the line end. */
async function* tsvRecords(file: string): AsyncIterable<string[] | LineFault> {
  for await (const line of readLines(file)) {
    if (typeof line !== 'string') yield line;
    else if (line !== '') yield line.split('\t');
  }
}

/** A header record, then rows keyed by it; a short record's missing fields are null, extra fields dropped. */
async function* readTable(file: string, records: AsyncIterable<string[] | LineFault>): AsyncIterable<ListItem> {
  let columns: string[] | null = null;
  for await (const record of records) {
    if (!columns) {
      if (!Array.isArray(record)) throw new ConfigError(`cannot read the header of URL list ${file} (${record.fault})`);
      if (record.length > MAX_COLUMNS)
        throw new ConfigError(`URL list ${file} has ${record.length} columns; at most ${MAX_COLUMNS}`);
      columns = uniqueNames(record);
      yield { kind: 'header', columns };
    } else if (!Array.isArray(record)) {
      yield fault(record);
    } else {
      // fromEntries defines each cell as its own property: a column named __proto__ is a cell, not a prototype.
      const header = columns;
      yield { kind: 'row', cells: Object.fromEntries(header.map((name, i) => [name, record[i] ?? null])) };
    }
  }
}

/**
 * Header names made unique in order, so that no column's cells overwrite another's: a repeated name gets the
 * first free suffix (`x, x` -> `x, x_2`), as a repeated CSV header means two columns, not one.
 */
export function uniqueNames(names: readonly string[]): string[] {
  const taken = new Set<string>();
  return names.map((name) => {
    let unique = name;
    for (let n = 2; taken.has(unique); n++) unique = `${name}_${n}`;
    taken.add(unique);
    return unique;
  });
}

/** One JSON object a line; any other line (bad JSON, an array, a number) is a `bad_row`. */
async function* readJsonl(file: string): AsyncIterable<ListItem> {
  for await (const line of readLines(file, 'lf')) {
    if (typeof line !== 'string') {
      yield fault(line);
      continue;
    }
    if (line.trim() === '') continue;
    let value: unknown = null;
    try {
      value = JSON.parse(line);
    } catch {
      // not JSON: a bad row below
    }
    if (value && typeof value === 'object' && !Array.isArray(value))
      yield { kind: 'row', cells: value as Record<string, unknown> };
    else yield { kind: 'fault', fault: 'bad_row' };
  }
}
