/**
 * The augment worker (one per pool thread): decodes each encoded image of a task and writes its multi-crop
 * views straight into the batch's shared buffers, at the slot the loader gave it, so a sample is copied once
 * (out of the kernels' memory) on its way to the trainer. Bad images come back as a reason, not a throw,
 * so one corrupt record costs one skipped sample and a count, never the pool. Once the pool closes (a flag in
 * shared memory), a task's remaining samples come back cancelled, unwritten: the worker checks before each
 * sample's decode and again before its crops.
 */
import { workerData } from 'node:worker_threads';
import { cropList, type AugmentConfig } from './config.js';
import type { CropDtype } from '../crop-tensor.js';
import { DecodeBuffer, decodeJpeg, decodeWithSharp } from './decode.js';
import { imageMemory } from './kernels.js';
import { multiCrop, type DrawSeed } from './multicrop.js';

/**
 * Where a sample's crops go: one shared buffer per crop (batch x size x size x 3 values, of the pool's crop
 * dtype: Float32 or Uint8) and the slot.
 */
export interface SampleSlot {
  crops: SharedArrayBuffer[];
  slot: number;
}

export interface AugmentTask {
  image: Uint8Array;
  at: DrawSeed;
  into: SampleSlot;
}

export type AugmentResult = { ok: true } | { error: string };

/** What a worker returns per sample: its result, or that the pool closed before it was written. */
export type WorkerResult = AugmentResult | { cancelled: true };

/** What the pool gives every worker (see AugmentPool). */
export interface AugmentWorkerData {
  config: AugmentConfig;
  cropDtype: CropDtype;
  /** One Int32, set to 1 when the pool closes: the samples not yet started are then not written. */
  cancel: SharedArrayBuffer;
}

const { config, cropDtype, cancel } = workerData as AugmentWorkerData;
const cancelFlag = new Int32Array(cancel);
const closing = () => Atomics.load(cancelFlag, 0) !== 0;
const lengths = cropList(config).map(({ size }) => size * size * 3);
/** A sample's crop `c` in the shared buffers: `n` values at its slot (4 bytes a float, 1 a byte). */
const view =
  cropDtype === 'uint8'
    ? (into: SampleSlot, c: number, n: number) => new Uint8Array(into.crops[c]!, into.slot * n, n)
    : (into: SampleSlot, c: number, n: number) => new Float32Array(into.crops[c]!, into.slot * n * 4, n);
/** Plain JPEGs are decoded straight into the crop kernels' input memory. */
const pixels = new DecodeBuffer(imageMemory);

/** Multi-crops a task's samples in order; one sample's bad image is its own failure, not the task's. */
export default async function augment(tasks: AugmentTask[]): Promise<WorkerResult[]> {
  const results: WorkerResult[] = [];
  for (const task of tasks) results.push(closing() ? { cancelled: true } : await augmentOne(task));
  return results;
}

async function augmentOne(task: AugmentTask): Promise<WorkerResult> {
  // The fast path runs from decode to the last crop without yielding: a thread runs two tasks at once (one
  // may wait on sharp), and the other's fast decode would overwrite `pixels`.
  const decoded = decodeJpeg(task.image, pixels) ?? (await decodeWithSharp(task.image));
  if ('error' in decoded) return decoded;
  if (closing()) return { cancelled: true };
  const outputs = lengths.map((n, c) => view(task.into, c, n));
  multiCrop(decoded.rgb, decoded.width, decoded.height, config, task.at, outputs);
  return { ok: true };
}
