/**
 * A model folder as `wildstream export` writes it and loadBackbone reads it: `model.json` (the commit point)
 * naming its weights file, checked field by field, so a damaged folder is one ConfigError naming what is wrong.
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel, type GraphModel } from '@tensorflow/tfjs-converter';
import { ConfigError, NotFoundError, oneLine } from '../errors.js';
import { MODEL_JSON_KEY, weightsKey } from '../shards/keys.js';
import { checkStore, getBytes, pathProblem, type Store } from '../shards/store.js';

export interface BackboneMetadata {
  model: string;
  step: number;
  featureDim: number;
  /** Side of the square input the backbone was trained around (the largest crop). */
  inputSize: number;
  mean: number[];
  std: number[];
}

/** The file a reader opens first, and the one an export writes last: its commit point. */
export const MODEL_JSON = MODEL_JSON_KEY;

/**
 * The weights files of exports: `weights-<16 hex digits of the bytes' SHA-256>.bin`, and `weights.bin`, the one
 * name of exports written before names carried the hash (still read: a loader opens what model.json names).
 */
export const WEIGHTS_FILE = /^weights(-[0-9a-f]{16})?\.bin$/;

/** Bytes a value of each dtype takes in a weights file; `wildstream export` writes float32 and int32 only. */
const DTYPE_BYTES = { float32: 4, int32: 4, bool: 1 } as const;

interface WeightSpec {
  name: string;
  shape: number[];
  dtype: keyof typeof DTYPE_BYTES;
}

/** The fields of model.json that loadBackbone reads, as parseModelJson checks them. */
export interface ModelJson {
  format: 'graph-model';
  modelTopology: { node: unknown[] };
  /** Groups of tensors, each stored in its `paths` (files of the folder) one after another, groups in order. */
  weightsManifest: Array<{ paths: string[]; weights: WeightSpec[] }>;
  userDefinedMetadata: BackboneMetadata;
}

export interface Backbone {
  model: GraphModel;
  metadata: BackboneMetadata;
  /** Features of normalised NHWC images. */
  embed(images: tf.Tensor4D): tf.Tensor2D;
}

/** What to run to put a backbone in a model folder: the tail of loadBackbone's refusals. */
const EXPORT_HINT = 'export a trained run into it with `wildstream export <run> --out <dir>`';

/** How many times loadBackbone reads model.json when an export replaces it meanwhile. */
const LOAD_ATTEMPTS = 3;

/**
 * Loads an exported backbone with tfjs-converter's loadGraphModel. Throws a ConfigError naming the folder and
 * the export command when `store` holds no model.json, a model.json that is not one of `wildstream export`'s,
 * or a damaged export: a model.json that is not JSON or lacks a field the loader reads (topology, weights
 * manifest, metadata), or a weights file that is missing or of another size than its manifest's tensors need.
 * Reads folders of every export version: model.json names the weights file (`weights-<hash>.bin`, formerly
 * `weights.bin`).
 */
export async function loadBackbone(store: Store): Promise<Backbone> {
  checkStore(store, "the model folder's store");
  for (let attempt = 1; ; attempt++) {
    const bytes = await exportedFile(store, MODEL_JSON);
    const json = parseModelJson(store, bytes);
    const weights = await readWeights(store, json);
    if (typeof weights === 'string') {
      // An export may have replaced model.json and removed the weights the one read here names: read it again.
      if (attempt < LOAD_ATTEMPTS && !(await unchanged(store, MODEL_JSON, bytes))) continue;
      throw damagedExport(store, `${weights}, the weights file its model.json names, is missing`);
    }
    let model: GraphModel;
    try {
      model = await loadGraphModel(
        tf.io.fromMemory({
          modelTopology: json.modelTopology,
          weightSpecs: json.weightsManifest.flatMap((group) => group.weights),
          weightData: weights.buffer as ArrayBuffer,
          format: json.format,
        }),
      );
    } catch (err) {
      const why = oneLine(err);
      throw damagedExport(store, `its model.json and weights do not load as a tfjs graph model (${why})`, err);
    }
    return {
      model,
      metadata: json.userDefinedMetadata,
      embed: (images) => model.execute({ images }, 'features') as tf.Tensor2D,
    };
  }
}

/** The ConfigError of a model folder whose export is damaged: the folder, what is wrong, and what to do. */
function damagedExport(store: Store, what: string, cause?: unknown): ConfigError {
  return new ConfigError(
    `the model folder ${store.url} is damaged: ${what}; export the run into it again with ` +
      '`wildstream export <run> --out <dir>`',
    { cause },
  );
}

/**
 * model.json's bytes as the fields loadBackbone reads, checked: a ConfigError naming the folder, the file and
 * the field when it is not JSON, not a wildstream backbone, or of another shape.
 */
export function parseModelJson(store: Store, bytes: Uint8Array): ModelJson {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw damagedExport(store, `its ${MODEL_JSON} is not JSON (${oneLine(err)})`, err);
  }
  if (!isRecord(json)) throw damagedExport(store, `its ${MODEL_JSON} is not a JSON object`);
  if (json.format !== 'graph-model' || !isRecord(json.userDefinedMetadata) || !json.userDefinedMetadata.featureDim) {
    throw new ConfigError(`${store.url} holds no wildstream backbone (its model.json is not one); ${EXPORT_HINT}`);
  }
  const problem =
    (isRecord(json.modelTopology) && Array.isArray(json.modelTopology.node)
      ? undefined
      : 'has no modelTopology with a node list') ??
    manifestProblem(json.weightsManifest) ??
    metadataProblem(json.userDefinedMetadata);
  if (problem) throw damagedExport(store, `its ${MODEL_JSON} ${problem}`);
  return json as unknown as ModelJson;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** What is wrong with a weightsManifest, or undefined: groups of file names and { name, shape, dtype } tensors. */
