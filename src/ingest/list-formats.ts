/**
 * The list formats, each read into the same items: its header (column names) when it has one, then one item
 * per row, a fault in place of each row it cannot read. Text goes through list-text.ts, so every format
 * treats byte order marks, line ends and invalid text alike.
 */
import {
  asyncBufferFromFile,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
  type AsyncBuffer,
} from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { ConfigError } from '../errors.js';
import { csvRecords } from './list-csv.js';
import { readLines, type LineFault } from './list-text.js';

export type Format = 'txt' | 'csv' | 'tsv' | 'jsonl' | 'parquet';

export type ListItem =
  | { kind: 'header'; columns: string[] }
  | { kind: 'row'; cells: Record<string, unknown> }
  | { kind: 'fault'; fault: LineFault['fault'] };

/** Most columns a list may have; each becomes a shard column. */
export const MAX_COLUMNS = 1024;

/** Most rows one parquet row group may claim; more means a corrupt footer, not a list. */
const MAX_GROUP_ROWS = 100_000_000;

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
      return readParquet(file);
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

/**
 * The Parquet codecs a list may use: hyparquet's own (UNCOMPRESSED, SNAPPY) and hyparquet-compressors' (GZIP,
 * BROTLI, ZSTD, LZ4, LZ4_RAW), all pure JS or bundled wasm. LZO has no maintained decoder.
 */
export const PARQUET_CODECS: readonly string[] = ['UNCOMPRESSED', 'SNAPPY', ...Object.keys(compressors)];

/**
 * Row group by row group. Parquet has no per-row read fault: a page holds many rows, and the footer, schema,
 * codecs and pages belong to the file. So anything that stops a group from decoding (an unknown codec, a
 * corrupt footer or page, a group with fewer rows than it claims) is a ConfigError naming the file and the
 * cause, never `bad_row`s: those are final, and the file may be fixed and the job rerun. Planning reads every
 * row before any unit is committed, so such a file commits nothing. Cell values a row cannot use (a URL that
 * is not text) are judged by the caller, row by row. A 0-byte file is an empty list, as a 0-byte text list is.
 */
async function* readParquet(file: string): AsyncIterable<ListItem> {
  let buffer, metadata, columns;
  try {
    buffer = await asyncBufferFromFile(file);
    if (buffer.byteLength === 0) return;
    const fault = await parquetFrameFault(buffer);
    if (fault) throw new ConfigError(`cannot read parquet URL list ${file}: ${fault}`);
    metadata = await parquetMetadataAsync(buffer);
    columns = parquetSchema(metadata).children.map((c) => c.element.name);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`cannot read parquet URL list ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (columns.length > MAX_COLUMNS)
    throw new ConfigError(`URL list ${file} has ${columns.length} columns; at most ${MAX_COLUMNS}`);
  for (const group of metadata.row_groups) {
    for (const { meta_data } of group.columns) {
      if (meta_data && !PARQUET_CODECS.includes(meta_data.codec))
        throw new ConfigError(
          `parquet URL list ${file} is compressed with ${meta_data.codec ?? 'an unknown codec'}, which cannot be ` +
            `read; write it with one of ${PARQUET_CODECS.join(', ')}`,
        );
    }
  }
  yield { kind: 'header', columns };
  let rowStart = 0;
  for (const [g, group] of metadata.row_groups.entries()) {
    const rowEnd = rowStart + Number(group.num_rows);
    if (!Number.isSafeInteger(rowEnd) || rowEnd < rowStart || rowEnd - rowStart > MAX_GROUP_ROWS) {
      throw new ConfigError(`parquet URL list ${file} is corrupt: a row group claims ${group.num_rows} rows`);
    }
    const where = `row group ${g} (rows ${rowStart} to ${rowEnd - 1}) of parquet URL list ${file}`;
    let rows: Array<Record<string, unknown>>;
    try {
      rows = (await parquetReadObjects({ file: buffer, metadata, rowStart, rowEnd, compressors })) as typeof rows;
    } catch (err) {
      if (isSystemError(err)) throw err; // EIO and the like: the disk, not the list
      throw new ConfigError(`cannot decode ${where}: ${(err as Error).message}`, { cause: err });
    }
    if (rows.length !== rowEnd - rowStart) throw new ConfigError(`${where} is corrupt: it holds ${rows.length} rows`);
    for (const cells of rows) yield { kind: 'row', cells };
    rowStart = rowEnd;
  }
}

/** The fewest bytes a Parquet file has: `PAR1`, then its footer's length (4 bytes) and `PAR1` again. */
const PARQUET_MIN_BYTES = 12;

/**
 * What is wrong with a file's Parquet framing (the format's file layout: `PAR1`, column chunks, footer, footer
 * length as 4 bytes little-endian, `PAR1`), or null; said plainly, where hyparquet would fail inside its parser.
 */
async function parquetFrameFault(buffer: AsyncBuffer): Promise<string | null> {
  const size = buffer.byteLength;
  if (size < PARQUET_MIN_BYTES) return `not a Parquet file: ${size} bytes, too short for its footer`;
  const head = Buffer.from(await buffer.slice(0, 4));
  const tail = Buffer.from(await buffer.slice(size - 8, size));
  if (head.toString('latin1') !== 'PAR1') return 'not a Parquet file: it does not begin with PAR1';
  if (tail.toString('latin1', 4) !== 'PAR1') return 'not a whole Parquet file: it does not end with PAR1 (cut short?)';
  const footer = tail.readUInt32LE(0);
  if (footer === 0 || footer > size - PARQUET_MIN_BYTES)
    return `corrupt Parquet footer: it claims ${footer} bytes in a file of ${size}`;
  return null;
}

/** An error from the system (a failed read: EIO, ENOENT), not from the bytes of the file. */
function isSystemError(err: unknown): boolean {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}
