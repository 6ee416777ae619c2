/**
 * `wildstream augment preview`: one record's multi-crop views, de-normalised and laid out in a PNG next to
 * the original, so a person can see what the trainer sees. Each crop is enlarged with nearest-neighbour
 * sampling (its pixels stay visible as pixels) and labelled with its size, the share of the image it covers
 * (RandomResizedCrop's scale) and the distortions drawn; the original shows where each crop came from.
 */
import sharp, { type OverlayOptions } from 'sharp';
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

/** Smallest preview width: readable at a glance on any screen. */
export const PREVIEW_MIN_WIDTH = 800;
const GAP = 16,
  TITLE = 48,
  LINE = 24,
  MIN_TILE = 124;
const COLOURS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#9a6324'];

/** Renders the preview PNG; resolves to its bytes and the key of the record shown. */
export async function renderPreview(store: Store, options: PreviewOptions = {}): Promise<{ png: Buffer; key: string }> {
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
    const decoded = await decodeRgb(item.record.image);
    if ('error' in decoded) throw new Error(`record ${item.record.key} does not decode (${decoded.error})`);
    const at = { seed: options.seed ?? 0, epoch, record: item.position };
    const draws = cropList(config).map((_, i) => drawCrop(config, at, i, decoded.width, decoded.height));
    const crops = cropImage(decoded.rgb, decoded.width, draws, config);
    const png = await layout(
      { bytes: item.record.image, width: decoded.width, height: decoded.height, key: item.record.key },
      draws,
      crops,
      config,
    );
    return { png, key: item.record.key };
  }
  throw new RangeError(`the dataset has fewer than ${wanted + 1} records`);
}

interface Original {
  bytes: Uint8Array;
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
  const headHeight = 260;
  const headWidth = Math.round((headHeight * original.width) / original.height);
  const widthAt = (b: number) => GAP + headWidth + GAP + tileSides(draws, b).reduce((s, t) => s + t + GAP, 0);
  while (widthAt(base) < PREVIEW_MIN_WIDTH) base += 20;
  const sides = tileSides(draws, base);
  const width = widthAt(base);
  const labels = draws.map((d, i) => labelLines(d, i, original, sides[i]!));
  const height = TITLE + Math.max(headHeight, ...sides.map((s, i) => s + 12 + LINE * labels[i]!.length)) + GAP;
  const head = await sharp(original.bytes).resize(headWidth, headHeight, { fit: 'fill' }).png().toBuffer();
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

/** A tile's label, wrapped to its width: crop number and size, the share of the image it covers, distortions. */
function labelLines(d: CropDraw, i: number, original: Original, side: number): string[] {
  const scale = (d.box.w * d.box.h) / (original.width * original.height);
  const drawn = [d.flip && 'flip', d.jitter && 'jitter', d.grey && 'grey', d.blur !== null && 'blur'].filter(
    (x): x is string => Boolean(x),
  );
  const fit = Math.floor((side + 1) / (CELL.width * 2));
  const lines = [`${i + 1}: ${d.size} px`, `scale ${scale.toFixed(2)}`];
  let line = '';
  for (const word of drawn.length ? drawn : ['no distortion']) {
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
