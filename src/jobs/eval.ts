/**
 * Using an exported backbone, what `wildstream embed` and `wildstream eval knn` run: load the graph model,
 * compute features of a dataset or of image folders, write them, or score a weighted k-NN on labelled folders.
 */
import { checkOptionsObject, ConfigError, NoDataError, shown } from '../errors.js';
import type { OptionNames } from '../options/declare.js';
import { checkStore, type Store, type StoreOptions } from '../shards/store.js';
import { startInferenceBackend, type BackendName } from '../train/backend.js';
import { loadBackbone, type Backbone, type BackboneMetadata } from '../train/model-folder.js';
import {
  checkEmbedOptions,
  checkOutFile,
  embed,
  embedFiles,
  sample,
  writeEmbeddings,
  type Embeddings,
} from '../eval/embed.js';
import { listClassImages } from '../eval/images.js';
import { checkKnnOptions, classesOf, knnAccuracy, type KnnResult } from '../eval/knn.js';
import { placeRelation } from './output-apart.js';

/** What every use of a backbone shares. */
export interface BackboneOptions {
  /** The exported backbone: a store holding `model.json` and the weights file it names (from exportCheckpoint). */
  model: Store;
  /**
   * Square input side in pixels (images are resized to size / 0.875, then centre-cropped), an integer from 8
   * to 4096. @default the backbone's training size
   */
  size?: number;
  /** Images per forward pass, an integer from 1 to 4096. @default 32 */
  batch?: number;
  /** @default 'auto' */
  backend?: BackendName;
  /** S3 endpoint and credentials, for inputs and outputs given as s3:// URLs. @default none */
  store?: StoreOptions;
  /** How refusals name the options (a command's flags, a pipeline's keys). @default their keys here (`size`) */
  names?: OptionNames;
}

export interface EmbedImagesOptions extends BackboneOptions {
  /**
   * A dataset store (its committed units, in unit order) or a local folder of images, a path or a file:// URL
   * (labels: the class folders; symbolic links followed).
   */
  input: string;
  /**
   * Arrow IPC file to write (`key` utf8, `embedding` fixed-size list of `featureDim` float32): a path or store
   * URL, not an existing folder. @default not written
   */
  out?: string;
  /** Told (a line starting `warning: `) of data skipped: unreadable shards, symbolic link loops. @default nothing */
  onSkip?: (message: string) => void;
}

export interface EmbedImagesResult {
  /** One row per image that decoded: its key, label ('' for a dataset) and features ([featureDim] float32). */
  embeddings: Embeddings;
  /** The full URL of the Arrow file written, or null without `out`. */
  written: string | null;
  metadata: BackboneMetadata;
}

/**
 * What a plain JavaScript caller may get wrong before any option's range is checked, each a ConfigError naming
 * it (a TypeError from inside the model loader or a folder walk would not): the options not an object, `model`
 * not a Store, a location (`text`: what it names, or 'optional' for an optional one) not a non-empty string, a
 * callback not a function.
 */
function checkCaller<O extends object>(
  o: O,
  fn: string,
  text: Partial<Record<keyof O, string>>,
  callbacks: Array<keyof O>,
): void {
  checkOptionsObject(o, `${fn} options`);
  checkStore((o as { model?: unknown }).model, 'model (the exported backbone)');
  for (const [key, what] of Object.entries(text) as Array<[keyof O & string, string]>) {
    const v = o[key];
    if (v === undefined && what === 'optional') continue;
    if (typeof v !== 'string' || v === '')
      throw new ConfigError(
        `${key} must be ${what === 'optional' ? 'a file path or store URL' : what} (a non-empty string), got ${shown(v)}`,
      );
  }
  for (const key of callbacks) {
    const v = o[key];
    if (v !== undefined && typeof v !== 'function')
      throw new ConfigError(`${String(key)} must be a function, got ${shown(v)}`);
  }
}

/** Loads the backbone of `o.model` on its backend, runs `use`, and disposes the backbone's weights however it ends. */
async function withBackbone<T>(o: BackboneOptions, use: (backbone: Backbone) => Promise<T>): Promise<T> {
  await startInferenceBackend(o.backend ?? 'auto');
  const backbone = await loadBackbone(o.model);
  try {
    return await use(backbone);
  } finally {
    backbone.model.dispose();
  }
}

/**
 * Features of every image of `input` (images that do not decode are counted in `failed`, not fatal). Throws
 * a ConfigError, before the model is loaded, when `size` or `batch` is out of range or `out` is an existing
 * folder, and when the model store holds no backbone or the folder cannot be read.
 */
export async function embedImages(o: EmbedImagesOptions): Promise<EmbedImagesResult> {
  checkCaller(o, 'embedImages', { input: 'a dataset store URL or a folder of images', out: 'optional' }, ['onSkip']);
  checkEmbedOptions(o, o.names);
  if (o.out !== undefined) await checkOutFile(o.out, o.names);
  return withBackbone(o, async (backbone) => {
    const embeddings = await embed(backbone, o.input, {
      size: o.size,
      batch: o.batch,
      store: o.store,
      names: o.names,
      onSkip: o.onSkip,
    });
    const written = o.out === undefined ? null : await writeEmbeddings(o.out, embeddings, o.store);
    return { embeddings, written, metadata: backbone.metadata };
  });
}

