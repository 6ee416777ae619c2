/**
 * `wildstream embed`: backbone features for every image of a dataset (committed units, in unit order) or of a
 * local folder, written as an Arrow IPC file (`key` utf8, `embedding` fixed-size list of float32) that any
 * Arrow reader opens. Images that do not decode are counted, not fatal; so are unreadable shards (missing,
 * truncated, corrupt), skipped and counted as train's stream does, so one bad shard does not lose the rest.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { totalmem } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import {
  Field,
  FixedSizeList,
  Float32,
  makeData,
  makeVector,
  Table,
  tableToIPC,
  Utf8,
  vectorFromArray,
} from 'apache-arrow';
import { countSkip } from '../augment/stream.js';
import { ConfigError, InvalidShardError, shown } from '../errors.js';
import { listUnits, type UnitRecord } from '../shards/dataset.js';
import { ShardReader } from '../shards/reader.js';
import { putFile } from '../shards/output.js';
import { openStore, type Store, type StoreOptions } from '../shards/store.js';
import type { OptionNames } from '../options/declare.js';
import type { Backbone } from '../train/model-folder.js';
import { MAX_IMAGE_PIXELS, type ImageRefusal } from '../shards/image-rule.js';
import { checkInference } from '../train/memory.js';
import { isRegNetName } from '../train/regnet-spec.js';
import { evalPixels, listImages, localFolder, type ImageListing } from './images.js';
import { BACKBONE_OPTIONS, checkOption } from './options.js';

export interface Embeddings {
  keys: string[];
  features: Float32Array[];
  /** Labels (class folders) when the source is a folder. */
  labels: string[];
  /**
   * Images not embedded: undecodable ones, symbolic links to images that are missing, and the records of
   * unreadable shards or batches.
   */
  failed: number;
  /** Width of every feature row: the backbone's featureDim, also when there is no row. @default the rows' width */
  dim?: number;
  /** Shards (bad_shard) or record batches (bad_batch) that could not be read, as train's stream counts them. */
  skipped?: Record<string, number>;
}

export interface EmbedOptions {
  /** Square input side, an integer from 8 to 4096 (else a ConfigError). @default the backbone's training size */
  size?: number;
  /** Images per forward pass, an integer from 1 to 4096 (else a ConfigError). @default 32 */
  batch?: number;
  /** S3 endpoint and the like, for a dataset on S3. */
  store?: StoreOptions;
  /** How a refusal names the size and batch options (a pipeline's embed keys). @default the command's flags */
  names?: OptionNames;
  /**
   * Told (a line starting `warning: `) of each image that failed, by its key and reason (the first
   * NAMED_FAILURES, then one line counting the rest), the first time each reason (bad_shard, bad_batch) makes
   * embed skip unreadable data, and of symbolic links not followed because they loop. @default nothing
   */
  onSkip?: (message: string) => void;
}

interface Item {
  key: string;
  label: string;
  bytes: () => Promise<Uint8Array>;
}

/**
 * What reading the input could not: skips by reason (see countSkip) and the records they lost, and the images
 * that failed one by one.
 */
interface Unreadable {
  skipped: Record<string, number>;
  examples: Record<string, string>;
  lost: number;
  failed: FailedImages;
  onSkip?: (message: string) => void;
}

/** How many failed images are named, a line each; those after are told as one count at the end. */
export const NAMED_FAILURES = 20;

/** Why an image failed: the image rule's refusals, or a symbolic link whose target is missing. */
type FailedReason = ImageRefusal | 'broken_link';

const FAILED_REASONS: Record<FailedReason, string> = {
  decode_error: 'not a JPEG, PNG, WebP, GIF, TIFF or AVIF image, or a damaged one',
  svg_refused: 'an SVG, which no stage decodes',
  too_many_pixels: `over ${MAX_IMAGE_PIXELS / 1e6} million pixels`,
  broken_link: 'a symbolic link to a missing file',
};

/**
 * Images that failed, each named (its path in the folder, or its record key) with the reason, up to
 * NAMED_FAILURES: a count alone ("failed: 6") left a user searching a folder for which. A shard that cannot be
 * read is told once per reason by countSkip instead: its records have no keys to name.
 */
class FailedImages {
  count = 0;
  constructor(private readonly tell?: (message: string) => void) {}

  add(key: string, reason: FailedReason): void {
    this.count++;
    if (this.count <= NAMED_FAILURES)
      this.tell?.(`warning: image ${key} failed (${reason}: ${FAILED_REASONS[reason]}), counted in "failed"`);
  }

  /** After the last image: one line for the failed images not named. */
  finish(): void {
    const more = this.count - NAMED_FAILURES;
    if (more > 0)
      this.tell?.(
        `warning: ${more} more image${more === 1 ? '' : 's'} failed, not named (the first ${NAMED_FAILURES} are above), counted in "failed"`,
      );
  }
}

