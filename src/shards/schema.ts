/**
 * `ImageRecord`: one row of a shard, the only record that crosses from ingest to augment.
 * The Arrow schema is the dataset format; any Arrow reader (pyarrow, arrow-rs, DuckDB) can read a shard.
 */
import {
  Binary,
  Field,
  FixedSizeBinary,
  Int32,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  Uint64,
  Utf8,
  vectorFromArray,
  type DataType,
} from 'apache-arrow';
import { ConfigError, InvalidShardError } from '../errors.js';

export interface ImageRecord {
  /** Unique within the dataset; stable across reruns of the same job: `recordKey(unit, position)` (keys.ts),
   * e.g. `000012-00345` for input 345 of unit 12. */
  key: string;
  url: string;
  /** 32-byte SHA-256 used for exact-duplicate detection. */
  sha256: Uint8Array;
  /** 64-bit DCT perceptual hash used for near-duplicate detection. */
  phash: bigint;
  width: number;
  height: number;
  /** MIME type of `image`, e.g. `image/jpeg`. */
  mime: string;
  /** The encoded image bytes. */
  image: Uint8Array;
  caption: string | null;
  sourcePage: string | null;
  /** Extra URL-list columns kept as nullable string columns. */
  extra?: Record<string, string | null>;
}

export const SCHEMA_VERSION = '1';

/** Core columns, in order: [column name, Arrow type, nullable, record field]. */
const CORE: ReadonlyArray<readonly [string, DataType, boolean, keyof ImageRecord]> = [
  ['key', new Utf8(), false, 'key'],
  ['url', new Utf8(), false, 'url'],
  ['sha256', new FixedSizeBinary(32), false, 'sha256'],
  ['phash', new Uint64(), false, 'phash'],
  ['width', new Int32(), false, 'width'],
  ['height', new Int32(), false, 'height'],
  ['mime', new Utf8(), false, 'mime'],
  ['image', new Binary(), false, 'image'],
  ['caption', new Utf8(), true, 'caption'],
  ['source_page', new Utf8(), true, 'sourcePage'],
];

export const CORE_COLUMNS: readonly string[] = CORE.map(([name]) => name);

/** The Arrow schema of a shard with the given extra string columns. */
export function imageSchema(extraColumns: readonly string[] = []): Schema {
  for (const name of extraColumns) checkExtraColumn(name);
  if (new Set(extraColumns).size !== extraColumns.length) throw new ConfigError('duplicate extra column names');
  const fields = CORE.map(([name, type, nullable]) => new Field(name, type, nullable));
  for (const name of extraColumns) fields.push(new Field(name, new Utf8(), true));
  return new Schema(fields, new Map([['wildstream.schema_version', SCHEMA_VERSION]]));
}

export function checkExtraColumn(name: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/.test(name)) {
    throw new ConfigError(`invalid extra column name ${JSON.stringify(name)}: use letters, digits, _ . - (max 64)`);
  }
  if (CORE_COLUMNS.includes(name)) throw new ConfigError(`extra column "${name}" collides with a core column`);
}

/** Builds one record batch from rows; the caller bounds its size. */
export function toRecordBatch(schema: Schema, rows: readonly ImageRecord[]): RecordBatch {
  const children = schema.fields.map((field, i) => {
    const core = CORE[i];
    const values = core ? rows.map((row) => row[core[3]] ?? null) : rows.map((row) => ownCell(row.extra, field.name));
    return vectorFromArray(values as never[], field.type).data[0]!;
  });
  return new RecordBatch(
    schema,
    makeData({ type: new Struct(schema.fields), length: rows.length, nullCount: 0, children }),
  );
}

/** A row's extra column as its own property only: a column named `toString` is no function of the object's. */
const ownCell = (extra: ImageRecord['extra'], name: string) =>
  extra && Object.hasOwn(extra, name) ? (extra[name] ?? null) : null;

/** Checks that a shard's schema carries every core column with the right type. */
export function checkSchema(schema: Schema, where: string): string[] {
  for (const [name, type] of CORE) {
    const field = schema.fields.find((f) => f.name === name);
    if (!field) throw new InvalidShardError(`${where}: missing column "${name}"`);
    if (String(field.type) !== String(type)) {
      throw new InvalidShardError(`${where}: column "${name}" is ${String(field.type)}, expected ${String(type)}`);
    }
  }
  return schema.fields.map((f) => f.name).filter((name) => !CORE_COLUMNS.includes(name));
}

/** The rows of a record batch as `ImageRecord`s. Binary values are views into the batch's buffers. */
export function fromRecordBatch(batch: RecordBatch, extraColumns: readonly string[]): ImageRecord[] {
  const col = (name: string) => batch.getChild(name)!;
  const [key, url, sha, phash, width, height, mime, image, caption, page] = CORE_COLUMNS.map(col);
  const extras = extraColumns.map((name) => [name, col(name)] as const);
  const rows: ImageRecord[] = [];
  for (let i = 0; i < batch.numRows; i++) {
    const row: ImageRecord = {
      key: key!.get(i),
      url: url!.get(i),
      sha256: sha!.get(i),
      phash: phash!.get(i),
      width: width!.get(i),
      height: height!.get(i),
      mime: mime!.get(i),
      image: image!.get(i),
      caption: caption!.get(i),
      sourcePage: page!.get(i),
    };
    if (extras.length) row.extra = Object.fromEntries(extras.map(([name, vec]) => [name, vec.get(i)]));
    rows.push(row);
  }
  return rows;
}