export interface KnnEvalOptions extends BackboneOptions {
  /**
   * Local folder of class folders whose images vote (`train/<class>/*.jpg`, torchvision's ImageFolder layout):
   * a path or a file:// URL.
   */
  train: string;
  /** Local folder of class folders to classify (`test/<class>/*.jpg`): a path or a file:// URL. */
  test: string;
  /** Neighbours that vote, an integer from 1 to 10000 (at most the number of train images). @default 20 */
  k?: number;
  /** Softmax temperature of the votes, exp(cosine similarity / T), a finite number > 0. @default 0.07 */
  temperature?: number;
  /**
   * Told (a line starting `warning: `) of what the score leaves out or cannot measure: images at a folder's
   * root, outside every class folder (not used), test classes that no train image has (never classified right),
   * images that failed (each named, up to a cap), symbolic link loops, and a test folder that is the train
   * folder or lies inside it or holds it (its images vote for themselves). @default nothing
   */
  onWarning?: (message: string) => void;
}

export interface KnnEvalResult extends KnnResult {
  /** The backbone's model name and training step. */
  model: string;
  step: number;
  /** Images of either folder that did not decode (or are symbolic links to missing files). */
  failed: number;
}

/**
 * Weighted k-NN top-1 (Wu et al. 2018, as DINO and VISSL report it) of the backbone's features: `top1` is a
 * fraction in [0, 1]. The folders are read as torchvision's ImageFolder reads them: one folder per class,
 * symbolic links followed; images at a folder's root beside class folders are left out (with a warning).
 * Throws a ConfigError, before the model is loaded, when an option is out of range or a folder is not a
 * folder of class folders (images only at its root, or a dataset store), and after embedding when the train
 * images are of fewer than 2 classes; a NoDataError naming the folder when either gives no image; a
 * ConfigError when a folder cannot be read or the model store holds no backbone.
 */
export async function evalKnn(o: KnnEvalOptions): Promise<KnnEvalResult> {
  return (await evalKnnFeatures(o)).result;
}

/** evalKnn's score and the embeddings it compared (for pictures of neighbours); the same checks and errors. */
export async function evalKnnFeatures(
  o: KnnEvalOptions,
): Promise<{ result: KnnEvalResult; train: Embeddings; test: Embeddings }> {
  const folder = 'a folder of class folders';
  checkCaller(o, 'evalKnn', { train: folder, test: folder }, ['onWarning']);
  checkEmbedOptions(o, o.names);
  checkKnnOptions(o.k, o.temperature);
  const warn = o.onWarning ?? (() => {});
  const listings = {
    train: await listClassImages(o.train, 'the train folder'),
    test: await listClassImages(o.test, 'the test folder'),
  };
  for (const name of ['train', 'test'] as const) {
    const { unlabelled } = listings[name];
    if (unlabelled.length > 0)
      warn(
        `warning: ignoring ${unlabelled.length} image${unlabelled.length === 1 ? '' : 's'} at the root of the ${name} folder ${o[name]}, outside every class folder (k-NN labels an image by its class folder): ${sample(unlabelled)}`,
      );
  }
  await warnSameImages(o.train, o.test, warn);
  return withBackbone(o, async (backbone) => {
    const options = { size: o.size, batch: o.batch, names: o.names, onSkip: o.onWarning };
    const train = await embedFiles(backbone, listings.train, options);
    const test = await embedFiles(backbone, listings.test, options);
    for (const [name, split] of [
      ['train', train],
      ['test', test],
    ] as const) {
      if (split.keys.length === 0)
        throw new NoDataError(
          `k-NN needs images in the ${name} folder ${o[name]}: it has none that decode (${split.failed} failed)`,
        );
    }
    const classes = classesOf(train.labels);
    if (classes.length < 2)
      throw new ConfigError(
        `k-NN needs at least 2 classes to vote among; the train folder ${o.train} has images of 1 (${classes[0]}), so every vote is that class`,
      );
    const unseen = classesOf(test.labels).filter((c) => !classes.includes(c));
    if (unseen.length > 0)
      warn(
        `warning: ${unseen.length} test class${unseen.length === 1 ? ' has' : 'es have'} no train image, so ${unseen.length === 1 ? 'its' : 'their'} images are never classified right: ${sample(unseen)} (the train folder ${o.train} has ${sample(classes)})`,
      );
    const result = knnAccuracy(train, test, o.k ?? 20, o.temperature ?? 0.07);
    const { model, step } = backbone.metadata;
    return { result: { ...result, model, step, failed: train.failed + test.failed }, train, test };
  });
}

/**
 * Warns when the test folder is the train folder, lies inside it or holds it: a test image that is also a
 * train image is its own nearest neighbour (similarity 1), so top1 comes out near 1 whatever the features.
 * Not refused: a caller may want that figure (a check that the pipeline runs end to end).
 */
async function warnSameImages(train: string, test: string, warn: (message: string) => void): Promise<void> {
  const relation = await placeRelation(test, train);
  if (relation === undefined) return;
  warn(
    `warning: the test folder ${test} ${relation} the train folder ${train}: test images that are train images vote for themselves, so top1 measures nothing about the features; test on images the train folder does not hold`,
  );
}
