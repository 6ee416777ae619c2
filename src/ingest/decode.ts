/**
 * Turns downloaded bytes into a normalised image: format sniffed from the bytes (Content-Type is not
 * trusted), SVG refused, decompression bombs rejected from the header (`limitInputPixels`), `failOn: 'error'`
 * for truncated or corrupt data, first frame of animations, EXIF orientation applied, any colour space or
 * depth (CMYK, 16-bit, grey, alpha) to 8-bit sRGB RGB, resized without upscaling, re-encoded.
 *
 * The exact-duplicate hash is SHA-256 of the *normalised pixels* (RGB after orientation and resize), not
 * of the downloaded bytes: the same picture served as PNG and as a lossless WebP, or with different EXIF or
 * metadata, has different bytes but the same pixels; lossy re-encodes are the near-duplicate index's job.
 *
 * Memory is bounded from the header too: each decode is admitted through a byte semaphore shared by every
 * decode in the process, charged what its decoder will hold (memory-budget.ts); an image whose charge alone
 * exceeds the budget is refused as `decode_memory` without being decoded (within the pixel limit, but too
 * large to decode and resize to this output size in the budget: a smaller --max-side decodes it).
 */
import { createHash } from 'node:crypto';
import sharp, { type Metadata, type OutputInfo, type ResizeOptions } from 'sharp';
import type { FailureReason } from '../shards/failures.js';
import { IMAGE_FORMATS, imageRefusalOf, MAX_IMAGE_PIXELS, openImage, sniffImage } from '../shards/image-rule.js';
import { ByteSemaphore, estimateDecodeBytes } from './memory-budget.js';
import { phash } from './phash.js';

export interface DecodeOptions {
  /** Longest side after resize (no upscaling). Ignored when `minSide` is set. @default 512 */
  maxSide?: number;
  /** Resize so the shortest side is this (no upscaling). */
  minSide?: number;
  /** @default "jpeg" */
  format?: 'jpeg' | 'webp';
  /** @default 90 */
  quality?: number;
  /** Images whose shorter side is below this are dropped. @default 64 */
  minImageSize?: number;
  /** Images with long/short side above this are dropped. @default 4 */
  maxAspectRatio?: number;
  /** Larger inputs (width x height) are rejected before decoding. @default MAX_IMAGE_PIXELS (100e6) */
  limitInputPixels?: number;
  /**
   * Bytes that the decodes of this process may hold together, as estimated from each header; a decode waits
   * until its estimate fits, and an image whose estimate alone is larger is refused as `decode_memory`.
   * With the default, ingest at default settings peaks under 1 GiB RSS. @default 512 MiB
   */
  memoryBudget?: number;
}

export const DEFAULT_DECODE_MEMORY = 512 * 1024 * 1024;

export type DecodeOutcome =
  | { ok: true; image: Buffer; mime: string; width: number; height: number; sha256: Buffer; phash: bigint }
  | { ok: false; reason: FailureReason };

/**
 * libvips' operation cache keeps recent operations alive, with their decoders' memory: a progressive JPEG's
 * cached load holds its 300 MB coefficient buffer (measured: RSS +570 MB per 100 MP JPEG decoded, 1.8 GB
 * after six, none of it counted against the cache's 50 MB limit). Every image here is new, so nothing is
 * ever reused from it; it is off for the whole process, since memory is the process's.
 */
sharp.cache(false);

const ACCEPTED = new Set(IMAGE_FORMATS);

/**
 * Decodes and re-encodes `bytes` under the one image rule (../shards/image-rule.ts), then ingest's own checks
 * (size, aspect). SVG is refused from its bytes before any decoder sees it; bytes sharp cannot read at all are
 * `not_an_image`, an image of a format not kept `unsupported_format`.
 */
