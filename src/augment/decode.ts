/**
 * Decodes a stored image to 8-bit RGB for the augment workers, once per sample per epoch: the largest
 * single cost of a sample. Plain JPEGs (1 or 3 components, complete) go through @napi-rs/image (the Rust
 * `image` crate; ~2.5 ms CPU for a 512 x 384 photo here against sharp's ~4.8 ms, which adds ~1 ms of
 * pipeline set-up per call; pixels within 4 levels of libjpeg's). Everything else (CMYK JPEGs, which need
 * sharp's colour management, truncated files, PNG, WebP, ...) goes through sharp with failOn: 'error'.
 */
import { Transformer } from '@napi-rs/image';
import sharp from 'sharp';

export type Decoded = { rgb: Uint8Array; width: number; height: number } | { error: 'decode_error' | 'too_many_pixels' };

/** Decoded images above this are refused: shards hold resized images, anything this large is hostile. */
export const MAX_PIXELS = 64e6;

export async function decodeRgb(bytes: Uint8Array): Promise<Decoded> {
  if (plainJpeg(bytes)) {
    const fast = decodeJpeg(bytes);
    if (fast) return fast;
  }
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

/** The fast path; null hands the image to sharp (which then gives the verdict on anything odd). */
function decodeJpeg(bytes: Uint8Array): Decoded | null {
  try {
    const image = new Transformer(bytes);
    const { width, height } = image.metadataSync();
    if (width * height > MAX_PIXELS) return { error: 'too_many_pixels' };
    const rgb = image.rawPixelsSync();
    return rgb.length === width * height * 3 ? { rgb, width, height } : null;
  } catch {
    return null;
  }
}

/**
 * True for a JPEG that ends with its EOI marker (the Rust decoder fills a truncated file in silently) and
 * whose frame header declares 1 (grey) or 3 (YCbCr) components. Walks the marker segments up to the first
 * frame header; every read is bounds-checked, and anything unexpected answers false.
 */
export function plainJpeg(b: Uint8Array): boolean {
  const n = b.length;
  if (n < 4 || b[0] !== 0xff || b[1] !== 0xd8 || b[n - 2] !== 0xff || b[n - 1] !== 0xd9) return false;
  let at = 2;
  while (at + 4 <= n) {
    if (b[at] !== 0xff) return false;
    const marker = b[at + 1]!;
    if (marker === 0xff) { // fill byte before a marker
      at++;
      continue;
    }
    const length = (b[at + 2]! << 8) | b[at + 3]!;
    if (isFrameHeader(marker)) return at + 9 < n && (b[at + 9] === 1 || b[at + 9] === 3);
    if (marker === 0xda || length < 2) return false; // scan data before any frame header
    at += 2 + length;
  }
  return false;
}

/** SOF0-SOF15, except DHT (C4), JPG (C8) and DAC (CC), which share the range. */
function isFrameHeader(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}
