/**
 * The pipeline file: stages (ingest or crawl, train, export, embed, report) with their settings, validated
 * before any work starts. A stage's keys are its command's options in snake_case, declared once with the
 * command (see STAGE_COMMANDS); `lists`, `seeds`, `site`, `export.baseline` and `report` are the pipeline's own.
 * Unknown keys (with the nearest known one), wrong types, missing stores and a stage output over what its stage
 * reads (apart.ts) are one-line errors naming the key;
 * `--set key.path=value` overrides are applied (value parsed as YAML) before validation. YAML merge keys
 * (`<<: *anchor`) are read; top-level `x-` keys hold anchors and are ignored.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { CRAWL_OPTIONS } from '../crawl/options.js';
import { ConfigError } from '../errors.js';
import { cropCount } from '../crops.js';
import { EMBED_OPTIONS, KNN_OPTIONS } from '../eval/options.js';
import { INGEST_OPTIONS } from '../ingest/options.js';
import { EXPORT_RUN_OPTIONS } from '../jobs/outputs.js';
import { checkRetryOptions } from '../jobs/ingest.js';
import { TRAIN_RUN_OPTIONS } from '../jobs/training.js';
import { omit, optional, pipelineNames, stringList, type OptionSet } from '../options/declare.js';
import { describeIssue, stageSchema } from '../options/pipeline.js';
import { STORE_OPTIONS } from '../shards/options.js';
import { checkStoreUrl } from '../shards/store.js';
import { checkStagesApart } from './apart.js';

const store = z.string().min(1, 'a store is required (a path, file:///abs/path or s3://bucket/prefix)');
const int = (min = 0) => z.number().int().min(min);

/**
 * Each stage's options, and the command whose flags they are. Positional arguments are the pipeline's to fill:
 * ingest's lists (`lists`), crawl's seeds (`seeds`), export's checkpoints (train.out), embed's input (the dataset).
 * Keys a pipeline fills from another stage when absent: train.data (ingest.out or crawl.out), embed.model
 * (export.out) and embed.backend (train.backend).
 */
export const STAGE_COMMANDS = {
  ingest: { command: 'ingest', options: INGEST_OPTIONS as OptionSet },
  crawl: { command: 'crawl', options: CRAWL_OPTIONS as OptionSet },
  train: { command: 'train', options: TRAIN_RUN_OPTIONS as OptionSet },
  export: { command: 'export', options: EXPORT_RUN_OPTIONS as OptionSet },
  embed: { command: 'embed', options: EMBED_OPTIONS as OptionSet },
} as const;

const storeKeys = Object.keys(STORE_OPTIONS) as Array<keyof typeof STORE_OPTIONS>;

/** A URL list path or seed URL: `lists: urls.txt` is `lists: [urls.txt]` (stringList, one rule for every list). */
const nonEmpty = z.string().min(1);
const ingest = stageSchema(INGEST_OPTIONS, { lists: stringList(nonEmpty).optional() });
const crawl = stageSchema(CRAWL_OPTIONS, { seeds: stringList(nonEmpty, 1) });
const train = stageSchema(optional(TRAIN_RUN_OPTIONS, 'data'));
/** `baseline`: also export the run's initial weights there (the random-init comparison of the report). */
const exportStage = stageSchema(EXPORT_RUN_OPTIONS, { baseline: store.optional() });
const embed = stageSchema(optional(EMBED_OPTIONS, 'model', 'backend'));

const report = z.strictObject({
  out: z.string().min(1),
  /** Labelled folders to evaluate k-NN on; with `site: demo` they are generated from the fixture's hidden classes. */
  knn: stageSchema(omit(KNN_OPTIONS, 'model', 'backend', ...storeKeys)).optional(),
  /** Labelled images generated for the demo's k-NN (half to vote with, half to classify). */
  eval_images: int(4).optional(),
});

export const PipelineSchema = z.strictObject({
  /** `demo`: start the built-in fixture website on 127.0.0.1 and ingest its URL list. */
  site: z.literal('demo').optional(),
  ingest: ingest.optional(),
  crawl: crawl.optional(),
  train: train.optional(),
  export: exportStage.optional(),
  embed: embed.optional(),
  report: report.optional(),
});

export type Pipeline = z.infer<typeof PipelineSchema>;

