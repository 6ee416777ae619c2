/**
 * The one text rule every URL-list format goes through, so that the same bytes mean the same row whatever
 * the format:
 *
 * - A file is UTF-8 unless it opens with a byte order mark: EF BB BF (UTF-8), FF FE (UTF-16LE) or FE FF
 *   (UTF-16BE). The mark is dropped. Gzip is undone first, so a `.gz` list follows the same rule.
 * - Bytes that are not valid in that encoding become U+FFFD, as the WHATWG Encoding standard decodes
 *   (`TextDecoder`, not fatal); lone surrogates a format can spell otherwise (JSON's `\ud800`) become U+FFFD
 *   too (`toWellFormed`). So a caption keeps its readable part, and a URL holding U+FFFD is refused by
 *   `checkUrl` (`url_encoding`): fetching it would ask for a different resource than the list meant.
 * - Lines end at LF, CRLF or a lone CR (old Mac OS and Excel's "CSV (Macintosh)"), as Python's universal
 *   newlines and pandas read them, in txt, CSV and TSV lists. A JSONL line ends at LF or CRLF only: JSON Lines
 *   separates records with LF, and a lone CR is whitespace inside a JSON value.
 * - A line longer than `MAX_LINE_LENGTH` is not kept in memory: it becomes a `row_too_long` fault that still
 *   takes its row index, and reading goes on at the next line.
 * - A `.gz` list is read as `gzip -d` reads it (RFC 1952, gzip-members.ts): every member in turn, and every row
 *   of every whole member kept. Damage (a member cut short, as a truncated download is; a bad CRC; corrupt
 *   data) keeps every line decoded before it, drops the unfinished line it cuts, and ends the list with one
 *   `list_corrupt` fault; bytes after the last member that open no other member (not zeros, which gzip ignores
 *   silently) are "trailing garbage" to gzip, ignored with a warning: here one `list_corrupt` fault after the
 *   last row. Damage anywhere after the first member's header is such a damaged list, even one that yields no
 *   row before it (a download cut in its first kilobytes): zero rows, then `list_corrupt`. Only a file that
 *   does not open with a gzip member header is refused, a ConfigError: it is no gzip at all. A 0-byte `.gz` is
 *   an empty list, as a 0-byte `.txt` is. All of this is a function of the bytes alone, so a rerun plans the
 *   same rows; other read errors (EIO) are not, and stop the run.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { TextDecoder } from 'node:util';
import { ConfigError } from '../errors.js';
import { GzipMembersDecoder } from './gzip-members.js';

/** Longest line read whole, in UTF-16 code units; longer lines are `row_too_long` faults. */
export const MAX_LINE_LENGTH = 4 * 1024 * 1024;

/** Why a list row could not be read; such a row still takes its index, so later rows keep theirs. */
export type ListFault = 'bad_row' | 'row_too_long' | 'list_corrupt';

export interface LineFault {
  fault: ListFault;
}

/** A line of text without its line end, or a fault in its place. */
export type Line = string | LineFault;

/** The encoding a byte order mark names; UTF-8 without one. */
export function sniffEncoding(head: Uint8Array): 'utf-8' | 'utf-16le' | 'utf-16be' {
  if (head[0] === 0xff && head[1] === 0xfe) return 'utf-16le';
  if (head[0] === 0xfe && head[1] === 0xff) return 'utf-16be';
  return 'utf-8';
}

/** Which line ends a list format has (the rule above): `universal` adds the lone CR to LF and CRLF. */
export type LineEnds = 'universal' | 'lf';

