/**
 * Decodes a stored image to 8-bit RGB for the augment workers and `augment preview`, once per sample per
 * epoch: the largest single cost of a sample. The rule is the one every stage reads an image by
 * (../shards/image-rule.ts: the formats ingest keeps, SVG refused before any decoder runs, the pixel limit,
 * `failOn: 'error'`, EXIF orientation applied, sRGB with alpha flattened on white), so a record gives the
 * same pixels, or the same refusal, here as in ingest, embed and eval.
 *
 * Plain JPEGs (1 or 3 components, complete, upright, no ICC profile) go straight to libjpeg-turbo through
 * @julusian/jpeg-turbo into a reused buffer (sharp adds pipeline set-up to every call; decode time per sample:
 * `npx tsx bench/augment.ts`). That binding decodes with libjpeg's fast integer IDCT, as TensorFlow's
 * decode_jpeg does by default: it adds a fraction of a level (rms) to the decoding error, far below the
 * colour jitter that follows. Everything else (CMYK JPEGs, an EXIF orientation to apply or an ICC profile to
 * convert, truncated or corrupt files, PNG, WebP, ...) goes through sharp under the rule.
 */
import turbo from '@julusian/jpeg-turbo';
import { decodeImageRgb, MAX_IMAGE_PIXELS, type ImageRefusal } from '../shards/image-rule.js';

export type Decoded = { rgb: Uint8Array; width: number; height: number } | { error: ImageRefusal };

/** Decoded images above this are refused (the rule's limit, ../shards/image-rule.ts). */
export const MAX_PIXELS = MAX_IMAGE_PIXELS;

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

/** Any format the rule keeps, through sharp (see ../shards/image-rule.ts): SVG is refused before decoding. */
export function decodeWithSharp(bytes: Uint8Array): Promise<Decoded> {
  return decodeImageRgb(bytes, MAX_PIXELS);
}

/** What the first frame header of a plain JPEG declares. */
export interface JpegFrame {
  width: number;
  height: number;
}

/**
 * The frame of a JPEG that ends with its EOI marker (a truncated file would be filled in silently), whose first
 * frame header declares 1 (grey) or 3 (YCbCr) components and a non-zero size, and that needs nothing of sharp
 * before it: no EXIF orientation other than upright (ingest applies it), no ICC profile (sharp converts it to
 * sRGB); null for anything else. Walks the marker segments up to that header; every read is bounds-checked.
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
    const body = b.subarray(at + 4, Math.min(n, at + 2 + length));
    if (marker === 0xe1 && startsWith(body, EXIF) && exifOrientation(body.subarray(EXIF.length)) !== 1) return null;
    if (marker === 0xe2 && startsWith(body, ICC)) return null;
    at += 2 + length;
  }
  return null;
}

const EXIF = [0x45, 0x78, 0x69, 0x66, 0, 0]; // "Exif\0\0"
const ICC = [...'ICC_PROFILE'].map((c) => c.charCodeAt(0)).concat(0);

function startsWith(b: Uint8Array, prefix: number[]): boolean {
  return b.length >= prefix.length && prefix.every((v, i) => b[i] === v);
}

/**
 * The Orientation tag (0x0112) of IFD0 of an EXIF block (a TIFF structure): 1 (upright) when it has none,
 * null when the block cannot be read (sharp then decides, as it would for any other odd file).
 */
export function exifOrientation(t: Uint8Array): number | null {
  if (t.length < 8) return null;
  const little = t[0] === 0x49 && t[1] === 0x49;
  if (!little && !(t[0] === 0x4d && t[1] === 0x4d)) return null;
  const u16 = (at: number) => (little ? t[at]! | (t[at + 1]! << 8) : (t[at]! << 8) | t[at + 1]!);
  const u32 = (at: number) => (little ? u16(at) + u16(at + 2) * 65536 : u16(at) * 65536 + u16(at + 2));
  if (u16(2) !== 42) return null;
  const ifd = u32(4);
  if (ifd + 2 > t.length) return null;
  const count = u16(ifd);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > t.length) return null;
    if (u16(entry) === 0x0112) return u16(entry + 2) === 3 ? u16(entry + 8) : null; // SHORT, value in place
  }
  return 1;
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