/**
 * How pipeline files and `--set` values are parsed: YAML 1.2 with YAML 1.1's merge keys (`<<: *defaults`), so
 * stages can share settings kept under a top-level `x-` key. The yaml library defines keys such as `__proto__`
 * as own properties: no key of a file reaches a prototype (they are refused as unknown keys).
 */
const YAML_OPTIONS = { merge: true } as const;

/** Path segments that would walk into a prototype instead of the document: never keys of a pipeline. */
const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Top-level keys a pipeline ignores, for anchors to merge from (`x-defaults: &d`), as Docker Compose does. */
const isExtensionKey = (key: string) => key.startsWith('x-');

/**
 * Sets `a.b.c` in a plain object tree to `value` (YAML-parsed, so numbers and booleans keep their type).
 * Refuses (ConfigError, exit 2) an assignment without `=`, a path through `__proto__`, `constructor` or
 * `prototype`, and a value that is not YAML, naming the --set argument.
 */
export function applySet(doc: Record<string, unknown>, assignment: string): void {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new ConfigError(`--set expects key.path=value, got "${assignment}"`);
  const key = assignment.slice(0, eq);
  const path = key.split('.');
  const unsafe = path.find((k) => UNSAFE_KEYS.has(k));
  if (unsafe !== undefined) throw new ConfigError(`--set ${assignment}: ${unsafe}: unknown key`);
  let value: unknown;
  try {
    value = parse(assignment.slice(eq + 1), YAML_OPTIONS);
  } catch (err) {
    const why = (err as Error).message.split('\n')[0]!.replace(/ at line \d+, column \d+:.*$/, '');
    throw new ConfigError(`--set ${assignment}: not a YAML value (${why})`);
  }
  let node = doc;
  for (const k of path.slice(0, -1)) {
    const next = Object.hasOwn(node, k) ? node[k] : undefined;
    if (typeof next === 'object' && next !== null && !Array.isArray(next)) node = next as Record<string, unknown>;
    else node = node[k] = {};
  }
  node[path[path.length - 1]!] = value;
}

export function validatePipeline(doc: unknown, where: string): Pipeline {
  const result = PipelineSchema.safeParse(doc ?? {});
  if (result.success) return result.data;
  throw new ConfigError(`${where}: ${describeIssue(PipelineSchema, result.error)}`);
}

