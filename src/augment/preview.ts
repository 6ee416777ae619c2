/**
 * `wildstream augment preview`: one record's multi-crop views, de-normalised and laid out in a PNG next to
 * the original, so a person can see what the trainer sees. Each crop is enlarged with nearest-neighbour
 * sampling (its pixels stay visible as pixels) and labelled with its size, the share of the image it covers
 * (RandomResizedCrop's scale) and the distortions drawn; the original shows where each crop came from.
 *
 * The record is decoded once, as the augment workers decode it (./decode.ts, the one decode rule), and the
 * original is drawn from those pixels: a record shows here exactly when training uses it. The original is
 * fitted into a box of HEAD_BOX whatever its shape (a 1x3000 or a 3000x1 image included).
 */
import sharp, { type OverlayOptions } from 'sharp';
import { checkOptionsObject, ConfigError, shown, WildstreamError } from '../errors.js';
import type { Store } from '../shards/store.js';
import { CELL, renderSheet, svgText } from '../svg-text.js';
import { augmentConfig, cropList, type AugmentConfig } from './config.js';
import { decodeRgb } from './decode.js';
import { cropImage, type CropDraw } from './kernels.js';
import { drawCrop } from './multicrop.js';
import { DatasetStream } from './stream.js';

export interface PreviewOptions {
  seed?: number;
  epoch?: number;
  /** Which record of the epoch's stream. @default 0 */
  record?: number;
  augment?: Partial<AugmentConfig>;
}

/**
 * A record `augment preview` cannot show: the decode rule refuses its image (`reason`, the reason the loader
 * skips it for), or drawing it failed (`reason` 'render_error', the cause attached). Names the record by its
 * index in the epoch's stream and its key.
 */
export class PreviewError extends WildstreamError {
  override readonly code = 'WS_ERR_PREVIEW';
  constructor(
    message: string,
    readonly record: number,
    readonly key: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The original is drawn fitted into this box, its aspect kept (each side at least 1 px). */
export const HEAD_BOX = { width: 390, height: 260 } as const;

/** The size of the original's drawing: `width` x `height` fitted into HEAD_BOX. */
export function headSize(width: number, height: number): { width: number; height: number } {
  const fit = Math.min(HEAD_BOX.width / width, HEAD_BOX.height / height);
  const side = (v: number, most: number) => Math.max(1, Math.min(most, Math.round(v * fit)));
  return { width: side(width, HEAD_BOX.width), height: side(height, HEAD_BOX.height) };
}

/** Smallest preview width: readable at a glance on any screen. */
export const PREVIEW_MIN_WIDTH = 800;
const GAP = 16,
  TITLE = 48,
  LINE = 24;
/** Smallest crop tile side, px: 10 characters of label at twice the 6 px cell, the longest word included. */
export const MIN_TILE = 124;
const COLOURS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#9a6324'];

/**
 * Renders the preview PNG; resolves to its bytes and the key of the record shown. Throws a ConfigError when
 * `record` or `epoch` is not an integer >= 0 or an augment option is refused, a PreviewError naming the record
 * when the decode rule refuses its image or drawing it fails, a RangeError when the epoch has no record
 * `record`.
 */
export async function renderPreview(store: Store, options: PreviewOptions = {}): Promise<{ png: Buffer; key: string }> {
  checkOptionsObject(options, 'preview options');
  // A record of -1, NaN or 2.5 showed another record (0, 0, 3) as if it were the one asked for.
  for (const name of ['record', 'epoch'] as const) {
    const v = options[name];
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0))
      throw new ConfigError(`${name} must be an integer >= 0, got ${shown(v)}`);
  }
  const config = augmentConfig(options.augment);
  const epoch = options.epoch ?? 0;
  const wanted = options.record ?? 0;
  const stream = new DatasetStream(store, {
    seed: options.seed ?? 0,
    epochs: epoch + 1,
    cursor: { epoch, group: 0, offset: 0, position: 0, units: null },
  });
  for await (const item of stream) {
    if (item.position < wanted) continue;
    const { key, image } = item.record;
    const which = `record ${item.position} (key ${key})`;
    const decoded = await decodeRgb(image);
    if ('error' in decoded)
      throw new PreviewError(
        `${which} cannot be shown: its image is refused (${decoded.error}), and training skips it`,
        item.position,
        key,
        decoded.error,
      );
    try {
      const at = { seed: options.seed ?? 0, epoch, record: item.position };
      const draws = cropList(config).map((_, i) => drawCrop(config, at, i, decoded.width, decoded.height));
      const crops = cropImage(decoded.rgb, decoded.width, draws, config);
      const png = await layout({ ...decoded, key }, draws, crops, config);
      return { png, key };
    } catch (err) {
      throw new PreviewError(`drawing ${which} failed: ${(err as Error).message}`, item.position, key, 'render_error', {
        cause: err,
      });
    }
  }
  throw new RangeError(`the dataset has fewer than ${wanted + 1} records`);
}

