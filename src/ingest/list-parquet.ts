/**
 * Parquet URL lists, read row group by row group with hyparquet. Parquet has no per-row read fault: a page holds
 * many rows, and the footer, schema, codecs and pages belong to the file. So anything that stops a group from
 * decoding (an unknown codec, a corrupt footer or page, counts that disagree) is a ConfigError naming the file
 * and saying what is wrong in Parquet terms, with the decoder's own words as its cause, never `bad_row`s: those
 * are final, and the file may be fixed and the job rerun. Planning reads every row before any unit is committed,
 * so such a file commits nothing. Cell values a row cannot use (a URL that is not text) are judged by the
 * caller, row by row. A 0-byte file is an empty list, as a 0-byte text list is.
 *
 * Two things must stay true for a damaged file never to become an unhandled rejection (which ends the process):
 * - hyparquet starts a promise per column chunk, then plans the rest synchronously; a throw in that planning
 *   leaves the chunks already started unawaited. So the footer is checked first (`footerFault`: one chunk per
 *   schema column, byte ranges inside the file), and the bytes a read asks for are handed over only in a later
 *   macrotask (`gatedFile`), after the planning: a read that failed in it gets none, and so decodes nothing
 *   that could fail unawaited.
 * - hyparquet awaits only the first chunk of a column's path (`assembleAsync`): `footerFault` refuses a path
 *   named twice.
 */
import {
  asyncBufferFromFile,
  parquetMetadataAsync,
  parquetRead,
  parquetSchema,
  type AsyncBuffer,
  type ColumnData,
  type FileMetaData,
  type SchemaTree,
} from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { ConfigError } from '../errors.js';

/** A parquet list's items, as list-formats.ts's `ListItem`: its header, then its rows (it has no row faults). */
export type ParquetItem = { kind: 'header'; columns: string[] } | { kind: 'row'; cells: Record<string, unknown> };

/** Most rows one parquet row group may claim; more means a corrupt footer, not a list. */
const MAX_GROUP_ROWS = 100_000_000n;

/**
 * The Parquet codecs a list may use: hyparquet's own (UNCOMPRESSED, SNAPPY) and hyparquet-compressors' (GZIP,
 * BROTLI, ZSTD, LZ4, LZ4_RAW; SNAPPY again, as wasm), all pure JS or bundled wasm. LZO has no maintained decoder.
 */
export const PARQUET_CODECS: readonly string[] = [...new Set(['UNCOMPRESSED', 'SNAPPY', ...Object.keys(compressors)])];

/** The rows of a parquet list: its header (top-level column names, at most `maxColumns`), then its rows. */
export async function* readParquet(file: string, maxColumns: number): AsyncIterable<ParquetItem> {
  const refuse = (what: string, cause?: unknown) =>
    new ConfigError(`cannot read parquet URL list ${file}: ${what}`, cause === undefined ? {} : { cause });
  let buffer: AsyncBuffer, metadata: FileMetaData, schema: SchemaTree;
  try {
    buffer = await asyncBufferFromFile(file);
    if (buffer.byteLength === 0) return;
    const frame = await parquetFrameFault(buffer);
    if (frame) throw refuse(frame);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw refuse((err as Error).message, err);
  }
  try {
    metadata = await parquetMetadataAsync(buffer);
    schema = parquetSchema(metadata);
  } catch (err) {
    if (isSystemError(err)) throw err; // EIO and the like: the disk, not the list
    throw refuse(`corrupt Parquet footer (its metadata does not parse): ${(err as Error).message}`, err);
  }
  const columns = schema.children.map((c) => c.element.name);
  if (columns.length > maxColumns)
    throw new ConfigError(`URL list ${file} has ${columns.length} columns; at most ${maxColumns}`);
  const footer = footerFault(metadata, schema, buffer.byteLength - 8 - (metadata.metadata_length ?? 0));
  if (footer) throw refuse(`corrupt Parquet footer: ${footer}`);
  for (const { meta_data } of metadata.row_groups.flatMap((g) => g.columns)) {
    if (!PARQUET_CODECS.includes(meta_data!.codec))
      throw new ConfigError(
        `parquet URL list ${file} is compressed with ${meta_data!.codec ?? 'an unknown codec'}, which cannot be ` +
          `read; write it with one of ${PARQUET_CODECS.join(', ')}`,
      );
  }
  yield { kind: 'header', columns };
  let rowStart = 0;
  for (const [g, group] of metadata.row_groups.entries()) {
    const rowEnd = rowStart + Number(group.num_rows);
    const rows: Array<Record<string, unknown>> = Array.from({ length: rowEnd - rowStart }, () => ({}));
    // Column by column, so that a corrupt page is named by its column.
    for (const column of columns) {
      const where = `row group ${g} (rows ${rowStart} to ${rowEnd - 1}), column "${column}"`;
      const values = await readColumn(buffer, metadata, column, rowStart, rowEnd).catch((err: unknown) => {
        if (isSystemError(err)) throw err;
        throw refuse(`corrupt page in ${where}: ${(err as Error).message}`, err);
      });
      if (values.length !== rows.length)
        throw refuse(`corrupt page in ${where}: it holds ${values.length} of the group's ${rows.length} rows`);
      // Own properties, as hyparquet makes them: a column named __proto__ is a cell, not a prototype (defined,
      // where an assignment would set the prototype; plain assignment elsewhere, several times faster).
      if (column === '__proto__')
        for (const [i, cells] of rows.entries()) Object.defineProperty(cells, column, { ...CELL, value: values[i] });
      else for (const [i, cells] of rows.entries()) cells[column] = values[i];
    }
    for (const cells of rows) yield { kind: 'row', cells };
    rowStart = rowEnd;
  }
}

