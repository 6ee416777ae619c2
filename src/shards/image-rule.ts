/**
 * The one rule for reading an image: the formats kept, the pixel limit, how strict the decoder is, and the
 * orientation and colour it ends in. Ingest decodes downloads by it (and then refuses by size and aspect);
 * every stage that reads a stored record (the augment workers, `augment preview`, embed and eval) decodes by
 * it too, so a record decodes to the same pixels, or is refused for the same reason, wherever it is read.
 *
 * - **Formats**: JPEG, PNG, WebP, GIF, TIFF and AVIF/HEIF, sniffed from the bytes (`sniffImage`) before any
 *   decoder runs. SVG is refused (`svg_refused`): a few KB of filters can take minutes to render, so it never
 *   reaches librsvg; bytes of no kept format are `decode_error`, as undecodable bytes always were.
 * - **Pixels**: more than `MAX_IMAGE_PIXELS` is refused from the header (`too_many_pixels`).
 * - **Strictness**: `failOn: 'error'`. A truncated or corrupt file is refused, while the warnings libjpeg and
 *   libpng give for files every browser shows (extraneous bytes, a premature end after the last full scan)
 *   are not; `'warning'` would refuse those, `'none'` would fill missing data silently with grey.
 * - **Result**: the first frame, EXIF orientation applied, 8-bit sRGB RGB (embedded ICC profiles converted,
 *   CMYK and grey converted, alpha flattened on white).
 */
import sharp, { type Sharp, type SharpOptions } from 'sharp';
import type { FailureReason } from './failures.js';

/** The formats kept, by sharp's name for them (sharp reads AVIF as `heif`). */
export const IMAGE_FORMATS: readonly string[] = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif', 'heif'];

/** Larger images (width x height of the first frame) are refused from their header: ingest's default limit. */
export const MAX_IMAGE_PIXELS = 100e6;

/** How strict the decoder is (see the module comment). */
export const IMAGE_FAIL_ON = 'error';

/** Why an image is refused: the reasons of `FailureReason` a decode gives. */
export type ImageRefusal = Extract<FailureReason, 'svg_refused' | 'too_many_pixels' | 'decode_error'>;

/** What the bytes of an image are, from their first bytes: a kept format (sharp's name), `svg`, or null. */
export type SniffedFormat = 'jpeg' | 'png' | 'webp' | 'gif' | 'tiff' | 'heif' | 'svg';

/** The brands of an ISO-BMFF `ftyp` box that name a HEIF or AVIF image (libheif's list). */
const HEIF_BRANDS = new Set([
  'avif',
  'avis',
  'heic',
  'heix',
  'hevc',
  'hevx',
  'heim',
  'heis',
  'hevm',
  'hevs',
  'mif1',
  'msf1',
]);

const ascii = (b: Uint8Array, at: number, text: string) =>
  b.length >= at + text.length && [...text].every((c, i) => b[at + i] === c.charCodeAt(0));

/**
 * The format of an image from its signature, as libvips would pick its loader; `svg` for XML text with an
 * `<svg` element near its start; null for anything else (no decoder is asked).
 */
export function sniffImage(b: Uint8Array): SniffedFormat | null {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (ascii(b, 0, '\x89PNG\r\n\x1a\n')) return 'png';
  if (ascii(b, 0, 'GIF87a') || ascii(b, 0, 'GIF89a')) return 'gif';
  if (ascii(b, 0, 'RIFF') && ascii(b, 8, 'WEBP')) return 'webp';
  if (ascii(b, 0, 'II*\0') || ascii(b, 0, 'MM\0*') || ascii(b, 0, 'II+\0') || ascii(b, 0, 'MM\0+')) return 'tiff';
  if (ascii(b, 4, 'ftyp') && b.length >= 12) {
    const brand = String.fromCharCode(b[8]!, b[9]!, b[10]!, b[11]!);
    return HEIF_BRANDS.has(brand) ? 'heif' : null;
  }
  return looksLikeSvg(b) ? 'svg' : null;
}

/** XML text (after an optional BOM and white space) with `<svg` in its first 4 KiB. */
function looksLikeSvg(b: Uint8Array): boolean {
  let at = ascii(b, 0, '\xef\xbb\xbf') ? 3 : 0;
  while (at < b.length && (b[at] === 0x20 || b[at] === 0x09 || b[at] === 0x0a || b[at] === 0x0d)) at++;
  if (b[at] !== 0x3c) return false; // '<'
  return /<svg[\s>/]/i.test(Buffer.from(b.buffer, b.byteOffset, Math.min(b.length, 4096)).toString('latin1'));
}

/** The refusal due before any decoding: SVG, or bytes of no kept format; null when a decoder may read them. */
export function formatRefusal(bytes: Uint8Array): ImageRefusal | null {
  const format = sniffImage(bytes);
  return format === 'svg' ? 'svg_refused' : format === null ? 'decode_error' : null;
}

/** sharp's input options under the rule: strictness, pixel limit, first frame. */
export function imageInputOptions(limitInputPixels = MAX_IMAGE_PIXELS): SharpOptions {
  return { failOn: IMAGE_FAIL_ON, limitInputPixels, pages: 1, sequentialRead: true };
}

/**
 * A sharp pipeline of `bytes` to oriented 8-bit sRGB RGB under the rule (`image`), or the refusal due before
 * any decoding (`formatRefusal`). Add the rest (resize, extract, `.raw()`) and read it; an error it then throws
 * is a refusal too (`imageRefusalOf`).
 */
export function openImage(
  bytes: Uint8Array,
  limitInputPixels = MAX_IMAGE_PIXELS,
): { image: Sharp } | { error: ImageRefusal } {
  const refused = formatRefusal(bytes);
  if (refused) return { error: refused };
  const image = sharp(bytes, imageInputOptions(limitInputPixels))
    .autoOrient()
    .toColourspace('srgb')
    .flatten({ background: '#ffffff' })
    .removeAlpha();
  return { image };
}

/** The refusal a sharp error under the rule stands for. */
export function imageRefusalOf(err: unknown): ImageRefusal {
  return /pixel limit/i.test(err instanceof Error ? err.message : String(err)) ? 'too_many_pixels' : 'decode_error';
}

/** Decodes `bytes` under the rule to 8-bit RGB (HWC), or the reason it is refused. */
export async function decodeImageRgb(
  bytes: Uint8Array,
  limitInputPixels = MAX_IMAGE_PIXELS,
): Promise<{ rgb: Uint8Array; width: number; height: number } | { error: ImageRefusal }> {
  try {
    const opened = openImage(bytes, limitInputPixels);
    if ('error' in opened) return opened;
    const { data, info } = await opened.image.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
  } catch (err) {
    return { error: imageRefusalOf(err) };
  }
}
