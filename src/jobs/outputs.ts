/**
 * What a trained run produces, as the commands and a pipeline's stages make it: the exported backbone, the
 * curves, embeddings and k-NN accuracy. Each reads typed options and prints one JSON event line, after
 * checking that its output overwrites none of its inputs (output-apart.ts).
 */
import { ExitCodeError } from '../errors.js';
import { IMAGE_EXTENSIONS } from '../eval/images.js';
import type { KnnResult } from '../eval/knn.js';
import type { EmbedValues, KnnValues } from '../eval/options.js';
import { STORE_OPTIONS, storeOptionsOf } from '../shards/options.js';
import { putFile } from '../shards/output.js';
import { openStore } from '../shards/store.js';
import type { OptionNames, OptionValues } from '../options/declare.js';
import { checkpointSettings } from '../train/auto-config.js';
import { readMetrics } from '../train/metrics.js';
import { EXPORT_OPTIONS, PLOT_OPTIONS } from '../train/options.js';
import { plotCurves } from '../train/plot.js';
import { embedImages, evalKnn } from './eval.js';
import { exportCheckpoint } from './export.js';
import { KEPT_NOTHING_EXIT } from './ingest.js';
import { checkOutputApart, DATASET_OR_IMAGES, MODEL_FILES, RUN_FILES, type InputPlace } from './output-apart.js';

export const EXPORT_RUN_OPTIONS = { ...EXPORT_OPTIONS, ...STORE_OPTIONS } as const;
export const PLOT_RUN_OPTIONS = { ...PLOT_OPTIONS, ...STORE_OPTIONS } as const;

/**
 * Writes the backbone of a checkpoint in `checkpoints` (a run's out) as a tfjs graph model in `o.out`. Throws
 * a ConfigError when `o.out` is the run, lies inside it or holds it (checkOutputApart, naming `out` as `names`
 * words it: `--out`, or a pipeline's `export.out`), and exportCheckpoint's.
 */
export async function exportJob(
  checkpoints: string,
  o: OptionValues<typeof EXPORT_RUN_OPTIONS>,
  names?: OptionNames,
): Promise<void> {
  await checkOutputApart('export', { key: 'out', location: o.out, owns: MODEL_FILES }, [RUN(checkpoints)], names);
  const meta = await exportCheckpoint({
    checkpoints: await openStore(checkpoints, storeOptionsOf(o)),
    out: await openStore(o.out, storeOptionsOf(o)),
    step: o.step,
    init: o.init,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(`${JSON.stringify({ event: 'export', out: o.out, ...meta })}\n`);
}

/**
 * Draws the loss and learning-rate curves of the run in `checkpoints` as a PNG at `o.out`. Throws a ConfigError
 * when `o.out` is the run or lies inside it (checkOutputApart).
 */
export async function plotJob(checkpoints: string, o: OptionValues<typeof PLOT_RUN_OPTIONS>): Promise<void> {
  await checkOutputApart('plot', { key: 'out', location: o.out }, [RUN(checkpoints)]);
  const store = await openStore(checkpoints, storeOptionsOf(o));
  const [lines, saved] = [await readMetrics(store, (why) => warn(`warning: ${why}`)), await checkpointSettings(store)];
  await putFile(
    o.out,
    await plotCurves(lines, { prototypes: saved?.prototypes, freezeSteps: saved?.freezePrototypes }),
    storeOptionsOf(o),
  );
  process.stdout.write(`${JSON.stringify({ event: 'plot', out: o.out, points: lines.length })}\n`);
}

/** The run a command reads, as checkOutputApart names it. */
const RUN = (location: string): InputPlace => ({ location, what: 'the run', owns: RUN_FILES });

/** A warning line of a stage (it starts "warning: ") on stderr. */
const warn = (line: string) => process.stderr.write(`wildstream: ${line}\n`);

/**
 * Embeds the images of `input` (a dataset store or a folder of images) into an Arrow IPC file at `o.out`.
 * Throws a ConfigError when `o.out` is `input` or the model folder, or lies inside either (checkOutputApart),
 * and, after writing the file and its JSON line, an ExitCodeError with status 3 when not one image was embedded
 * (a folder of no image file, a dataset of no record, or every image failed), as ingest ends a job that holds
 * no image: a script should stop there rather than go on with an empty file.
 */
export async function embedJob(input: string, o: EmbedValues, names?: OptionNames): Promise<void> {
  const inputs = [
    { location: input, what: 'the dataset or image folder', owns: DATASET_OR_IMAGES },
    { location: o.model, what: 'the model folder', owns: MODEL_FILES },
  ];
  await checkOutputApart('embed', { key: 'out', location: o.out }, inputs, names);
  const store = storeOptionsOf(o);
  const { embeddings, metadata } = await embedImages({
    model: await openStore(o.model, store),
    input,
    out: o.out,
    size: o.size,
    batch: o.batch,
    backend: o.backend,
    store,
    names,
    onSkip: warn,
  });
  const { failed, skipped } = embeddings;
  process.stdout.write(
    `${JSON.stringify({ event: 'embed', out: o.out, images: embeddings.keys.length, failed, skipped, dim: metadata.featureDim })}\n`,
  );
  if (embeddings.keys.length > 0) return;
  const why =
    failed > 0
      ? `none of its ${failed} image${failed === 1 ? '' : 's'} could be read (the warnings above say why)`
      : `it holds no committed record of a dataset and no image file (${IMAGE_EXTENSIONS.map((e) => `.${e}`).join(', ')})`;
  throw new ExitCodeError(`no image to embed in ${input}: ${why}; ${o.out} has no row`, KEPT_NOTHING_EXIT);
}

/** k-NN top-1 of the backbone on labelled folders `o.train` and `o.test` (evalKnn, its warnings on stderr). */
export async function knnJob(o: KnnValues, names?: OptionNames): Promise<KnnResult> {
  const store = storeOptionsOf(o);
  const r = await evalKnn({
    model: await openStore(o.model, store),
    train: o.train,
    test: o.test,
    k: o.k,
    size: o.size,
    batch: o.batch,
    backend: o.backend,
    store,
    names,
    onWarning: warn,
  });
  const { model, step, top1, k, train, test, failed } = r;
  process.stdout.write(`${JSON.stringify({ event: 'knn', model, step, top1, k, train, test, failed })}\n`);
  return { top1, k, train, test };
}