/** Images of a dataset store (when it has committed units) or else of a local folder. */
async function* source(location: string, options: StoreOptions, unreadable: Unreadable): AsyncGenerator<Item> {
  const store = await openStore(location, options);
  const units = await listUnits(store);
  if (units.length === 0) {
    yield* fileItems(await listImages(location), unreadable);
    return;
  }
  for (const unit of units) yield* unitItems(store, unit, unreadable);
}

/** The files of a folder's listing; its broken links are failed images, its loops are told. */
async function* fileItems(listing: ImageListing, unreadable: Unreadable): AsyncGenerator<Item> {
  for (const key of listing.broken) unreadable.failed.add(key, 'broken_link');
  const { loops } = listing;
  if (loops.length > 0)
    unreadable.onSkip?.(
      `warning: not following ${loops.length} symbolic link${loops.length === 1 ? '' : 's'} back into a folder above ${loops.length === 1 ? 'it' : 'them'}: ${sample(loops)}`,
    );
  for (const f of listing.files) yield { key: f.key, label: f.label, bytes: () => readFile(f.path) };
}

/** The first few of `keys`, for a message. */
export function sample(keys: string[], few = 3): string {
  return keys.length <= few ? keys.join(', ') : `${keys.slice(0, few).join(', ')} and ${keys.length - few} more`;
}

/**
 * A unit's records, batch by batch. A shard that cannot be opened (bad_shard) or a batch that cannot be read
 * (bad_batch) is skipped and counted, its records added to `lost`; other errors (the store down) throw.
 */
async function* unitItems(store: Store, unit: UnitRecord, unreadable: Unreadable): AsyncGenerator<Item> {
  if (unit.records === 0) return; // ingest commits such a unit when every input failed
  let read = 0;
  const reader = await unreadableAs('bad_shard', unreadable, () =>
    ShardReader.open(store, unit.shard, { size: unit.bytes }),
  );
  for (let i = 0; reader && i < reader.numBatches; i++) {
    for (const r of (await unreadableAs('bad_batch', unreadable, () => reader.readRecords(i))) ?? []) {
      read++;
      yield { key: r.key, label: '', bytes: async () => r.image };
    }
  }
  unreadable.lost += Math.max(0, unit.records - read);
}

/** `read()`, or null when it throws an InvalidShardError, counted under `reason`. */
async function unreadableAs<T>(reason: string, unreadable: Unreadable, read: () => Promise<T>): Promise<T | null> {
  try {
    return await read();
  } catch (err) {
    if (!(err instanceof InvalidShardError)) throw err;
    countSkip(unreadable, reason, err, unreadable.onSkip);
    return null;
  }
}

/**
 * Checks `size` and `batch` as their flags are checked: a ConfigError naming the option (by `names`, else by
 * its key) when one is not an integer in its range.
 */
export function checkEmbedOptions(o: Pick<EmbedOptions, 'size' | 'batch'>, names?: OptionNames): void {
  checkOption(BACKBONE_OPTIONS, 'size', o.size, names);
  checkOption(BACKBONE_OPTIONS, 'batch', o.batch, names);
}

/**
 * Features of every image at `location` (a dataset store, or a local folder of images given as a path or a
 * file:// URL, its symbolic links followed): rows of the backbone's featureDim (`dim`). Undecodable images,
 * links to missing images and the records of unreadable shards count in `failed` (the shards in `skipped`, as
 * train counts them). Throws a ConfigError, before any image is read, when `size` or `batch` is out of range
 * or one forward pass of `batch` images at `size` of a RegNet backbone cannot fit the backend's memory.
 */
export async function embed(backbone: Backbone, location: string, options: EmbedOptions = {}): Promise<Embeddings> {
  return embedItems(backbone, (unreadable) => source(location, options.store ?? {}, unreadable), options);
}

/**
 * Features of the images of a folder's listing (listImages, listClassImages), as `embed` computes them; its
 * broken links count in `failed`.
 */
export async function embedFiles(
  backbone: Backbone,
  listing: ImageListing,
  options: EmbedOptions = {},
): Promise<Embeddings> {
  return embedItems(backbone, (unreadable) => fileItems(listing, unreadable), options);
}