/** The record's image as the workers decode it: 8-bit RGB, oriented. */
interface Original {
  rgb: Uint8Array;
  width: number;
  height: number;
  key: string;
}

/** The tile side of each crop: the largest crops at `base` px, the others in proportion (never unreadably small). */
function tileSides(draws: CropDraw[], base: number): number[] {
  const largest = Math.max(...draws.map((d) => d.size));
  return draws.map((d) => Math.max(MIN_TILE, Math.round((base * d.size) / largest)));
}

/** The original (with each crop's box) and each crop enlarged and labelled, left to right, under a title. */
async function layout(
  original: Original,
  draws: CropDraw[],
  crops: Float32Array[],
  config: AugmentConfig,
): Promise<Buffer> {
  let base = 200;
  const { width: headWidth, height: headHeight } = headSize(original.width, original.height);
  const widthAt = (b: number) => GAP + headWidth + GAP + tileSides(draws, b).reduce((s, t) => s + t + GAP, 0);
  while (widthAt(base) < PREVIEW_MIN_WIDTH) base += 20;
  const sides = tileSides(draws, base);
  const width = widthAt(base);
  const labels = draws.map((d, i) => labelLines(d, i, original, sides[i]!));
  const height = TITLE + Math.max(headHeight, ...sides.map((s, i) => s + 12 + LINE * labels[i]!.length)) + GAP;
  const head = await sharp(original.rgb, { raw: { width: original.width, height: original.height, channels: 3 } })
    .resize(headWidth, headHeight, { fit: 'fill' })
    .png()
    .toBuffer();
  const tiles: OverlayOptions[] = [{ input: head, left: GAP, top: TITLE }];
  const svg: string[] = [
    svgText(
      `What the trainer sees: ${draws.length} crops of record ${original.key} (${original.width}x${original.height} px)`,
      GAP,
      30,
      { size: 2 },
    ),
  ];
  const [fx, fy] = [headWidth / original.width, headHeight / original.height];
  let left = GAP * 2 + headWidth;
  for (const [i, draw] of draws.entries()) {
    const colour = COLOURS[i % COLOURS.length]!,
      side = sides[i]!;
    const { x, y, w, h } = draw.box;
    svg.push(
      `<rect x="${GAP + x * fx}" y="${TITLE + y * fy}" width="${w * fx}" height="${h * fy}" fill="none" stroke="${colour}" stroke-width="3"/>`,
      svgText(String(i + 1), GAP + x * fx + 4, TITLE + y * fy + 18, { fill: colour }),
    );
    const pixels = await sharp(denormalise(crops[i]!, config), {
      raw: { width: draw.size, height: draw.size, channels: 3 },
    })
      .resize(side, side, { kernel: side >= draw.size ? 'nearest' : 'lanczos3' })
      .png()
      .toBuffer();
    tiles.push({ input: pixels, left, top: TITLE });
    svg.push(
      `<rect x="${left - 2}" y="${TITLE - 2}" width="${side + 4}" height="${side + 4}" fill="none" stroke="${colour}" stroke-width="4"/>`,
    );
    labels[i]!.forEach((text, j) =>
      svg.push(svgText(text, left, TITLE + side + LINE + j * LINE, { size: 2, fill: j === 0 ? colour : '#222' })),
    );
    left += side + GAP;
  }
  return renderSheet(width, height, tiles, svg);
}

/**
 * A tile's label, wrapped to its width (`side` px): crop number and size, the share of the image it covers,
 * distortions.
 */
export function labelLines(
  d: CropDraw,
  i: number,
  original: Pick<Original, 'width' | 'height'>,
  side: number,
): string[] {
  const scale = (d.box.w * d.box.h) / (original.width * original.height);
  const drawn = [d.flip && 'flip', d.jitter && 'jitter', d.grey && 'grey', d.blur !== null && 'blur'].filter(
    (x): x is string => Boolean(x),
  );
  const fit = Math.floor((side + 1) / (CELL.width * 2));
  const lines = [`${i + 1}: ${d.size} px`, `scale ${scale.toFixed(2)}`];
  let line = '';
  for (const word of drawn.length ? drawn : ['no', 'distortion']) {
    if (line && line.length + 1 + word.length > fit) [lines[lines.length], line] = [line, word];
    else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line];
}

function denormalise(crop: Float32Array, config: AugmentConfig): Buffer {
  const out = Buffer.alloc(crop.length);
  for (let i = 0; i < crop.length; i++) {
    const c = i % 3;
    out[i] = Math.max(0, Math.min(255, Math.round((crop[i]! * config.std[c]! + config.mean[c]!) * 255)));
  }
  return out;
}