export async function loadPipeline(file: string, sets: string[] = []): Promise<Pipeline> {
  let doc: unknown;
  try {
    doc = parse(await readFile(file, 'utf8'), YAML_OPTIONS);
  } catch (err) {
    throw new ConfigError(`${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc !== null && (typeof doc !== 'object' || Array.isArray(doc)))
    throw new ConfigError(`${file}: expected a mapping of stages`);
  const tree = (doc ?? {}) as Record<string, unknown>;
  for (const s of sets) applySet(tree, s);
  for (const key of Object.keys(tree)) if (isExtensionKey(key)) delete tree[key];
  const pipeline = validatePipeline(tree, file);
  if (
    !pipeline.ingest &&
    !pipeline.crawl &&
    !pipeline.train &&
    !pipeline.export &&
    !pipeline.embed &&
    !pipeline.report
  ) {
    throw new ConfigError(`${file}: no stage to run (ingest, crawl, train, export, embed, report)`);
  }
  checkStores(pipeline, file);
  checkDistinctOutputs(pipeline, file);
  if (pipeline.train) checkTrainStage(pipeline.train, file);
  if (pipeline.ingest) {
    try {
      checkRetryOptions(pipeline.ingest, pipelineNames('ingest'));
    } catch (err) {
      throw new ConfigError(`${file}: ${(err as Error).message}`);
    }
  }
  if (pipeline.ingest && pipeline.crawl)
    throw new ConfigError(`${file}: crawl: use either ingest or crawl in one pipeline`);
  if (pipeline.train && !pipeline.train.data && !pipeline.ingest && !pipeline.crawl)
    throw new ConfigError(`${file}: train.data: a store is required when there is no ingest or crawl stage`);
  if (pipeline.ingest && !pipeline.site && !pipeline.ingest.lists?.length)
    throw new ConfigError(`${file}: ingest.lists: at least one URL list is required (or site: demo)`);
  if (pipeline.report && !pipeline.export) throw new ConfigError(`${file}: report: needs an export stage`);
  if (pipeline.embed && !pipeline.export) throw new ConfigError(`${file}: embed: needs an export stage`);
  if (pipeline.export && !pipeline.train) throw new ConfigError(`${file}: export: needs a train stage`);
  await checkStagesApart(pipeline, file);
  return pipeline;
}

/** Every store a stage opens, by its key in the file. */
function storesOf(p: Pipeline): Array<[key: string, url: string | undefined]> {
  return [
    ['ingest.out', p.ingest?.out],
    ['crawl.out', p.crawl?.out],
    ['train.data', p.train?.data],
    ['train.out', p.train?.out],
    ['export.out', p.export?.out],
    ['export.baseline', p.export?.baseline],
    ['embed.model', p.embed?.model],
    ['embed.out', p.embed?.out],
    ['report.out', p.report?.out],
  ];
}

/** The outputs of storesOf that are one file (an Arrow file of embeddings), not a folder. */
const FILE_OUTPUTS = new Set(['embed.out']);

/** Where a store URL points, for comparing two: local paths absolute, no trailing slash. */
function placeOf(url: string): string {
  if (/^file:/i.test(url)) return resolve(fileURLToPath(url));
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return resolve(url);
  return url.replace(/\/+$/, '');
}

/**
 * Two stages writing one place overwrite each other without a word: `export.baseline` equal to `export.out`
 * replaced the trained model by the initial one, which embed then used and the report compared with itself.
 */
function checkDistinctOutputs(p: Pipeline, file: string): void {
  const outputs = storesOf(p).filter(([key, url]) => url !== undefined && !['train.data', 'embed.model'].includes(key));
  const seen = new Map<string, string>();
  for (const [key, url] of outputs) {
    const place = placeOf(url!);
    const other = seen.get(place);
    if (other) throw new ConfigError(`${file}: ${key}: ${url} is also ${other}; give each stage its own output`);
    seen.set(place, key);
  }
}

/**
 * A store URL a stage would refuse (`s3:/bkt/x`, a query string, an S3 prefix with `..`) is refused before the
 * first stage runs, naming its key: not after hours of ingest, when the train or export stage opens it.
 */
function checkStores(p: Pipeline, file: string): void {
  for (const [key, url] of storesOf(p)) {
    if (url === undefined) continue;
    try {
      // A file output is one key of its own, not a prefix that must leave room for a store's keys below it.
      checkStoreUrl(url, FILE_OUTPUTS.has(key) ? [] : undefined);
    } catch (err) {
      throw new ConfigError(`${file}: ${key}: ${(err as Error).message}`);
    }
  }
}

/** What the train stage would refuse only after the stages before it ran: checked before any work. */
function checkTrainStage(t: NonNullable<Pipeline['train']>, file: string): void {
  if (t.steps !== undefined && t.epochs !== undefined)
    throw new ConfigError(`${file}: train.epochs: set steps or epochs, not both`);
  const backend = t.backend ?? 'auto';
  if (t.precision !== undefined && backend !== 'webgpu' && backend !== 'auto')
    throw new ConfigError(`${file}: train.precision: applies to the webgpu backend, and train.backend is ${backend}`);
  const batch = t.batch ?? TRAIN_RUN_OPTIONS.batch.default!;
  if ((t.queueLength ?? 0) % batch !== 0)
    throw new ConfigError(
      `${file}: train.queue_length: ${t.queueLength} is not a multiple of train.batch (${batch}): the queue holds whole batches`,
    );
  if ((t.queueStart ?? 0) > 0 && !t.queueLength)
    throw new ConfigError(
      `${file}: train.queue_start: ${t.queueStart} needs a queue, and train.queue_length is 0 (no queue): set it, or leave out train.queue_start`,
    );
  if (t.crops !== undefined && cropCount(t.crops) < 2)
    throw new ConfigError(`${file}: train.crops: SwAV needs at least two crops per image, got ${t.crops}`);
}

/** The dataset the later stages read: train.data, else what ingest or crawl writes. */
export function datasetOf(p: Pipeline): string {
  const data = p.train?.data ?? p.ingest?.out ?? p.crawl?.out;
  if (!data) throw new ConfigError('the pipeline names no dataset (train.data, ingest.out or crawl.out)');
  return data;
}
