/**
 * Decodes a stored image to 8-bit RGB for the augment workers, once per sample per epoch: the largest
 * single cost of a sample. Plain JPEGs (1 or 3 components, complete) go straight to libjpeg-turbo through
 * @julusian/jpeg-turbo into a reused buffer (sharp adds pipeline set-up to every call; decode time per sample:
 * `npx tsx bench/augment.ts`). That binding decodes with libjpeg's fast integer IDCT, as TensorFlow's
 * decode_jpeg does by default: it adds a fraction of a level (rms) to the decoding error, far below the
 * colour jitter that follows.
 * Everything else (CMYK JPEGs, which need sharp's colour management, truncated or corrupt files, PNG, WebP,
 * ...) goes through sharp with failOn: 'error'.
 */
import turbo from '@julusian/jpeg-turbo';
import sharp from 'sharp';

export type Decoded =
  { rgb: Uint8Array; width: number; height: number } | { error: 'decode_error' | 'too_many_pixels' };

/** Decoded images above this are refused: shards hold resized images, anything this large is hostile. */
export const MAX_PIXELS = 64e6;

/** Output buffers up to this size (4 MP of RGB) are kept for the next decode; larger ones are not held. */
const REUSE_BYTES = 12 * 1024 * 1024;

/**
 * Output memory reused from one decode to the next (a fresh 600 KB buffer costs ~0.4 ms of page faults),
 * by default its own, or what `memory` provides (e.g. the crop kernels' input, see kernels.imageMemory).
 * A result decoded into it views it, so it is valid only until the next decode with the same buffer.
 */
export class DecodeBuffer {
  private own: Buffer | null = null;

  constructor(private readonly memory?: (bytes: number) => Uint8Array) {}

  take(bytes: number): Buffer {
    if (this.memory) {
      const view = this.memory(bytes);
      return Buffer.from(view.buffer, view.byteOffset, bytes);
    }
    if (bytes > REUSE_BYTES) return Buffer.allocUnsafe(bytes);
    if (!this.own || this.own.length < bytes) this.own = Buffer.allocUnsafe(Math.max(bytes, 1024 * 1024));
    return this.own;
  }
}

/** Decodes any supported image; with `into`, a plain JPEG's pixels view that buffer (see DecodeBuffer). */
export async function decodeRgb(bytes: Uint8Array, into?: DecodeBuffer): Promise<Decoded> {
  return decodeJpeg(bytes, into) ?? decodeWithSharp(bytes);
}

/**
 * The fast path, synchronous: null hands the image to sharp, which then gives the verdict on anything odd
 * (libjpeg's warnings about corrupt data make the binding throw, so damaged files take the careful road).
 */
export function decodeJpeg(bytes: Uint8Array, into?: DecodeBuffer): Decoded | null {
  const frame = plainJpeg(bytes);
  if (!frame) return null;
  const { width, height } = frame;
  // Checked before the binding sizes its output: its int arithmetic would overflow on a hostile header.
  if (width * height > MAX_PIXELS) return { error: 'too_many_pixels' };
  const size = width * height * 3;
  try {
    const source = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    const out = into ? into.take(size) : Buffer.allocUnsafe(size);
    const result = turbo.decompressSync(source, out, { format: turbo.FORMAT_RGB });
    if (result.width !== width || result.height !== height || result.size !== size) return null;
    return { rgb: new Uint8Array(out.buffer, out.byteOffset, size), width, height };
  } catch {
    return null;
  }
}

/** Any format sharp reads, with its colour management (CMYK, ICC profiles, alpha flattened on white). */
export async function decodeWithSharp(bytes: Uint8Array): Promise<Decoded> {
  try {
    const { data, info } = await sharp(bytes, { failOn: 'error', limitInputPixels: MAX_PIXELS, pages: 1 })
      .toColourspace('srgb')
      .flatten({ background: '#ffffff' })
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
  } catch (err) {
    return { error: /pixel limit/i.test((err as Error).message) ? 'too_many_pixels' : 'decode_error' };
  }
}

/** What the first frame header of a plain JPEG declares. */
export interface JpegFrame {
  width: number;
  height: number;
}

/**
 * The frame of a JPEG that ends with its EOI marker (a truncated file would be filled in silently) and whose
 * first frame header declares 1 (grey) or 3 (YCbCr) components and a non-zero size; null for anything else.
 * Walks the marker segments up to that header; every read is bounds-checked.
 */
export function plainJpeg(b: Uint8Array): JpegFrame | null {
  const n = b.length;
  if (n < 4 || b[0] !== 0xff || b[1] !== 0xd8 || b[n - 2] !== 0xff || b[n - 1] !== 0xd9) return null;
  let at = 2;
  while (at + 4 <= n) {
    if (b[at] !== 0xff) return null;
    const marker = b[at + 1]!;
    if (marker === 0xff) {
      // fill byte before a marker
      at++;
      continue;
    }
    const length = (b[at + 2]! << 8) | b[at + 3]!;
    if (isFrameHeader(marker)) return frameOf(b, at);
    if (marker === 0xda || length < 2) return null; // scan data before any frame header
    at += 2 + length;
  }
  return null;
}

/** FF Cx, length (2), precision (1), height (2), width (2), components (1). */
function frameOf(b: Uint8Array, at: number): JpegFrame | null {
  if (at + 9 >= b.length || (b[at + 9] !== 1 && b[at + 9] !== 3)) return null;
  const height = (b[at + 5]! << 8) | b[at + 6]!;
  const width = (b[at + 7]! << 8) | b[at + 8]!;
  return width > 0 && height > 0 ? { width, height } : null;
}

/** SOF0-SOF15, except DHT (C4), JPG (C8) and DAC (CC), which share the range. */
function isFrameHeader(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}
