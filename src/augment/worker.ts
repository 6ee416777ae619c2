/**
 * The augment worker (one per pool thread): decodes one encoded image with sharp and returns its multi-crop
 * views. The crops' buffers are transferred back, not copied. Bad images come back as a reason, not a throw,
 * so one corrupt record costs one skipped sample and a count, never the pool.
 */
import { workerData } from 'node:worker_threads';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import sharp, { type OutputInfo } from 'sharp';
import type { AugmentConfig } from './config.js';
import { multiCrop, type DrawSeed } from './multicrop.js';

export interface AugmentTask {
  image: Uint8Array;
  at: DrawSeed;
}

export type AugmentResult = { crops: Float32Array[] } | { error: string };

const config = (workerData as { config: AugmentConfig }).config;

/** Decoded images above this are refused: shards hold resized images, anything this large is hostile. */
const MAX_PIXELS = 64e6;

export default async function augment(task: AugmentTask): Promise<unknown> {
  let decoded: { data: Buffer; info: OutputInfo };
  try {
    decoded = await sharp(task.image, { failOn: 'error', limitInputPixels: MAX_PIXELS, pages: 1 })
      .toColourspace('srgb')
      .flatten({ background: '#ffffff' })
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch {
    return { error: 'decode_error' } satisfies AugmentResult;
  }
  const { width, height } = decoded.info;
  const crops = multiCrop(new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, decoded.data.length), width, height, config, task.at);
  return move({
    get [transferableSymbol]() {
      return crops.map((c) => c.buffer);
    },
    get [valueSymbol]() {
      return { crops } satisfies AugmentResult;
    },
  } as never);
}