export async function decodeImage(bytes: Uint8Array, options: DecodeOptions = {}): Promise<DecodeOutcome> {
  const limitInputPixels = options.limitInputPixels ?? MAX_IMAGE_PIXELS;
  if (sniffImage(bytes) === 'svg') return { ok: false, reason: 'svg_refused' };
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false, failOn: 'none' }).metadata();
  } catch {
    return { ok: false, reason: 'not_an_image' };
  }
  const format = meta.format ?? 'unknown';
  if (format === 'svg') return { ok: false, reason: 'svg_refused' };
  if (!ACCEPTED.has(format)) return { ok: false, reason: 'unsupported_format' };
  if ((meta.width ?? 0) * (meta.pageHeight ?? meta.height ?? 0) > limitInputPixels)
    return { ok: false, reason: 'too_many_pixels' };
  const shortSide = Math.min(meta.autoOrient?.width ?? meta.width ?? 0, meta.autoOrient?.height ?? meta.height ?? 0);
  const longSide = Math.max(meta.autoOrient?.width ?? meta.width ?? 0, meta.autoOrient?.height ?? meta.height ?? 0);
  if (shortSide < (options.minImageSize ?? 64)) return { ok: false, reason: 'too_small' };
  if (longSide / shortSide > (options.maxAspectRatio ?? 4)) return { ok: false, reason: 'aspect_ratio' };

  const admission = decodeAdmission(options.memoryBudget);
  const scale = scaleOf(options, shortSide, longSide);
  const header = {
    format,
    width: meta.width ?? 0,
    height: meta.pageHeight ?? meta.height ?? 0,
    channels: meta.channels ?? 4,
    depth: meta.depth,
    isProgressive: meta.isProgressive,
    chromaSubsampling: meta.chromaSubsampling,
  };
  const cost = estimateDecodeBytes(header, 1 / scale, Math.ceil(shortSide * scale) * Math.ceil(longSide * scale));
  if (cost > admission.capacity) return { ok: false, reason: 'decode_memory' };
  return admission.use(cost, () => decodeAdmitted(bytes, options, limitInputPixels));
}

const admissions = new Map<number, ByteSemaphore>();

/**
 * The semaphore every decode with this budget goes through. Memory is the process's, so there is one per
 * budget per process (normally just the default), not one per job or unit.
 */
export function decodeAdmission(budget = DEFAULT_DECODE_MEMORY): ByteSemaphore {
  let semaphore = admissions.get(budget);
  if (!semaphore) admissions.set(budget, (semaphore = new ByteSemaphore(budget)));
  return semaphore;
}

async function decodeAdmitted(
  bytes: Uint8Array,
  options: DecodeOptions,
  limitInputPixels: number,
): Promise<DecodeOutcome> {
  let raw: { data: Buffer; info: OutputInfo };
  try {
    const opened = openImage(bytes, limitInputPixels);
    if ('error' in opened) return { ok: false, reason: opened.error };
    raw = await opened.image.resize(resizeOf(options)).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (err) {
    return { ok: false, reason: imageRefusalOf(err) };
  }
  const { width, height, channels } = raw.info;
  const sha256 = createHash('sha256').update(raw.data).digest();
  const hash = phash(raw.data, width, height, channels);
  const encoder = sharp(raw.data, { raw: { width, height, channels } });
  const quality = options.quality ?? 90;
  const image =
    options.format === 'webp'
      ? await encoder.webp({ quality }).toBuffer()
      : await encoder.jpeg({ quality, mozjpeg: false }).toBuffer();
  return {
    ok: true,
    image,
    mime: options.format === 'webp' ? 'image/webp' : 'image/jpeg',
    width,
    height,
    sha256,
    phash: hash,
  };
}

/** Output side / input side of the resize `resizeOf` asks for (never above 1: no upscaling). */
function scaleOf(options: DecodeOptions, shortSide: number, longSide: number): number {
  return options.minSide ? Math.min(1, options.minSide / shortSide) : Math.min(1, (options.maxSide ?? 512) / longSide);
}

function resizeOf(options: DecodeOptions): ResizeOptions {
  if (options.minSide) {
    return { width: options.minSide, height: options.minSide, fit: 'outside', withoutEnlargement: true };
  }
  const side = options.maxSide ?? 512;
  return { width: side, height: side, fit: 'inside', withoutEnlargement: true };
}