/** The lines of a list file (gunzipped when it ends in `.gz`), decoded by the rule above. */
export async function* readLines(file: string, ends: LineEnds = 'universal'): AsyncIterable<Line> {
  const { bytes, gzip } = openBytes(file);
  const splitter = new LineSplitter(ends);
  let decoder: TextDecoder | null = null;
  let head = Buffer.alloc(0);
  try {
    for await (let chunk of bytes as AsyncIterable<Buffer>) {
      if (!decoder) {
        head = Buffer.concat([head, chunk]);
        if (head.length < 3) continue; // a BOM is at most 3 bytes; wait for them
        decoder = new TextDecoder(sniffEncoding(head)); // drops the BOM it names
        chunk = head;
      }
      yield* splitter.push(decoder.decode(chunk, { stream: true }));
    }
    if (!decoder) {
      decoder = new TextDecoder(sniffEncoding(head));
      yield* splitter.push(decoder.decode(head, { stream: true }));
    }
    if (gzip?.damage) {
      if (gzip.notGzip)
        throw new ConfigError(`URL list ${file} is not a gzip file: it does not open with a gzip member header`, {
          cause: gzip.damage,
        });
      if (gzip.bytesIn === 0) return; // a 0-byte .gz: an empty list, as a 0-byte .txt is
      // The rows decoded before the damage (maybe none) are kept; the unfinished line it cuts goes with it.
      yield { fault: 'list_corrupt' };
      return;
    }
    yield* splitter.push(decoder.decode());
    yield* splitter.end();
    if (gzip?.junk) yield { fault: 'list_corrupt' };
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`cannot read URL list ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    bytes.destroy();
  }
}

/**
 * Output bytes per inflate call for `.gz` lists: corrupt DEFLATE data loses at most this much of what was decoded
 * before it (gzip-members.ts), some 60 rows of LAION-like URLs where zlib's default 16 KiB loses ~250. Each call
 * is a trip to libuv's thread pool: on a 200k-row list (12 MB) 4 KiB costs ~70 ms more than 16 KiB
 * (~0.35 µs a row), 1 KiB ~270 ms more.
 */
export const LIST_INFLATE_CHUNK = 4096;

/** The bytes of a list file, and for a `.gz` the decoder whose `damage` and `junk` say how its gzip ended. */
function openBytes(file: string): { bytes: Readable; gzip: GzipMembersDecoder | null } {
  const stream = createReadStream(file);
  if (!file.toLowerCase().endsWith('.gz')) return { bytes: stream, gzip: null };
  const gzip = new GzipMembersDecoder({ onDamage: 'end', chunkSize: LIST_INFLATE_CHUNK });
  stream.on('error', (err) => gzip.destroy(err));
  gzip.on('close', () => stream.destroy());
  return { bytes: stream.pipe(gzip), gzip };
}

/** Splits decoded text into lines, holding at most `MAX_LINE_LENGTH` of an unfinished one. */
export class LineSplitter {
  #parts: string[] = [];
  #length = 0;
  #tooLong = false;
  /** The last text ended with a CR that ended a line: an LF opening the next text is its CRLF's. */
  #afterCr = false;
  readonly #ends: RegExp;

  constructor(ends: LineEnds) {
    this.#ends = ends === 'universal' ? /\r\n?|\n/g : /\n/g;
  }

  *push(text: string): Iterable<Line> {
    if (text === '') return;
    let start = this.#afterCr && text[0] === '\n' ? 1 : 0;
    this.#afterCr = false;
    this.#ends.lastIndex = start;
    for (let m = this.#ends.exec(text); m; m = this.#ends.exec(text)) {
      this.#append(text.slice(start, m.index));
      yield this.#take();
      start = m.index + m[0].length;
      this.#afterCr = m[0] === '\r' && start === text.length;
    }
    this.#append(text.slice(start));
  }

  *end(): Iterable<Line> {
    if (this.#length > 0 || this.#tooLong) yield this.#take();
  }

  #append(text: string): void {
    if (this.#tooLong || text === '') return;
    this.#length += text.length;
    if (this.#length > MAX_LINE_LENGTH + 1) {
      // +1: the CR of a CRLF
      this.#tooLong = true;
      this.#parts = [];
    } else {
      this.#parts.push(text);
    }
  }

  #take(): Line {
    const line: Line = this.#tooLong ? { fault: 'row_too_long' } : this.#parts.join('').replace(/\r$/, '');
    this.#parts = [];
    this.#length = 0;
    this.#tooLong = false;
    return line;
  }
}

declare global {
  // ES2024, in Node since 20; the project's lib is ES2023.
  interface String {
    isWellFormed(): boolean;
    toWellFormed(): string;
  }
}

const utf8 = new TextDecoder();

/**
 * A list cell as text, by the rule above: strings made well formed, bytes decoded as UTF-8 with U+FFFD for
 * invalid sequences, numbers and booleans printed, dates as ISO 8601, anything else as JSON. Null stays null.
 */
export function cellText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value.toWellFormed();
  if (value instanceof Uint8Array) return utf8.decode(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)).toWellFormed();
}

/** `text` cut to at most `max` code units, never between the two halves of a surrogate pair. */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const code = text.charCodeAt(max - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}
