/**
 * CSV records from lines, quoted as RFC 4180 quotes them, reading on past any malformed record.
 *
 * csv-parse (6.2) cannot do the last part: after `CSV_MAX_RECORD_SIZE` or an unclosed quote its
 * `skip_records_with_error` drops the rest of the file, and with `relax_quotes` an unclosed quote silently
 * swallows the rows after it into one caption. So records are assembled here, line by line:
 *
 * - A field that starts with `"` is quoted: `""` is a quote, and delimiters and line ends are data up to the
 *   closing `"`, which must be followed by the delimiter or the end of the line.
 * - A `"` anywhere else is a plain character (`12" screen`), as csv-parse's `relax_quotes` read it.
 * - A quoted field runs over as many lines as it spans up to its closing quote, as RFC 4180 (and Python's csv,
 *   and pandas) read it: lines inside it are never rows, so a caption cannot add URLs to the list. A record
 *   is at most `MAX_LINE_LENGTH` characters, as a line is.
 * - A record that breaks these rules (a closing quote followed by other text, an unclosed quote at the end of
 *   the file or past that bound) is one `bad_row`, made of its first line only; the lines after that one are
 *   read again as records of their own. So a quote never closed costs one row, never the rows after it.
 * - Empty lines are no record. Fields are never trimmed; a line end inside a quoted field reads as LF.
 */
import { MAX_LINE_LENGTH, type Line, type LineFault } from './list-text.js';

type State = 'done' | 'open' | 'malformed';

/** Records (arrays of fields) of `lines`, or a fault in place of each record that could not be read. */
export async function* csvRecords(lines: AsyncIterable<Line>, delimiter = ','): AsyncIterable<string[] | LineFault> {
  const source = lines[Symbol.asyncIterator]();
  const replay: Line[] = []; // lines to read again after a record spanning them proved malformed
  const next = async (): Promise<Line | undefined> => {
    if (replay.length > 0) return replay.shift();
    const item = await source.next();
    return item.done ? undefined : item.value;
  };
  try {
    for (let first = await next(); first !== undefined; first = await next()) {
      if (typeof first !== 'string') {
        yield first;
        continue;
      }
      if (first === '') continue;
      const parser = new RecordParser(delimiter);
      const held: Line[] = [];
      let length = first.length;
      let state = parser.feed(first, true);
      while (state === 'open') {
        const line = await next();
        if (line === undefined) break;
        held.push(line);
        length += typeof line === 'string' ? line.length : Infinity;
        state = length <= MAX_LINE_LENGTH ? parser.feed(line as string, false) : 'malformed';
      }
      if (state === 'done') {
        yield parser.fields;
      } else {
        replay.unshift(...held);
        yield { fault: 'bad_row' };
      }
    }
  } finally {
    await source.return?.();
  }
}

/** Reads one record from one or more lines. */
class RecordParser {
  readonly fields: string[] = [];
  #field = '';
  #quoted = false;

  constructor(private readonly delimiter: string) {}

  feed(line: string, first: boolean): State {
    let i = 0;
    if (!first) this.#field += '\n';
    for (;;) {
      if (this.#quoted) {
        const quote = line.indexOf('"', i);
        if (quote === -1) {
          this.#field += line.slice(i);
          return 'open';
        }
        this.#field += line.slice(i, quote);
        if (line[quote + 1] === '"') {
          this.#field += '"';
          i = quote + 2;
          continue;
        }
        this.fields.push(this.#field);
        this.#field = '';
        this.#quoted = false;
        i = quote + 1;
        if (i === line.length) return 'done';
        if (line[i] !== this.delimiter) return 'malformed';
        i++;
      }
      // At the start of a field.
      if (line[i] === '"') {
        this.#quoted = true;
        i++;
        continue;
      }
      const end = line.indexOf(this.delimiter, i);
      if (end === -1) {
        this.fields.push(line.slice(i));
        return 'done';
      }
      this.fields.push(line.slice(i, end));
      i = end + 1;
    }
  }
}
