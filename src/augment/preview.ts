/**
 * `wildstream augment preview`: one record's multi-crop views, de-normalised and laid out in a PNG next to
 * the original, so a person can see what the trainer sees.
 */
import sharp, { type OverlayOptions } from 'sharp';
import type { Store } from '../shards/store.js';
import { augmentConfig, type AugmentConfig, type AugmentOptions } from './config.js';
import { decodeRgb } from './decode.js';
import { multiCrop } from './multicrop.js';
import { DatasetStream } from './stream.js';

export interface PreviewOptions {
  seed?: number;
  epoch?: number;
  /** Which record of the epoch's stream. @default 0 */
  record?: number;
  /** @default DEFAULT_AUGMENT */
  augment?: AugmentOptions;
}

const GAP = 8;

/** Renders the preview PNG; resolves to its bytes and the key of the record shown. */
export async function renderPreview(store: Store, options: PreviewOptions = {}): Promise<{ png: Buffer; key: string }> {
  const config = augmentConfig(options.augment);
  const epoch = options.epoch ?? 0;
  const wanted = options.record ?? 0;
  const stream = new DatasetStream(store, { seed: options.seed ?? 0, epochs: epoch + 1, cursor: { epoch, group: 0, offset: 0, position: 0, units: null } });
  for await (const item of stream) {
    if (item.position < wanted) continue;
    const decoded = await decodeRgb(item.record.image);
    if ('error' in decoded) throw new Error(`record ${item.record.key} does not decode (${decoded.error})`);
    const crops = multiCrop(decoded.rgb, decoded.width, decoded.height, config, { seed: options.seed ?? 0, epoch, record: item.position });
    return { png: await layout(item.record.image, crops, config), key: item.record.key };
  }
  throw new RangeError(`the dataset has fewer than ${wanted + 1} records`);
}

/** The original (height of the largest crop) and each crop, left to right, on a grey canvas. */
async function layout(original: Uint8Array, crops: Float32Array[], config: AugmentConfig): Promise<Buffer> {
  const sizes = crops.map((c) => Math.round(Math.sqrt(c.length / 3)));
  const height = Math.max(...sizes);
  const head = await sharp(original).resize({ height }).png().toBuffer({ resolveWithObject: true });
  const tiles: OverlayOptions[] = [{ input: head.data, left: GAP, top: GAP }];
  let left = GAP * 2 + head.info.width;
  crops.forEach((crop, i) => {
    const size = sizes[i]!;
    tiles.push({ input: denormalise(crop, config), raw: { width: size, height: size, channels: 3 }, left, top: GAP });
    left += size + GAP;
  });
  return sharp({ create: { width: left, height: height + GAP * 2, channels: 3, background: '#808080' } }).composite(tiles).png().toBuffer();
}

function denormalise(crop: Float32Array, config: AugmentConfig): Buffer {
  const out = Buffer.alloc(crop.length);
  for (let i = 0; i < crop.length; i++) {
    const c = i % 3;
    out[i] = Math.max(0, Math.min(255, Math.round((crop[i]! * config.std[c]! + config.mean[c]!) * 255)));
  }
  return out;
}