async function embedItems(
  backbone: Backbone,
  items: (unreadable: Unreadable) => AsyncIterable<Item>,
  options: EmbedOptions,
): Promise<Embeddings> {
  checkEmbedOptions(options, options.names);
  const size = options.size ?? backbone.metadata.inputSize;
  const batchSize = options.batch ?? 32;
  // The estimate walks a RegNet: a backbone of another architecture (a library caller's) goes unchecked.
  const { model } = backbone.metadata;
  if (isRegNetName(model))
    checkInference({ model, size, batch: batchSize }, tf.getBackend(), totalmem(), options.names);
  const failed = new FailedImages(options.onSkip);
  const unreadable: Unreadable = { skipped: {}, examples: {}, lost: 0, failed, onSkip: options.onSkip };
  const out: Embeddings = { keys: [], features: [], labels: [], failed: 0, dim: backbone.metadata.featureDim };
  let pending: Array<{ item: Item; pixels: Float32Array }> = [];
  const flush = () => {
    if (pending.length === 0) return;
    const data = new Float32Array(pending.length * size * size * 3);
    pending.forEach((p, i) => data.set(p.pixels, i * size * size * 3));
    const features = tf.tidy(() => backbone.embed(tf.tensor4d(data, [pending.length, size, size, 3])));
    const rows = features.arraySync();
    features.dispose();
    pending.forEach((p, i) => {
      out.keys.push(p.item.key);
      out.labels.push(p.item.label);
      out.features.push(Float32Array.from(rows[i]!));
    });
    pending = [];
  };
  for await (const item of items(unreadable)) {
    const pixels = await evalPixels(await item.bytes(), size, backbone.metadata.mean, backbone.metadata.std);
    if ('error' in pixels) failed.add(item.key, pixels.error);
    else pending.push({ item, pixels });
    if (pending.length === batchSize) flush();
  }
  flush();
  failed.finish();
  return { ...out, failed: failed.count + unreadable.lost, skipped: unreadable.skipped };
}

/**
 * Refuses an output file that names an existing local folder, before any work: a ConfigError saying that
 * `out` (named by `names`, `--out` for the command) names the file to write. Other URLs (s3:) pass.
 */
export async function checkOutFile(location: string, names?: OptionNames): Promise<void> {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location) && !/^file:/i.test(location)) return;
  const found = await stat(localFolder(location)).catch(() => null);
  if (!found?.isDirectory()) return;
  const option = names?.of('out') ?? 'out';
  const inside = /^file:/i.test(location)
    ? `${location.replace(/\/+$/, '')}/embeddings.arrow`
    : join(location, 'embeddings.arrow');
  throw new ConfigError(
    `${option} ${location} is a directory: ${option} names the Arrow IPC file to write, such as ${inside}`,
  );
}

/** The width of every row of `e`, after checking that it has one row per key, each of that width. */
function widthOf(e: Embeddings): number {
  const given = e as Partial<Embeddings> | null;
  if (given === null || typeof given !== 'object' || !Array.isArray(given.keys) || !Array.isArray(given.features))
    throw new ConfigError(
      `embeddings must be { keys: string[], features: Float32Array[], dim? }, got ${given === null || typeof given !== 'object' ? shown(given) : `keys ${shown(given.keys)} and features ${shown(given.features)}`}`,
    );
  // A key that is not a string was written as its String(): 1 as "1", an object as "[object Object]".
  const badKey = e.keys.findIndex((k) => typeof k !== 'string');
  if (badKey >= 0) throw new ConfigError(`embeddings key ${badKey} must be a string, got ${shown(e.keys[badKey])}`);
  if (e.keys.length !== e.features.length)
    throw new ConfigError(
      `embeddings have ${e.keys.length} keys but ${e.features.length} feature rows: each key needs one row`,
    );
  const dim = e.dim ?? e.features[0]?.length;
  if (dim === undefined)
    throw new ConfigError(
      'embeddings have no row and no dim: dim (the backbone featureDim) gives the column its width',
    );
  if (!Number.isSafeInteger(dim) || dim < 1)
    throw new ConfigError(`embeddings dim must be an integer >= 1, got ${dim}`);
  const bad = e.features.findIndex((f) => f?.length !== dim);
  if (bad >= 0)
    throw new ConfigError(
      `embeddings row ${bad} (key ${JSON.stringify(e.keys[bad])}) has ${e.features[bad]?.length ?? 0} features, not ${dim} (${e.dim === undefined ? 'the width of row 0' : 'dim'})`,
    );
  return dim;
}

/**
 * Writes the embeddings as an Arrow IPC file to `location` (a path or a store URL); returns its full URL. The
 * column is FixedSizeList[dim] even with no row, so files of one backbone share a schema (and concatenate).
 * Throws a ConfigError, writing nothing, when `location` is a local folder, a key is not a string, or `e` does
 * not have one feature row per key, each of `dim` values (the width of the first row when `dim` is not given;
 * with no row, `dim` is needed).
 */
export async function writeEmbeddings(location: string, e: Embeddings, options: StoreOptions = {}): Promise<string> {
  const dim = widthOf(e);
  await checkOutFile(location);
  const flat = new Float32Array(e.features.length * dim);
  e.features.forEach((f, i) => flat.set(f, i * dim));
  const child = makeData({ type: new Float32(), length: flat.length, nullCount: 0, data: flat });
  const type = new FixedSizeList(dim, new Field('item', new Float32(), false));
  const table = new Table({
    key: vectorFromArray(e.keys, new Utf8()),
    embedding: makeVector(makeData({ type, length: e.features.length, nullCount: 0, child })),
  });
  return putFile(location, tableToIPC(table, 'file'), options);
}
