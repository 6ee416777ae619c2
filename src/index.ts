/**
 * wildstream as a library: the entry points of each stage, the types they exchange and the errors they throw.
 * `import { MultiCropLoader, openStore } from 'wildstream'` gets the built JavaScript (dist/) with its
 * declarations. Everything else under src/ is internal and may change without notice.
 *
 *   ingest (URL lists) / crawl (sites) -> dataset in a store -> multi-crop stream -> train -> export -> embed, k-NN
 */

// Errors: every broken run is one of these, with a stable `code`.
export {
  AccessDeniedError,
  BucketNotFoundError,
  ConfigError,
  ExitCodeError,
  InterruptedError,
  InvalidBatchError,
  InvalidShardError,
  NoDataError,
  NotFoundError,
  StoreUnavailableError,
  UnsupportedStoreError,
  WildstreamError,
} from './errors.js';

export { WebGpuKernelError, WebGpuTrainingError, WebGpuUnavailableError } from './train/webgpu/errors.js';

// Stores: `file:` and `s3:` behind one interface, chosen by URL scheme.
export {
  openStore,
  type ObjectInfo,
  type PutBody,
  type RangeOptions,
  type Store,
  type StoreOptions,
} from './shards/store.js';
export { CachedStore } from './shards/store-cache.js';
export { KeyTooLongError } from './shards/key-limits.js';

// The dataset: committed units, their shards and records.
export { listUnits, type DatasetSummary, type DuplicateCounts, type UnitRecord } from './shards/dataset.js';
export { inspectDataset } from './ingest/outstanding.js';
export { ShardReader, type ShardReaderOptions } from './shards/reader.js';
export type { ImageRecord } from './shards/schema.js';
export {
  NAMED_REASONS,
  readFailures,
  type FailureCounts,
  type FailureReason,
  type FailureRecord,
} from './shards/failures.js';
export { UnitWriter, type CommitOptions, type UnitInput, type UnitWriterOptions } from './shards/unit-writer.js';

// Ingest: URL lists -> a dataset, locally or through a Redis queue.
export { type IngestOptions, type IngestProgress, type IngestSummary } from './ingest/job.js';
export { runIngest } from './ingest/local.js';
export type { IngestWarning, IngestWarningCode } from './ingest/summary.js';
export { runQueuedIngest, runWorker, type QueuedIngestOptions, type WorkerOptions } from './ingest/queue.js';
export type { UrlListOptions } from './ingest/url-list.js';
export { listSource, type IngestSource, type SourcePart } from './ingest/source.js';
export type { DecodeOptions } from './ingest/decode.js';
export { Fetcher, type FetcherOptions, type FetchOutcome } from './ingest/fetch.js';

// Crawl: sites -> images found (then ingested as a URL list).
export { crawl, type CrawlOptions, type CrawlResult, type Deps as CrawlDeps } from './crawl/crawler.js';
export type { PageLimits } from './crawl/html.js';
export type { FoundImage } from './crawl/state.js';
export { HostGate } from './ingest/host-gate.js';
export { RobotsCache } from './crawl/robots.js';

// The multi-crop stream: a dataset -> shuffled records -> batches of crops, resumable from a cursor.
export {
  MultiCropLoader,
  LoaderClosedError,
  MAX_BATCH_BYTES,
  type BatchSource,
  type ByteCrop,
  type CropDtype,
  type CropTensor,
  type FloatCrop,
  type LoaderOptions,
  type LoaderStats,
  type MultiCropBatch,
} from './augment/loader.js';
export { cropFloats } from './crop-tensor.js';
export {
  CursorError,
  DatasetStream,
  START,
  type CursorOrder,
  type StreamCursor,
  type StreamItem,
  type StreamOptions,
  type StreamStats,
} from './augment/stream.js';
export {
  AUGMENT_LIMITS,
  augmentConfig,
  cropGroups,
  DEFAULT_AUGMENT,
  parseCrops,
  SWAV_CROPS,
  type AugmentConfig,
  type AugmentOptions,
  type CropGroup,
  type CropSpec,
} from './augment/config.js';
export { PreviewError, renderPreview, type PreviewOptions } from './augment/preview.js';

// Train: the SwAV loop over any BatchSource, with checkpoints that resume; trainOnStore feeds it a dataset.
export { trainOnStore, type TrainOnStoreOptions, type TrainOnStoreSummary } from './jobs/train.js';
export {
  train,
  TrainingDivergedError,
  type LoopOptions,
  type TrainOptions,
  type TrainSummary,
} from './train/trainer.js';
export { resolveResume, type ResumeOptions, type ResumePoint } from './train/resume.js';
export type { Checkpoint, CheckpointHeader, TensorEntry } from './train/checkpoint.js';
export { defaultTrainConfig, type QueueConfig, type TrainConfig } from './train/config.js';
// The settings `wildstream train` chooses from the dataset and run length when the user leaves them out.
export { autoConfig, type AutoConfig, type RunShape, type SwavSettings } from './train/auto-config.js';
export { BACKENDS, startBackend, type BackendInfo, type BackendName } from './train/backend.js';
export { REGNETS, regnetSpec, type RegNetParams, type RegNetSpec, type StageSpec } from './train/regnet-spec.js';
export type { LarsConfig, ScheduleConfig } from './train/optim.js';
export type { SwavConfig } from './train/swav.js';
export { readMetrics, type MetricLine } from './train/metrics.js';

// Export, embed and evaluate: a trained backbone as a tfjs graph model, its features, k-NN accuracy.
export { exportCheckpoint, type ExportOptions } from './jobs/export.js';
export { InvalidCheckpointError } from './train/checkpoint.js';
export {
  embedImages,
  evalKnn,
  evalKnnFeatures,
  type BackboneOptions,
  type EmbedImagesOptions,
  type EmbedImagesResult,
  type KnnEvalOptions,
  type KnnEvalResult,
} from './jobs/eval.js';
export { loadBackbone, type Backbone, type BackboneMetadata } from './train/model-folder.js';
export { embed, writeEmbeddings, type EmbedOptions, type Embeddings } from './eval/embed.js';
export { knnAccuracy, type KnnResult, type LabelledFeatures } from './eval/knn.js';
