/**
 * What a trained run produces, as the commands and a pipeline's stages make it: the exported backbone, the
 * curves, embeddings and k-NN accuracy. Each reads typed options and prints one JSON event line.
 */
import { embed, writeEmbeddings } from '../eval/embed.js';
import { knnAccuracy, type KnnResult } from '../eval/knn.js';
import type { EmbedValues, KnnValues } from '../eval/options.js';
import { STORE_OPTIONS, storeOptionsOf, type StoreOptionValues } from '../shards/options.js';
import { putFile } from '../shards/output.js';
import { openStore } from '../shards/store.js';
import type { OptionNames, OptionValues } from '../options/declare.js';
import { checkpointSettings } from '../train/auto-config.js';
import { startInferenceBackend } from '../train/backend.js';
import { loadBackbone } from '../train/model-folder.js';
import { readMetrics } from '../train/metrics.js';
import { EXPORT_OPTIONS, PLOT_OPTIONS } from '../train/options.js';
import { plotCurves } from '../train/plot.js';
import { exportCheckpoint } from './export.js';

export const EXPORT_RUN_OPTIONS = { ...EXPORT_OPTIONS, ...STORE_OPTIONS } as const;
export const PLOT_RUN_OPTIONS = { ...PLOT_OPTIONS, ...STORE_OPTIONS } as const;

/** Writes the backbone of a checkpoint in `checkpoints` (a run's out) as a tfjs graph model in `o.out`. */
export async function exportJob(checkpoints: string, o: OptionValues<typeof EXPORT_RUN_OPTIONS>): Promise<void> {
  const meta = await exportCheckpoint({
    checkpoints: await openStore(checkpoints, storeOptionsOf(o)),
    out: await openStore(o.out, storeOptionsOf(o)),
    step: o.step,
    init: o.init,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(`${JSON.stringify({ event: 'export', out: o.out, ...meta })}\n`);
}

/** Draws the loss and learning-rate curves of the run in `checkpoints` as a PNG at `o.out`. */
export async function plotJob(checkpoints: string, o: OptionValues<typeof PLOT_RUN_OPTIONS>): Promise<void> {
  const store = await openStore(checkpoints, storeOptionsOf(o));
  const [lines, saved] = [await readMetrics(store), await checkpointSettings(store)];
  await putFile(
    o.out,
    await plotCurves(lines, { prototypes: saved?.prototypes, freezeSteps: saved?.freezePrototypes }),
    storeOptionsOf(o),
  );
  process.stdout.write(`${JSON.stringify({ event: 'plot', out: o.out, points: lines.length })}\n`);
}

async function backboneOf(o: Pick<EmbedValues, 'model' | 'backend'> & Partial<StoreOptionValues>) {
  await startInferenceBackend(o.backend);
  return loadBackbone(await openStore(o.model, storeOptionsOf(o)));
}

/** Embeds the images of `input` (a dataset store or a folder of images) into an Arrow IPC file at `o.out`. */
export async function embedJob(input: string, o: EmbedValues, names?: OptionNames): Promise<void> {
  const backbone = await backboneOf(o);
  const onSkip = (line: string) => process.stderr.write(`wildstream: ${line}\n`); // line starts "warning: "
  const result = await embed(backbone, input, {
    size: o.size,
    batch: o.batch,
    store: storeOptionsOf(o),
    names,
    onSkip,
  });
  await writeEmbeddings(o.out, result, storeOptionsOf(o));
  const { failed, skipped } = result;
  process.stdout.write(
    `${JSON.stringify({ event: 'embed', out: o.out, images: result.keys.length, failed, skipped, dim: backbone.metadata.featureDim })}\n`,
  );
}

/** k-NN top-1 of the backbone on labelled folders `o.train` and `o.test`. */
export async function knnJob(o: KnnValues): Promise<KnnResult> {
  const backbone = await backboneOf(o);
  const how = { size: o.size, batch: o.batch, store: storeOptionsOf(o) };
  const [train, test] = [await embed(backbone, o.train, how), await embed(backbone, o.test, how)];
  const result = knnAccuracy(train, test, o.k);
  process.stdout.write(
    `${JSON.stringify({ event: 'knn', model: backbone.metadata.model, step: backbone.metadata.step, ...result, failed: train.failed + test.failed })}\n`,
  );
  return result;
}
