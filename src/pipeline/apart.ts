/**
 * A pipeline's outputs checked against what their stages read, by the check each command runs when it starts
 * (checkOutputApart), but before the first stage runs (an `embed.out` inside `ingest.out` was refused only when
 * embed started, after the whole ingest and training), and against each other's files. Settings are named as
 * the file names them.
 */
import { ConfigError } from '../errors.js';
import {
  checkOutputApart,
  DATASET_FILES,
  IMAGE_FILES,
  MODEL_FILES,
  RUN_FILES,
  topNames,
  type InputPlace,
  type OutputPlace,
  type Owns,
} from '../jobs/output-apart.js';
import { pipelineNames } from '../options/declare.js';

/**
 * The settings of a pipeline (schema.ts's Pipeline) that name places: written here rather than imported, as
 * schema.ts calls this file.
 */
export interface PipelinePlaces {
  ingest?: { out: string };
  crawl?: { out: string };
  train?: { data?: string; out: string };
  export?: { out: string; baseline?: string };
  embed?: { model?: string; out: string };
  report?: { out: string; knn?: { train?: string; test?: string } };
}

/** One output of a stage, its key in the stage (`out`, `baseline`), and the places that stage reads. */
interface StageOutput {
  stage: string;
  out: OutputPlace;
  inputs: InputPlace[];
  /** The other stages' outputs. */
  others: InputPlace[];
}

/** `[{ location, what, owns }]`, or nothing when the setting is absent. */
const place = (location: string | undefined, what: string, owns: Owns): InputPlace[] =>
  location === undefined ? [] : [{ location, what, owns }];

/** The files the report stage writes in `report.out` (report.ts), `eval/` its generated k-NN images. */
const REPORT_FILES = topNames(
  'contact-sheet.png',
  'multicrop-preview.png',
  'curves.png',
  'knn.json',
  'knn-neighbours.png',
  'eval',
);

/**
 * Every output of `p`'s stages with the places its stage reads, as the stage's command lists them (train: the
 * dataset; export: the run; embed: the dataset and the model; the report: the run, the dataset, the exported
 * models and its labelled folders). Each input says which setting it comes from.
 */
function stageOutputs(p: PipelinePlaces): StageOutput[] {
  const dataKey = p.train?.data !== undefined ? 'train.data' : p.ingest ? 'ingest.out' : 'crawl.out';
  const dataset = place(p.train?.data ?? p.ingest?.out ?? p.crawl?.out, `the dataset (${dataKey})`, DATASET_FILES);
  const run = place(p.train?.out, 'the run (train.out)', RUN_FILES);
  const model = place(p.export?.out, 'the model folder (export.out)', MODEL_FILES);
  const baseline = place(p.export?.baseline, 'the model folder (export.baseline)', MODEL_FILES);
  const embedModel =
    p.embed?.model !== undefined ? place(p.embed.model, 'the model folder (embed.model)', MODEL_FILES) : model;
  const knn = p.report?.knn;
  const labelled = [
    ...place(knn?.train, 'the k-NN train folder (report.knn.train)', IMAGE_FILES),
    ...place(knn?.test, 'the k-NN test folder (report.knn.test)', IMAGE_FILES),
  ];
  const outputs: Array<[stage: string, key: string, location: string | undefined, Owns | undefined, InputPlace[]]> = [
    ['train', 'out', p.train?.out, RUN_FILES, dataset],
    ['export', 'out', p.export?.out, MODEL_FILES, run],
    ['export', 'baseline', p.export?.baseline, MODEL_FILES, run],
    ['embed', 'out', p.embed?.out, undefined, [...dataset, ...embedModel]],
    ['report', 'out', p.report?.out, REPORT_FILES, [...run, ...dataset, ...model, ...baseline, ...labelled]],
  ];
  const present = outputs.filter(([, , location]) => location !== undefined);
  // Stages write one after another: one's output must not land on another's files either (`embed.out:
  // rep/knn.json` beside `report.out: rep`, which the report then wrote over). A file owns itself whole.
  const written = present.map(([stage, key, location, owns]) => ({
    location: location!,
    what: `the output of the ${stage} stage (${stage}.${key})`,
    owns: owns ?? (() => true),
    usedBy: `the ${stage} stage writes`,
  }));
  return present.map(([stage, key, location, owns, inputs], i) => ({
    stage,
    out: { key, location: location!, ...(owns ? { owns } : {}) },
    inputs,
    others: written.filter((_, j) => j !== i),
  }));
}

/**
 * Refuses, before any stage runs, a stage output that would overwrite a place its stage reads or another
 * stage's output (checkOutputApart): a ConfigError prefixed with `file`, naming the output's key (`embed.out`)
 * and the other place's setting.
 */
export async function checkStagesApart(p: PipelinePlaces, file: string): Promise<void> {
  const stages = stageOutputs(p);
  // What each stage reads first: the refusal then names the input rather than another stage's output in it.
  for (const places of ['inputs', 'others'] as const) {
    for (const { stage, out, ...against } of stages) {
      try {
        await checkOutputApart(`the ${stage} stage`, out, against[places], pipelineNames(stage));
      } catch (err) {
        if (err instanceof ConfigError) throw new ConfigError(`${file}: ${err.message}`);
        throw err;
      }
    }
  }
}
