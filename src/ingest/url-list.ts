/**
 * URL lists: `.txt` (one URL a line, `#` comments), `.csv`/`.tsv` with a header, `.jsonl`, `.parquet`, and
 * `.gz` of the text formats; several files or folders (Spark output folders too), read in an order fixed by the
 * names (`listFiles`) so that row indices, and therefore units, are a deterministic function of the inputs.
 *
 * No row stops a job. A row that cannot be read (list-formats.ts) or whose URL cannot be fetched
 * (`checkUrl`) is still yielded, with its reason in `bad`, so it keeps its index (unit membership is
 * index / unit size, and resume depends on it) and lands in its unit's failure histogram. Only what spoils
 * a whole list is a ConfigError: a missing file, an unreadable header, a URL column that no row has.
 * Text follows one rule in every format (list-text.ts).
 */
import { constants, type Stats } from 'node:fs';
import { access, readdir, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import type { FailureReason } from '../shards/failures.js';
import { CORE_COLUMNS } from '../shards/schema.js';
import { formatOf, MAX_COLUMNS, readList, type ListItem } from './list-formats.js';
import { cellText, clip } from './list-text.js';

export { MAX_LINE_LENGTH } from './list-text.js';

export interface UrlRow {
  /** Position in the concatenated lists, from 0. */
  index: number;
  url: string;
  caption: string | null;
  /** A `source_page` column (the page an image was found on, as crawls write), else null. */
  sourcePage: string | null;
  /** Other columns of the list, kept as shard columns. */
  extra: Record<string, string | null>;
  /** Why this row cannot be ingested (`bad_row`, `url_missing`, `url_invalid`...); absent when it can. */
  bad?: FailureReason;
  /** Set when a caption or other column was cut to `MAX_FIELD_LENGTH` / `MAX_ROW_TEXT`. */
  truncated?: true;
}

export interface UrlListOptions {
  /** Column holding the URL (csv, tsv, jsonl, parquet). @default "url" */
  urlCol?: string;
  /** Column holding the caption: one named here must exist; unnamed, a "caption" column is read if there is one. */
  captionCol?: string;
}

/** What reading lists found, for reports: an empty list is `rows === 0`. */
export interface ListStats {
  rows: number;
  /** Rows that cannot be ingested, by reason. */
  bad: Partial<Record<FailureReason, number>>;
  /** Rows kept with a caption or other column cut to `MAX_FIELD_LENGTH` / `MAX_ROW_TEXT`. */
  truncated: number;
}

export const LIST_EXTENSIONS = ['.txt', '.csv', '.tsv', '.jsonl', '.parquet'];
/** Longest URL accepted; longer ones are `url_too_long`. */
export const MAX_URL_LENGTH = 8192;
/**
 * Longest caption, `source_page` or other column kept; longer text is cut, and the row kept: the image is
 * what a row is for, and a caption past this length is no caption a model trains on (CLIP reads 77 tokens;
 * the longest dense-caption sets stay under ~10k characters).
 */
export const MAX_FIELD_LENGTH = 16384;
/** Most text kept from one row besides its URL; later columns are cut first. Bounds a unit's rows in memory. */
export const MAX_ROW_TEXT = 65536;

/**
 * The list files `paths` name, in the order their rows are read. That order numbers the rows, and so makes the
 * units a resumed job must find again; it is a function of the names alone:
 * - each path in the order given; a file is a list (of a known type, else a ConfigError);
 * - a folder stands for the list files in it: its entries sorted by name, compared in Unicode NFC form by UTF-16
 *   code units (the same under every locale, and the same for a folder copied to or from macOS, which stores
 *   names decomposed, NFD), names with the same NFC form by their own code units; a sub-folder's files in its
 *   place, at any depth, as Spark and Hadoop write `df.write.csv('urls.csv')`: a folder `urls.csv/` of `part-*`
 *   files;
 * - inside a folder, names starting with `.` or `_` are hidden and skipped, as Hadoop's FileInputFormat skips
 *   them (`_SUCCESS`, `_temporary/`, `.part-*.crc` checksums, macOS `._*` AppleDouble files), and so are files
 *   of no list type (a README);
 * - each file is read once: a file met again (a path given twice, a link to a file or folder already listed,
 *   compared by real path) keeps its first place only, so no row is read twice.
 * A folder without a list file, an entry that cannot be read, or a folder linking back into itself is a
 * ConfigError naming the path.
 */
export async function listFiles(paths: readonly string[]): Promise<string[]> {
  if (paths.length === 0) throw new ConfigError('no URL list given');
  const files: ListFile[] = [];
  for (const path of paths) {
    const info = await stat(path).catch(() => {
      // A relative path is read from the working directory (a pipeline file's too): say which one.
      throw new ConfigError(`URL list not found: ${path}${isAbsolute(path) ? '' : ` (looked for ${resolve(path)})`}`);
    });
    if (info.isDirectory()) {
      const found = await folderLists(path, new Set());
      if (found.length === 0)
        throw new ConfigError(
          `no URL lists (${LIST_EXTENSIONS.join(', ')}[.gz]) in ${path} (names starting with . or _ are skipped)`,
        );
      files.push(...found);
    } else if (formatOf(path) === null) {
      throw new ConfigError(
        `unknown URL list type: ${path}; expected ${LIST_EXTENSIONS.join(', ')} or .gz of the text ones`,
      );
    } else {
      files.push(await listFile(path, info));
    }
  }
  const seen = new Set<string>();
  return files.filter(({ real }) => !seen.has(real) && seen.add(real)).map(({ path }) => path);
}

/** A list file: its path resolved, and its real path (links followed), which says whether it was met before. */
interface ListFile {
  path: string;
  real: string;
}

/** Names in the order above: by NFC form, then by the names' own code units. */
function byName(a: string, b: string): number {
  const [na, nb] = [a.normalize('NFC'), b.normalize('NFC')];
  if (na !== nb) return na < nb ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The list files in `folder` and its sub-folders, in the order above; `within`: the real paths of its parents. */
async function folderLists(folder: string, within: ReadonlySet<string>): Promise<ListFile[]> {
  const real = await realpath(folder).catch(unreadable(folder));
  if (within.has(real)) throw new ConfigError(`URL list folder ${folder} links back to ${real}, a folder it is in`);
  const names = await readdir(folder).catch(unreadable(folder));
  const files: ListFile[] = [];
  for (const name of names.filter((n) => !n.startsWith('.') && !n.startsWith('_')).sort(byName)) {
    const path = resolve(join(folder, name));
    const info = await stat(path).catch(unreadable(path));
    if (info.isDirectory()) files.push(...(await folderLists(path, new Set([...within, real]))));
    else if (formatOf(name) !== null) files.push(await listFile(path, info));
  }
  return files;
}

/** `path` as a list file, once it is known to be a regular file this process may read. */
async function listFile(path: string, info: Stats): Promise<ListFile> {
  if (!info.isFile()) throw new ConfigError(`URL list ${path} is not a regular file`);
  await access(path, constants.R_OK).catch(unreadable(path));
  return { path: resolve(path), real: await realpath(path).catch(unreadable(path)) };
}

/** A failed stat, readdir or access as a ConfigError naming the path (a bare errno names none). */
function unreadable(path: string): (err: Error) => never {
  return (err) => {
    throw new ConfigError(`cannot read URL list ${path}: ${err.message}`, { cause: err });
  };
}

/** Why a URL cannot be fetched, or null if it is a plausible http(s) URL. */
export function checkUrl(url: string): FailureReason | null {
  if (url.length > MAX_URL_LENGTH) return 'url_too_long';
  // U+FFFD stands for bytes the list did not hold as text; the URL they were part of is lost.
  if (url.includes('\uFFFD') || !url.isWellFormed()) return 'url_encoding';
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

/**
 * Extra column names a set of lists will produce: from their headers, and for jsonl from every object (an
 * optional key first met on the millionth line is a column too), in the order first met. Throws a
 * ConfigError past MAX_COLUMNS.
 */
export async function extraColumnsOf(files: readonly string[], options: UrlListOptions = {}): Promise<string[]> {
  const names = new Set<string>();
  for (const file of files) {
    for await (const row of readOne(file, options, 0, formatOf(file) !== 'jsonl')) {
      for (const k of Object.keys(row.extra)) names.add(k);
      if (names.size > MAX_COLUMNS)
        throw new ConfigError(`URL lists ${files.join(', ')} have more than ${MAX_COLUMNS} distinct columns`);
    }
  }
  return [...names];
}

/** Every row of every list, with a global index; `stats`, when given, is filled in as rows are read. */
export async function* readUrlLists(
  files: readonly string[],
  options: UrlListOptions = {},
  stats?: ListStats,
): AsyncIterable<UrlRow> {
  let index = 0;
  for (const file of files) {
    for await (const row of readOne(file, options, index, false)) {
      if (stats) count(stats, row);
      yield row;
      index = row.index + 1;
    }
  }
}

/**
 * Rows from objects another stage made (a crawl's image candidates: url, caption, source_page), read exactly
 * as the same objects in a JSONL list would be: same columns, URL checks and text caps.
 */
export function* objectRows(
  objects: Iterable<Record<string, unknown>>,
  options: UrlListOptions = {},
): Iterable<UrlRow> {
  const columns: Columns = { url: options.urlCol ?? 'url', caption: options.captionCol ?? 'caption' };
  const names = new ColumnNames();
  let index = 0;
  for (const cells of objects) yield toRow(index++, { kind: 'row', cells }, columns, names);
}

function count(stats: ListStats, row: UrlRow): void {
  stats.rows++;
  if (row.bad) stats.bad[row.bad] = (stats.bad[row.bad] ?? 0) + 1;
  if (row.truncated) stats.truncated++;
}

async function* readOne(
  file: string,
  options: UrlListOptions,
  first: number,
  headerOnly: boolean,
): AsyncIterable<UrlRow> {
  const format = formatOf(file)!;
  const columns: Columns =
    format === 'txt'
      ? { url: 'url', caption: null }
      : { url: options.urlCol ?? 'url', caption: options.captionCol ?? 'caption' };
  const names = new ColumnNames();
  let index = first;
  let objects = 0;
  let withUrl = 0;
  let withCaption = 0;
  for await (const item of readList(file, format)) {
    if (item.kind === 'header') {
      // A caption column named on purpose must exist too (the default one may not): else every caption is null.
      for (const [name, role] of [
        [columns.url, 'URL'],
        [options.captionCol, 'caption'],
      ] as const) {
        if (name !== undefined && !item.columns.includes(name)) {
          throw new ConfigError(
            `${role} column "${name}" not found in ${file}; columns: ${item.columns.join(', ') || 'none'}`,
          );
        }
      }
      if (headerOnly) {
        yield toRow(0, { kind: 'row', cells: Object.fromEntries(item.columns.map((c) => [c, null])) }, columns, names);
        return;
      }
      continue;
    }
    if (item.kind === 'row') {
      objects++;
      if (Object.hasOwn(item.cells, columns.url)) withUrl++;
      if (options.captionCol !== undefined && Object.hasOwn(item.cells, options.captionCol)) withCaption++;
    }
    yield toRow(index++, item, columns, names);
    if (headerOnly && item.kind === 'row') return;
  }
  // Without a header, a URL column no row has is a wrong --url-col, not junk rows.
  if (!headerOnly && format === 'jsonl' && objects > 0 && withUrl === 0) {
    throw new ConfigError(`URL column "${columns.url}" not found in any object of ${file}`);
  }
  if (!headerOnly && format === 'jsonl' && objects > 0 && options.captionCol !== undefined && withCaption === 0) {
    throw new ConfigError(`caption column "${options.captionCol}" not found in any object of ${file}`);
  }
}

interface Columns {
  url: string;
  caption: string | null;
}

/** A list item as a row: URL checked, text cut to the caps, other columns as extras named by `names`. */
function toRow(
  index: number,
  item: Exclude<ListItem, { kind: 'header' }>,
  columns: Columns,
  names: ColumnNames,
): UrlRow {
  if (item.kind === 'fault') return { index, url: '', caption: null, sourcePage: null, extra: {}, bad: item.fault };
  const budget = new TextBudget();
  const cells = item.cells;
  // Own cells only: `--caption-col toString` names a column, never the object's method.
  const cell = (name: string) => (Object.hasOwn(cells, name) ? cells[name] : undefined);
  const url = urlInput(clip(cellText(cell(columns.url)) ?? '', MAX_URL_LENGTH + 1));
  const caption = columns.caption === null ? null : budget.take(cell(columns.caption));
  const sourcePage = budget.take(cell('source_page'));
  const extras: Array<[string, string | null]> = [];
  for (const [key, value] of Object.entries(cells)) {
    if (key !== columns.url && key !== columns.caption && key !== 'source_page')
      extras.push([names.of(key), budget.take(value, true)]);
  }
  const extra = Object.fromEntries(extras); // own properties, a column named __proto__ included
  const bad = url.trim() === '' ? 'url_missing' : checkUrl(url);
  const row: UrlRow = { index, url, caption: caption || null, sourcePage: sourcePage || null, extra };
  if (bad) row.bad = bad;
  if (budget.cut) row.truncated = true;
  return row;
}

/**
 * The URL standard's first steps on input: leading and trailing C0 controls and spaces go, and so do tabs and
 * newlines anywhere (a browser fetches " http://a/b.jpg " as http://a/b.jpg; refusing it would drop a good URL
 * under the wrong reason).
 */
export function urlInput(text: string): string {
  return text.replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, '').replace(/[\t\n\r]/g, '');
}

/** Hands out at most `MAX_FIELD_LENGTH` per cell and `MAX_ROW_TEXT` per row. */
class TextBudget {
  left = MAX_ROW_TEXT;
  cut = false;

  /** A cell's text within the budget; null stays null, and '' stays '' only when `keepEmpty`. */
  take(value: unknown, keepEmpty = false): string | null {
    const text = cellText(value);
    if (text === null || (text === '' && !keepEmpty)) return null;
    const kept = clip(text, Math.min(MAX_FIELD_LENGTH, this.left));
    if (kept.length < text.length) this.cut = true;
    this.left -= kept.length;
    return kept;
  }
}

/**
 * Shard column names for one list's columns, each distinct: two list columns that make the same safe name
 * (`a b` and `a_b`; `key`, which becomes `extra_key`, and `extra_key`) get the first free suffix in the order
 * they are first met (`a_b`, `a_b_2`), which is the file's order in every pass over it.
 */
class ColumnNames {
  private readonly byList = new Map<string, string>();
  private readonly taken = new Set<string>();

  of(listName: string): string {
    let name = this.byList.get(listName);
    if (name !== undefined) return name;
    const safe = columnName(listName);
    name = safe;
    for (let n = 2; this.taken.has(name); n++) name = `${safe.slice(0, 60)}_${n}`;
    this.byList.set(listName, name);
    this.taken.add(name);
    return name;
  }
}

/** A list column name made safe as a shard column (core names get an `extra_` prefix). */
export function columnName(name: string): string {
  const safe =
    name
      .replace(/[^A-Za-z0-9_.-]/g, '_')
      .replace(/^([^A-Za-z_])/, '_$1')
      .slice(0, 64) || '_';
  return CORE_COLUMNS.includes(safe) ? `extra_${safe}`.slice(0, 64) : safe;
}
