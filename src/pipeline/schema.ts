/**
 * The pipeline file: stages (ingest, train, export, report) with their settings, validated before any work
 * starts. Unknown keys, wrong types and missing stores are one-line errors naming the key; `--set
 * key.path=value` overrides are applied (value parsed as YAML) before validation.
 */
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.js';

const int = (min = 0) => z.number().int().min(min);
const store = z.string().min(1, 'a store is required (a path, file:///abs/path or s3://bucket/prefix)');

const ingest = z.strictObject({
  lists: z.array(z.string().min(1)).optional(),
  out: store,
  unit_size: int(1).optional(),
  concurrency: int(1).optional(),
  max_side: int(16).optional(),
  allow_address: z.array(z.string()).optional(),
  allow_private_network: z.boolean().optional(),
});

const crawl = z.strictObject({
  seeds: z.array(z.string().min(1)).min(1),
  out: store,
  max_pages: int(1).optional(),
  max_depth: int().optional(),
  hosts: z.string().optional(),
  delay_ms: int().optional(),
  connections_per_host: int(1).optional(),
  unit_size: int(1).optional(),
  max_side: int(16).optional(),
  allow_address: z.array(z.string()).optional(),
  allow_private_network: z.boolean().optional(),
  user_agent_contact: z.string().optional(),
});

const train = z.strictObject({
  data: store.optional(),
  out: store,
  model: z.string().optional(),
  batch: int(1).optional(),
  steps: int(1).optional(),
  epochs: int(1).optional(),
  crops: z.string().optional(),
  backend: z.enum(['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu']).optional(),
  seed: int().optional(),
  lr: z.number().min(0).optional(),
  final_lr: z.number().min(0).optional(),
  warmup_steps: int().optional(),
  weight_decay: z.number().min(0).optional(),
  epsilon: z.number().positive().optional(),
  temperature: z.number().positive().optional(),
  prototypes: int(2).optional(),
  hidden: int(1).optional(),
  dim: int(1).optional(),
  freeze_prototypes: int().optional(),
  jitter_strength: z.number().min(0).max(2.5).optional(),
  lars_all: z.boolean().optional(),
  lars_clip: z.boolean().optional(),
  lars_trust: z.number().positive().optional(),
  blur: z.number().min(0).max(1).optional(),
  queue_length: int().optional(),
  queue_start: int().optional(),
  checkpoint_every: int(1).optional(),
  log_every: int(1).optional(),
  threads: int(1).optional(),
  follow: z.boolean().optional(),
});

const exportStage = z.strictObject({ out: store, baseline: store.optional() });

const embedStage = z.strictObject({ out: z.string().min(1), size: int(8).optional(), batch: int(1).optional() });

const report = z.strictObject({
  out: z.string().min(1),
  /** Labelled folders generated from the fixture's hidden classes (offline demo) or given as paths. */
  knn: z.strictObject({ train: z.string(), test: z.string(), k: int(1).optional() }).optional(),
  eval_images: int(4).optional(),
});

export const PipelineSchema = z.strictObject({
  /** `demo`: start the built-in fixture website on 127.0.0.1 and ingest its URL list. */
  site: z.literal('demo').optional(),
  ingest: ingest.optional(),
  crawl: crawl.optional(),
  train: train.optional(),
  export: exportStage.optional(),
  embed: embedStage.optional(),
  report: report.optional(),
});

export type Pipeline = z.infer<typeof PipelineSchema>;

/** Sets `a.b.c` in a plain object tree to `value` (YAML-parsed, so numbers and booleans keep their type). */
export function applySet(doc: Record<string, unknown>, assignment: string): void {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new ConfigError(`--set expects key.path=value, got "${assignment}"`);
  const path = assignment.slice(0, eq).split('.');
  let node = doc;
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = parse(assignment.slice(eq + 1));
}

export function validatePipeline(doc: unknown, where: string): Pipeline {
  const result = PipelineSchema.safeParse(doc ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const keys = issue.code === 'unrecognized_keys' ? issue.keys.map((k) => [...issue.path, k].join('.')).join(', ') : issue.path.join('.');
  const what = issue.code === 'unrecognized_keys' ? `unknown key${issue.keys.length > 1 ? 's' : ''}`
    : /received undefined/.test(issue.message) ? 'required, missing' : issue.message;
  throw new ConfigError(`${where}: ${keys || '(top level)'}: ${what}`);
}

export async function loadPipeline(file: string, sets: string[] = []): Promise<Pipeline> {
  let doc: unknown;
  try {
    doc = parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc !== null && (typeof doc !== 'object' || Array.isArray(doc))) throw new ConfigError(`${file}: expected a mapping of stages`);
  const tree = (doc ?? {}) as Record<string, unknown>;
  for (const s of sets) applySet(tree, s);
  const pipeline = validatePipeline(tree, file);
  if (pipeline.ingest && pipeline.crawl) throw new ConfigError(`${file}: crawl: use either ingest or crawl in one pipeline`);
  if (pipeline.train && !pipeline.train.data && !pipeline.ingest && !pipeline.crawl) throw new ConfigError(`${file}: train.data: a store is required when there is no ingest or crawl stage`);
  if (pipeline.ingest && !pipeline.site && !pipeline.ingest.lists?.length) throw new ConfigError(`${file}: ingest.lists: at least one URL list is required (or site: demo)`);
  if (pipeline.report && !pipeline.export) throw new ConfigError(`${file}: report: needs an export stage`);
  if (pipeline.embed && !pipeline.export) throw new ConfigError(`${file}: embed: needs an export stage`);
  if (pipeline.export && !pipeline.train) throw new ConfigError(`${file}: export: needs a train stage`);
  return pipeline;
}

/** The dataset the later stages read: train.data, else what ingest or crawl writes. */
export function datasetOf(p: Pipeline): string {
  const data = p.train?.data ?? p.ingest?.out ?? p.crawl?.out;
  if (!data) throw new ConfigError('the pipeline names no dataset (train.data, ingest.out or crawl.out)');
  return data;
}
