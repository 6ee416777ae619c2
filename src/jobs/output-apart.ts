/**
 * The one check every command's output goes through before any work (export, plot, embed, augment preview,
 * train), and every stage of a pipeline before its first stage runs (pipeline/apart.ts): that writing it
 * overwrites none of the command's inputs. `embed --out <dataset>/shards/000000.arrow` wrote over the shard it
 * had just read, and `plot --out <run>/metrics/...` over a metrics file.
 */
import { realpath } from 'node:fs/promises';
import { basename, dirname, join, sep } from 'node:path';
import { ConfigError } from '../errors.js';
import { FLAG_NAMES, type OptionNames } from '../options/declare.js';
import {
  CHECKPOINTS_DIR,
  CRAWL_DIR,
  EXPORT_PENDING_KEY,
  FAILURES_DIR,
  INGEST_LOCK_KEY,
  MANIFEST_KEY,
  METRICS_DIR,
  MODEL_JSON_KEY,
  QUEUE_MARK_KEY,
  SHARDS_DIR,
  STAGING_DIR,
  STAMPS_DIR,
  TRAIN_LOCK_KEY,
  UNITS_DIR,
} from '../shards/keys.js';
import { localRoot, parseS3Url } from '../shards/store.js';
import { IMAGE_NAME } from '../eval/images.js';
import { WEIGHTS_FILE } from '../train/model-folder.js';

/**
 * What of a place a kind of store writes or reads: given the names below the place that lead to another location
 * (`['metrics', 'step-1.jsonl']`) and whether that location is a folder an output writes whole, whether it is
 * this store's. A run owns `checkpoints/`, `metrics/`, `pipeline/` and `train.lock`, so `plot --out
 * <run>/curves.png` is apart from the run and `--out <run>/metrics/x` is not.
 */
export type Owns = (below: readonly string[], folder: boolean) => boolean;

/** Owns the names (or names matching) `list` at the top of a place. */
export const topNames =
  (...list: Array<string | RegExp>): Owns =>
  (below) =>
    list.some((n) => (typeof n === 'string' ? n === below[0] : n.test(below[0] ?? '')));

export const RUN_FILES = topNames(CHECKPOINTS_DIR, METRICS_DIR, STAMPS_DIR, TRAIN_LOCK_KEY);
export const DATASET_FILES = topNames(
  MANIFEST_KEY,
  UNITS_DIR,
  SHARDS_DIR,
  FAILURES_DIR,
  STAGING_DIR,
  INGEST_LOCK_KEY,
  QUEUE_MARK_KEY,
  CRAWL_DIR,
  EXPORT_PENDING_KEY,
);
export const MODEL_FILES = topNames(MODEL_JSON_KEY, EXPORT_PENDING_KEY, WEIGHTS_FILE);
/** A folder of images (embed's, k-NN's) owns its images, and any folder written into it (it may write images). */
export const IMAGE_FILES: Owns = (below, folder) => folder || IMAGE_NAME.test(below.at(-1) ?? '');
/** Embed's input: a dataset, or a folder of images. */
export const DATASET_OR_IMAGES: Owns = (below, folder) => DATASET_FILES(below, folder) || IMAGE_FILES(below, folder);

/** A place a command reads: its location, what it is (for the refusal: `the model folder`), and what it owns. */
export interface InputPlace {
  location: string;
  what: string;
  owns: Owns;
  /** Who uses it, for the refusal, when not the command reading it (`the report stage writes`). */
  usedBy?: string;
}

/** A command's output: its option's key (`out`), the location, and what it writes there when it is a folder. */
export interface OutputPlace {
  key: string;
  location: string;
  /** The names the output writes below its location; absent for one file, which holds nothing. */
  owns?: Owns;
}

/**
 * Refuses an output that would overwrite what its command reads, before any work: the output is one of the
 * inputs, lies inside one where the input keeps its files (a dataset's `shards/`, a run's `metrics/`, a model's
 * `model.json`), or is a folder that would write its files where an input lies. Local places are compared as
 * absolute paths through their symbolic links (as far as they exist), S3 ones by bucket and key prefix. Throws a
 * one-line ConfigError naming the option (as `names` words it), the output and the input; and the ConfigError
 * openStore gives for a malformed file: or s3: URL.
 */
export async function checkOutputApart(
  command: string,
  out: OutputPlace,
  inputs: InputPlace[],
  names: OptionNames = FLAG_NAMES,
): Promise<void> {
  for (const input of inputs) {
    const { relation, below } = await relate(out.location, input.location);
    const clash =
      relation === 'is' ||
      (relation === 'lies inside' && input.owns(below, out.owns !== undefined)) ||
      (relation === 'holds' && out.owns !== undefined && out.owns(below, true));
    if (!clash) continue;
    const option = names.of(out.key);
    throw new ConfigError(
      `${option} ${out.location} ${relation} ${input.what} ${input.location}, ${relation === 'holds' ? `where ${command} would write its files` : `which ${input.usedBy ?? `${command} reads`}`}, and ` +
        `writing there could overwrite it; give ${option} a place outside it`,
    );
  }
}

/** How one place stands to another: it `is` the other, `lies inside` it, `holds` it, or is apart (undefined). */
export type PlaceRelation = 'is' | 'lies inside' | 'holds' | undefined;

/**
 * How location `a` stands to location `b`, compared as checkOutputApart compares them: local places as
 * absolute paths through their symbolic links (as far as they exist), S3 ones by bucket and key prefix. Throws
 * the ConfigError openStore gives for a malformed file: or s3: URL.
 */
export async function placeRelation(a: string, b: string): Promise<PlaceRelation> {
  return (await relate(a, b)).relation;
}

/** placeRelation, and the names below the outer place that lead to the inner one (none when apart or the same). */
async function relate(a: string, b: string): Promise<{ relation: PlaceRelation; below: string[] }> {
  const [first, second] = [await placeOf(a), await placeOf(b)];
  if (within(first, second))
    return { relation: first.length === second.length ? 'is' : 'lies inside', below: first.slice(second.length) };
  if (within(second, first)) return { relation: 'holds', below: second.slice(first.length) };
  return { relation: undefined, below: [] };
}

/**
 * A location as the names from its root: `['s3://bucket', ...key prefix]`, or `['file://', ...path]` with the
 * path made absolute and its existing part resolved through links; another scheme is one opaque name, as
 * openStore refuses it.
 */
async function placeOf(location: string): Promise<string[]> {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(location)?.[1]?.toLowerCase();
  if (scheme === 's3') {
    const { bucket, prefix } = parseS3Url(location);
    return [`s3://${bucket}`, ...prefix.split('/').filter(Boolean)];
  }
  if (scheme !== undefined && scheme !== 'file') return [location];
  return ['file://', ...(await realPath(localRoot(location))).split(sep).filter(Boolean)];
}

/** `path` through its symbolic links as far as it exists (an output need not exist yet), the rest as given. */
async function realPath(path: string): Promise<string> {
  const rest: string[] = [];
  for (let at = path; ; at = dirname(at)) {
    const real = await realpath(at).catch(() => undefined);
    if (real !== undefined) return join(real, ...rest);
    if (dirname(at) === at) return path;
    rest.unshift(basename(at));
  }
}

/** Whether place `a` is `b` or lies inside it. */
const within = (a: string[], b: string[]) => a.length >= b.length && b.every((name, i) => a[i] === name);
