/**
 * `wildstream embed`: backbone features for every image of a dataset (committed units, in unit order) or of a
 * local folder, written as an Arrow IPC file (`key` utf8, `embedding` fixed-size list of float32) that any
 * Arrow reader opens. Images that do not decode are counted, not fatal.
 */
import { readFile } from 'node:fs/promises';
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
import { listUnits } from '../shards/dataset.js';
import { ShardReader } from '../shards/reader.js';
import { putFile } from '../shards/output.js';
import { openStore, type StoreOptions } from '../shards/store.js';
import type { OptionNames } from '../options/declare.js';
import type { Backbone } from '../train/export.js';
import { checkInference } from '../train/memory.js';
import { isRegNetName } from '../train/regnet-spec.js';
import { evalPixels, listImages } from './images.js';

export interface Embeddings {
  keys: string[];
  features: Float32Array[];
  /** Labels (class folders) when the source is a folder. */
  labels: string[];
  failed: number;
}

export interface EmbedOptions {
  /** Square input side. @default the backbone's training size */
  size?: number;
  /** Images per forward pass. @default 32 */
  batch?: number;
  /** S3 endpoint and the like, for a dataset on S3. */
  store?: StoreOptions;
  /** How a refusal names the size and batch options (a pipeline's embed keys). @default the command's flags */
  names?: OptionNames;
}

interface Item {
  key: string;
  label: string;
  bytes: () => Promise<Uint8Array>;
}

/** Images of a dataset store (when it has committed units) or else of a local folder. */
async function* source(location: string, options: StoreOptions = {}): AsyncGenerator<Item> {
  const store = await openStore(location, options);
  const units = await listUnits(store);
  if (units.length === 0) {
    for (const f of await listImages(location)) yield { key: f.key, label: f.label, bytes: () => readFile(f.path) };
    return;
  }
  for (const unit of units) {
    const reader = await ShardReader.open(store, unit.shard, { size: unit.bytes });
    for await (const r of reader.records()) yield { key: r.key, label: '', bytes: async () => r.image };
  }
}

/**
 * Features of every image at `location` (a dataset store, or a folder of class folders). Throws a ConfigError,
 * before any image is read, when one forward pass of `batch` images at `size` of a RegNet backbone cannot fit
 * the backend's memory.
 */
export async function embed(backbone: Backbone, location: string, options: EmbedOptions = {}): Promise<Embeddings> {
  const size = options.size ?? backbone.metadata.inputSize;
  const batchSize = options.batch ?? 32;
  // The estimate walks a RegNet: a backbone of another architecture (a library caller's) goes unchecked.
  const { model } = backbone.metadata;
  if (isRegNetName(model))
    checkInference({ model, size, batch: batchSize }, tf.getBackend(), totalmem(), options.names);
  const out: Embeddings = { keys: [], features: [], labels: [], failed: 0 };
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
  for await (const item of source(location, options.store)) {
    const pixels = await evalPixels(await item.bytes(), size, backbone.metadata.mean, backbone.metadata.std);
    if (!pixels) out.failed++;
    else pending.push({ item, pixels });
    if (pending.length === batchSize) flush();
  }
  flush();
  return out;
}

/** Writes the embeddings as an Arrow IPC file to `location` (a path or a store URL); returns its full URL. */
export async function writeEmbeddings(location: string, e: Embeddings, options: StoreOptions = {}): Promise<string> {
  const dim = e.features[0]?.length ?? 0;
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
