/**
 * The augment worker (one per pool thread): decodes one encoded image with sharp and writes its multi-crop
 * views straight into the batch's shared buffers, at the slot the loader gave it, so a sample is copied
 * once (out of the kernels' memory) on its way to the trainer. Bad images come back as a reason, not a
 * throw, so one corrupt record costs one skipped sample and a count, never the pool.
 */
import { workerData } from 'node:worker_threads';
import sharp, { type OutputInfo } from 'sharp';
import { cropList, type AugmentConfig } from './config.js';
import { multiCrop, type DrawSeed } from './multicrop.js';

/** Where a sample's crops go: one shared buffer per crop (batch x size x size x 3 floats) and the slot. */
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

const config = (workerData as { config: AugmentConfig }).config;
const lengths = cropList(config).map(({ size }) => size * size * 3);

/** Decoded images above this are refused: shards hold resized images, anything this large is hostile. */
const MAX_PIXELS = 64e6;

export default async function augment(task: AugmentTask): Promise<AugmentResult> {
  let decoded: { data: Buffer; info: OutputInfo };
  try {
    decoded = await sharp(task.image, { failOn: 'error', limitInputPixels: MAX_PIXELS, pages: 1 })
      .toColourspace('srgb')
      .flatten({ background: '#ffffff' })
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch {
    return { error: 'decode_error' };
  }
  const { width, height } = decoded.info;
  const outputs = lengths.map((n, c) => new Float32Array(task.into.crops[c]!, task.into.slot * n * 4, n));
  multiCrop(new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, decoded.data.length), width, height, config, task.at, outputs);
  return { ok: true };
}