function manifestProblem(manifest: unknown): string | undefined {
  if (!Array.isArray(manifest) || manifest.length === 0) {
    return 'has no weightsManifest (a non-empty list of { paths, weights })';
  }
  for (const [i, group] of manifest.entries()) {
    const at = `weightsManifest[${i}]`;
    if (!isRecord(group)) return `has a ${at} that is not a { paths, weights } object`;
    const { paths, weights } = group;
    if (!Array.isArray(paths) || paths.length === 0 || !paths.every(isFileName)) {
      return `has a ${at}.paths that is not a non-empty list of file names of the folder`;
    }
    if (!Array.isArray(weights)) return `has a ${at}.weights that is not a list`;
    for (const [j, w] of weights.entries()) {
      const valid =
        isRecord(w) &&
        typeof w.name === 'string' &&
        Array.isArray(w.shape) &&
        w.shape.every((n) => Number.isSafeInteger(n) && n >= 0);
      if (!valid) return `has a ${at}.weights[${j}] that is not a tensor's { name, shape, dtype }`;
      if (!Object.hasOwn(DTYPE_BYTES, w.dtype as string) || w.quantization !== undefined) {
        return `has a tensor ${w.name} of dtype ${String(w.dtype)}${w.quantization ? ' (quantized)' : ''}, which wildstream export never writes`;
      }
    }
  }
  return undefined;
}

/** A key of the store's folder (no `..`, no empty segment, no backslash). */
function isFileName(path: unknown): path is string {
  return typeof path === 'string' && path !== '' && !path.includes('\\') && pathProblem(path) === undefined;
}

/** What is wrong with the metadata an export writes (BackboneMetadata), or undefined. */
function metadataProblem(meta: Record<string, unknown>): string | undefined {
  const count = (min: number) => (v: unknown) => Number.isSafeInteger(v) && (v as number) >= min;
  const triple = (ok: (n: number) => boolean) => (v: unknown) =>
    Array.isArray(v) && v.length === 3 && v.every((n) => typeof n === 'number' && Number.isFinite(n) && ok(n));
  const checks: Array<[keyof BackboneMetadata, (v: unknown) => boolean, string]> = [
    ['model', (v) => typeof v === 'string', 'a string'],
    ['step', count(0), 'an integer >= 0'],
    ['featureDim', count(1), 'an integer >= 1'],
    ['inputSize', count(1), 'an integer >= 1'],
    ['mean', triple(() => true), '3 finite numbers'],
    ['std', triple((n) => n > 0), '3 positive numbers'],
  ];
  for (const [key, ok, want] of checks) {
    if (ok(meta[key])) continue;
    const value = meta[key] === undefined ? 'missing' : (JSON.stringify(meta[key]) ?? String(meta[key])).slice(0, 60);
    return `has userDefinedMetadata.${key} ${value}, not ${want}`;
  }
  return undefined;
}

/**
 * The weights files model.json names, one after another in its order, each group of the size its tensors need
 * (ConfigError otherwise); or the name of the first file that is missing.
 */
async function readWeights(store: Store, json: ModelJson): Promise<Uint8Array | string> {
  const files: Uint8Array[] = [];
  for (const group of json.weightsManifest) {
    let have = 0;
    for (const path of group.paths) {
      const bytes = await getBytes(store, path).catch((err: unknown) => {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      });
      if (!bytes) return path;
      files.push(bytes);
      have += bytes.byteLength;
    }
    const need = group.weights.reduce((sum, w) => sum + w.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[w.dtype], 0);
    if (have !== need) {
      const names = group.paths.join(' + ');
      throw damagedExport(
        store,
        `${names} ${group.paths.length === 1 ? 'holds' : 'hold'} ${have} bytes where the ${group.weights.length} ` +
          `tensors its ${MODEL_JSON} lists need ${need} (${have < need ? 'cut short' : 'too long'}: written ` +
          'partly, or by another export)',
      );
    }
    group.paths.forEach((path, i) => checkWeightsHash(store, path, files[files.length - group.paths.length + i]!));
  }
  // One ArrayBuffer of exactly the weights, as fromMemory takes them (getBytes may give views of a shared pool).
  const all = new Uint8Array(files.reduce((n, f) => n + f.byteLength, 0));
  let offset = 0;
  for (const f of files) {
    all.set(f, offset);
    offset += f.byteLength;
  }
  return all;
}

/**
 * A weights file named by its hash (`weights-<16 hex>.bin`) must hold bytes of that hash: bytes of the right
 * size can still be wrong (a flipped bit on disk, a store or gateway answering another window of the object),
 * and a model loaded from them embeds wrongly without a word.
 */
function checkWeightsHash(store: Store, path: string, bytes: Uint8Array): void {
  if (
    !/^weights-[0-9a-f]{16}\.bin$/.test(path) ||
    weightsKey(createHash('sha256').update(bytes).digest('hex')) === path
  )
    return;
  throw damagedExport(store, `${path} does not hold the bytes its name is the hash of (damaged after it was written)`);
}

/** Whether `key` still holds `bytes` (false when it is gone). */
async function unchanged(store: Store, key: string, bytes: Uint8Array): Promise<boolean> {
  const now = await getBytes(store, key).catch((err: unknown) => {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  });
  return now !== undefined && Buffer.from(now).equals(Buffer.from(bytes));
}

/** A file of an exported model; a missing one is the user's folder holding no export, so a ConfigError. */
async function exportedFile(store: Store, key: string): Promise<Uint8Array> {
  try {
    return await getBytes(store, key);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    throw new ConfigError(`${store.url} holds no exported model (no ${key}); ${EXPORT_HINT}`, { cause: err });
  }
}
