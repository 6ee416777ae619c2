/**
 * The report stage: what a person looks at after a run, in one folder: a contact sheet of kept images with
 * ingest's counts, one record's multi-crop preview, the loss/LR curves, k-NN top-1 of the exported backbone
 * against its random initialisation (labels used only here) and a picture of nearest neighbours for both.
 * With the demo site, the labelled evaluation folders are generated from the fixture's hidden classes
 * (images the site never served).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderPreview } from '../augment/preview.js';
import { KNN_OPTIONS } from '../eval/options.js';
import { knnPicture, type KnnModel } from '../eval/knn-picture.js';
import { patternJpeg, PATTERNS } from '../fixtures/images.js';
import { fileIn, putFile } from '../shards/output.js';
import { storeOptionsOf } from '../shards/options.js';
import { openStore, type StoreOptions } from '../shards/store.js';
import { augmentOf, defaultTrainConfig } from '../train/config.js';
import { evalKnnFeatures } from '../jobs/eval.js';
import { plotJob } from '../jobs/outputs.js';
import { contactSheet } from './contact-sheet.js';
import { datasetOf, type Pipeline } from './schema.js';
import { makeDirs } from '../shards/make-dirs.js';
import { pipelineNames } from '../options/declare.js';

/** Runs one stage to its end under the pipeline's signal handling (pipeline/run.ts). */
export type StageRunner = (name: string, work: () => Promise<unknown>) => Promise<void>;

/**
 * The store options the report opens each store with (`s3_endpoint:`, ...): the run, the dataset and the report
 * folder with the train stage's, as train reads and writes them; the exported models with the export stage's.
 * The report has none of its own: it is part of the run. Opened with none, a pipeline whose stores all name
 * their endpoint in the file failed at the report, reaching for AWS.
 */
export function reportStores(p: Pipeline): { run: StoreOptions; models: StoreOptions } {
  return { run: storeOptionsOf(p.train ?? {}), models: storeOptionsOf(p.export ?? {}) };
}

export async function writeReport(p: Pipeline, stage: StageRunner): Promise<void> {
  const r = p.report!;
  const stores = reportStores(p);
  const data = await openStore(datasetOf(p), stores.run);
  await putFile(fileIn(r.out, 'contact-sheet.png'), await contactSheet(data), stores.run);
  // The augmentation the run trains with (crops, jitter strength, blur), so the preview shows what it saw.
  const t = p.train;
  const augment = augmentOf(
    defaultTrainConfig(t ? { crops: t.crops, jitterStrength: t.jitterStrength, blurP: t.blur } : {}),
  );
  const { png } = await renderPreview(data, { seed: t?.seed ?? 0, epoch: 0, record: 0, augment });
  await putFile(fileIn(r.out, 'multicrop-preview.png'), png, stores.run);
  const from = p.train?.out;
  if (from) await stage('plot', () => plotJob(from, { ...p.train, out: fileIn(r.out, 'curves.png') }));
  if (r.knn) return writeKnn(p, r.knn, stores);
  if (p.site !== 'demo') return;
  const root = await evalRoot(r.out);
  try {
    await writeKnn(p, await evalFolders(root.path, r.eval_images ?? 200), stores);
  } finally {
    // Generated for this report alone: a remote report would otherwise leave one such folder in /tmp per run.
    if (root.temporary) await rm(root.path, { recursive: true, force: true });
  }
}

/** k-NN top-1 of the exported model and its baseline on labelled folders: knn.json and the neighbours' picture. */
async function writeKnn(
  p: Pipeline,
  folders: { train: string; test: string },
  stores: ReturnType<typeof reportStores>,
): Promise<void> {
  const r = p.report!;
  const result: Record<string, unknown> = {};
  const models: KnnModel[] = [];
  for (const [name, dir] of [
    ['trained', p.export!.out],
    ['random_init', p.export!.baseline],
  ] as const) {
    if (!dir) continue;
    const {
      result: knn,
      train,
      test,
    } = await evalKnnFeatures({
      model: await openStore(dir, stores.models),
      backend: p.train?.backend,
      train: folders.train,
      test: folders.test,
      size: r.knn?.size,
      batch: r.knn?.batch,
      k: r.knn?.k ?? KNN_OPTIONS.k.default,
      names: pipelineNames('report.knn'),
      onWarning: (line) => process.stderr.write(`${line}\n`),
    });
    const { top1, k, train: trainCount, test: testCount } = knn;
    result[name] = { top1, k, train: trainCount, test: testCount };
    models.push({ name: name === 'trained' ? 'trained' : 'random init', top1, train, test });
  }
  await putFile(fileIn(r.out, 'knn.json'), Buffer.from(`${JSON.stringify(result, null, 2)}\n`), stores.run);
  await putFile(
    fileIn(r.out, 'knn-neighbours.png'),
    await knnPicture(models, { trainDir: folders.train, testDir: folders.test }),
    stores.run,
  );
  const top1 = (k: string) => ((result[k] as { top1: number } | undefined)?.top1 ?? NaN).toFixed(3);
  process.stdout.write(
    `k-NN top-1: trained ${top1('trained')}, random init ${top1('random_init')} (report in ${r.out})\n`,
  );
}

/** Where the generated evaluation images go: beside the report when it is local, else a temporary folder. */
async function evalRoot(out: string): Promise<{ path: string; temporary: boolean }> {
  if (/^file:/i.test(out)) return { path: join(fileURLToPath(out), 'eval'), temporary: false };
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(out)) return { path: join(out, 'eval'), temporary: false };
  return { path: await mkdtemp(join(tmpdir(), 'wildstream-eval-')), temporary: true };
}

/**
 * Labelled folders of fixture images (seeds the demo site never serves), half for training k-NN, half for
 * testing. Each split is made anew: images a run with a larger `eval_images` left would count otherwise.
 */
export async function evalFolders(root: string, count: number): Promise<{ train: string; test: string }> {
  for (const [split, first] of [
    ['train', 1_000_000],
    ['test', 2_000_000],
  ] as const) {
    await rm(join(root, split), { recursive: true, force: true });
    for (let i = first; i < first + count / 2; i++) {
      const dir = join(root, split, PATTERNS[i % PATTERNS.length]!);
      await makeDirs(dir);
      await writeFile(join(dir, `${i}.jpg`), await patternJpeg(i, { width: 96, height: 96 }));
    }
  }
  return { train: join(root, 'train'), test: join(root, 'test') };
}
