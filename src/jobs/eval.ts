/**
 * Using an exported backbone, what `wildstream embed` and `wildstream eval knn` run: load the graph model,
 * compute features of a dataset or of image folders, write them, or score a weighted k-NN on labelled folders.
 */
import { NoDataError } from '../errors.js';
import type { Store, StoreOptions } from '../shards/store.js';
import { startInferenceBackend, type BackendName } from '../train/backend.js';
import { loadBackbone, type BackboneMetadata } from '../train/model-folder.js';
import { embed, writeEmbeddings, type Embeddings } from '../eval/embed.js';
import { knnAccuracy, type KnnResult } from '../eval/knn.js';

/** What every use of a backbone shares. */
export interface BackboneOptions {
  /** The exported backbone: a store holding `model.json` and the weights file it names (from exportCheckpoint). */
  model: Store;
  /** Square input side in pixels (images are resized to size / 0.875, then centre-cropped). @default the backbone's training size */
  size?: number;
  /** Images per forward pass. @default 32 */
  batch?: number;
  /** @default 'auto' */
  backend?: BackendName;
  /** S3 endpoint and credentials, for inputs and outputs given as s3:// URLs. @default none */
  store?: StoreOptions;
}

export interface EmbedImagesOptions extends BackboneOptions {
  /** A dataset store (its committed units, in unit order) or a local folder of images (labels: the class folders). */
  input: string;
  /** Arrow IPC file to write (`key` utf8, `embedding` fixed-size list of `featureDim` float32): a path or store URL. @default not written */
  out?: string;
}

export interface EmbedImagesResult {
  /** One row per image that decoded: its key, label ('' for a dataset) and features ([featureDim] float32). */
  embeddings: Embeddings;
  /** The full URL of the Arrow file written, or null without `out`. */
  written: string | null;
  metadata: BackboneMetadata;
}

/**
 * Features of every image of `input` (images that do not decode are counted in `failed`, not fatal). Throws
 * a ConfigError when the model store holds no backbone or the folder cannot be read.
 */
export async function embedImages(o: EmbedImagesOptions): Promise<EmbedImagesResult> {
  await startInferenceBackend(o.backend ?? 'auto');
  const backbone = await loadBackbone(o.model);
  const embeddings = await embed(backbone, o.input, { size: o.size, batch: o.batch, store: o.store });
  const written = o.out === undefined ? null : await writeEmbeddings(o.out, embeddings, o.store);
  return { embeddings, written, metadata: backbone.metadata };
}

export interface KnnEvalOptions extends BackboneOptions {
  /** Folder of class folders whose images vote (`train/<class>/*.jpg`). */
  train: string;
  /** Folder of class folders to classify (`test/<class>/*.jpg`). */
  test: string;
  /** Neighbours that vote (at most the number of train images). @default 20 */
  k?: number;
  /** Softmax temperature of the votes, exp(cosine similarity / T). @default 0.07 */
  temperature?: number;
}

export interface KnnEvalResult extends KnnResult {
  /** The backbone's model name and training step. */
  model: string;
  step: number;
  /** Images of either folder that did not decode. */
  failed: number;
}

/**
 * Weighted k-NN top-1 (Wu et al. 2018, as DINO and VISSL report it) of the backbone's features: `top1` is a
 * fraction in [0, 1]. Throws a NoDataError naming the folder when either gives no image, a ConfigError when a
 * folder cannot be read or the model store holds no backbone.
 */
export async function evalKnn(o: KnnEvalOptions): Promise<KnnEvalResult> {
  await startInferenceBackend(o.backend ?? 'auto');
  const backbone = await loadBackbone(o.model);
  const options = { size: o.size, batch: o.batch, store: o.store };
  const [train, test] = [await embed(backbone, o.train, options), await embed(backbone, o.test, options)];
  for (const [name, split] of [
    ['train', train],
    ['test', test],
  ] as const) {
    if (split.keys.length === 0)
      throw new NoDataError(
        `k-NN needs images in the ${name} folder ${o[name]}: it has none that decode (${split.failed} failed)`,
      );
  }
  const result = knnAccuracy(train, test, o.k ?? 20, o.temperature ?? 0.07);
  return {
    ...result,
    model: backbone.metadata.model,
    step: backbone.metadata.step,
    failed: train.failed + test.failed,
  };
}