const CELL = { enumerable: true, writable: true, configurable: true } as const;

/** One top-level column of rows `[rowStart, rowEnd)` (one row group), read through `gatedFile`. */
async function readColumn(
  buffer: AsyncBuffer,
  metadata: FileMetaData,
  column: string,
  rowStart: number,
  rowEnd: number,
): Promise<unknown[]> {
  if (rowStart === rowEnd) return [];
  const gate = gatedFile(buffer);
  // Column chunks as they decode (onChunk), placed by their rows: no row object is made per row and column.
  const values = new Array<unknown>(rowEnd - rowStart);
  let filled = 0;
  const onChunk = (chunk: ColumnData) => {
    const from = chunk.rowStart - rowStart;
    for (let i = 0; i < chunk.columnData.length; i++) values[from + i] = chunk.columnData[i];
    filled += chunk.columnData.length;
  };
  try {
    await parquetRead({ file: gate.file, metadata, columns: [column], rowStart, rowEnd, compressors, onChunk });
    return filled === values.length ? values : values.slice(0, filled);
  } catch (err) {
    gate.close();
    throw err;
  }
}

/**
 * `file` for one read, its slices handed over only in a later macrotask: hyparquet's synchronous planning (the
 * module comment) is over by then, and once `close` is called (the read failed) no slice is ever handed over,
 * so no column decode starts that nobody awaits. A slice outside the file is refused here, as a rejection.
 */
function gatedFile(file: AsyncBuffer): { file: AsyncBuffer; close(): void } {
  let closed = false;
  const size = file.byteLength;
  const slice = (start: number, end = size): Promise<ArrayBuffer> =>
    new Promise((resolve, reject) => {
      setImmediate(() => {
        if (closed) return; // never settles: what waits on it has failed already
        if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && 0 <= start && start <= end && end <= size))
          return reject(new Error(`a read of bytes ${start} to ${end} lies outside the file (${size} bytes)`));
        Promise.resolve()
          .then(() => file.slice(start, end))
          .then(resolve, reject);
      });
    });
  return { file: { byteLength: size, slice }, close: () => void (closed = true) };
}

/**
 * What makes a footer that parsed unreadable or untrue, or null: each row group must hold one column chunk per
 * schema column (leaf), stored in this file within its column data (`dataEnd`: where the footer starts), whose
 * value count matches the group's rows (equal for a flat column, at least as many for a repeated one), and the
 * groups' rows must add up to the file's. Counts that disagree would drop or invent rows.
 */
function footerFault(metadata: FileMetaData, schema: SchemaTree, dataEnd: number): string | null {
  const leaves = new Map<string, boolean>(); // path -> repeated
  const walk = (node: SchemaTree, repeated: boolean): void => {
    const rep = repeated || node.element.repetition_type === 'REPEATED';
    if (node.children.length === 0) leaves.set(node.path.join('.'), rep);
    for (const child of node.children) walk(child, rep);
  };
  for (const child of schema.children) walk(child, false);
  if (!Array.isArray(metadata.row_groups)) return 'it lists no row groups';
  let total = 0n;
  for (const [g, group] of metadata.row_groups.entries()) {
    const rows: unknown = group?.num_rows;
    if (typeof rows !== 'bigint') return `row group ${g} has no row count`;
    if (rows < 0n || rows > MAX_GROUP_ROWS) return `row group ${g} claims ${rows} rows (at most ${MAX_GROUP_ROWS})`;
    total += rows;
    const chunks: unknown = group.columns;
    if (!Array.isArray(chunks) || chunks.length !== leaves.size)
      return `row group ${g} has ${Array.isArray(chunks) ? chunks.length : 'no'} column chunks for ${leaves.size} columns`;
    const seen = new Set<string>();
    for (const [c, chunk] of group.columns.entries()) {
      const meta = chunk?.meta_data;
      if (!meta) return `column chunk ${c} of row group ${g} has no metadata`;
      const path = Array.isArray(meta.path_in_schema) ? meta.path_in_schema.join('.') : '';
      const at = `row group ${g}, column "${path}"`;
      if (!leaves.has(path)) return `column chunk ${c} of row group ${g} names a column "${path}" the schema lacks`;
      if (seen.has(path)) return `${at} has two column chunks`;
      seen.add(path);
      if (chunk.file_path) return `${at} is stored in another file (${String(chunk.file_path)})`;
      const values: unknown = meta.num_values;
      if (typeof values !== 'bigint') return `${at} has no value count`;
      if (leaves.get(path) ? values < rows : values !== rows)
        return `row group ${g} claims ${rows} rows, but its column "${path}" holds ${values} values`;
      const start: unknown = meta.dictionary_page_offset || meta.data_page_offset;
      const length: unknown = meta.total_compressed_size;
      if (typeof start !== 'bigint' || typeof length !== 'bigint') return `${at} has no byte range`;
      if (start < 4n || length < 0n || start + length > dataEnd)
        return `${at} claims bytes ${start} to ${start + length}, outside the column data (bytes 4 to ${dataEnd})`;
    }
  }
  const claimed: unknown = metadata.num_rows;
  if (claimed !== total)
    return `the file claims ${typeof claimed === 'bigint' ? claimed : 'no'} rows, its row groups ${total}`;
  return null;
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
