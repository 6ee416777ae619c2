/**
 * The report's contact sheet: the first kept images as labelled thumbnails under a header that says how many
 * there are and what ingest dropped (failures by reason, duplicates), from the committed unit records. Each
 * tile is captioned with the record's caption, or else the file name its URL gave, and its size.
 */
import sharp, { type OverlayOptions } from 'sharp';
import { listUnits, type UnitRecord } from '../shards/dataset.js';
import { ShardReader } from '../shards/reader.js';
import type { ImageRecord } from '../shards/schema.js';
import type { Store } from '../shards/store.js';
import { CELL, renderSheet, svgText } from '../svg-text.js';

export interface ContactSheetOptions {
  /** Thumbnails shown. @default 48 */
  count?: number;
  /** @default 8 */
  cols?: number;
  /** Thumbnail side in px. @default 128 */
  side?: number;
}

/** The header's lines: what the dataset holds and what ingest dropped. */
export function sheetHeader(units: UnitRecord[], shown: number): string[] {
  const sum = (f: (u: UnitRecord) => number) => units.reduce((n, u) => n + f(u), 0);
  const kept = sum((u) => u.records);
  const failed = new Map<string, number>();
  for (const u of units) for (const [why, n] of Object.entries(u.failed)) failed.set(why, (failed.get(why) ?? 0) + n);
  const reasons = [...failed]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([why, n]) => `${why} ${n}`)
    .join(', ');
  const failures = sum((u) => Object.values(u.failed).reduce((a, b) => a + b, 0));
  return [
    `Contact sheet: the first ${shown} of ${kept} images kept in ${units.length} unit${units.length === 1 ? '' : 's'}`,
    `ingest read ${sum((u) => u.inputs)} inputs: ${failures} failed${reasons ? ` (${reasons})` : ''}`,
    `duplicates dropped: ${sum((u) => u.duplicates.exact)} exact, ${sum((u) => u.duplicates.near)} near (perceptual hash)`,
  ];
}

/** A record's caption, or the last part of its URL's path when it has none. */
export function captionOf(r: Pick<ImageRecord, 'caption' | 'url'>): string {
  if (r.caption?.trim()) return r.caption.trim();
  try {
    return decodeURIComponent(new URL(r.url).pathname.split('/').filter(Boolean).pop() ?? r.url);
  } catch {
    return r.url;
  }
}

/** Text cut to `chars` characters, with '..' when cut. */
const fit = (text: string, chars: number) =>
  [...text].length <= chars ? text : `${[...text].slice(0, chars - 2).join('')}..`;

export async function contactSheet(data: Store, o: ContactSheetOptions = {}): Promise<Buffer> {
  const [count, cols, side] = [o.count ?? 48, o.cols ?? 8, o.side ?? 128];
  const units = await listUnits(data);
  const records: ImageRecord[] = [];
  for (const unit of units) {
    const reader = await ShardReader.open(data, unit.shard, { size: unit.bytes });
    for await (const record of reader.records()) {
      if (records.length >= count) break;
      records.push(record);
    }
    if (records.length >= count) break;
  }
  const [cellW, cellH, top] = [side + 12, side + 52, 104];
  const rows = Math.max(1, Math.ceil(records.length / cols));
  const [width, height] = [cols * cellW + 12, top + rows * cellH];
  const chars = Math.floor((side + 1) / (CELL.width * 2));
  const svg = sheetHeader(units, records.length).map((line, i) =>
    svgText(line, 12, 28 + i * 28, { fill: i ? '#444' : '#000' }),
  );
  const tiles: OverlayOptions[] = [];
  for (const [i, r] of records.entries()) {
    const [x, y] = [12 + (i % cols) * cellW, top + Math.floor(i / cols) * cellH];
    tiles.push({ input: await sharp(r.image).resize(side, side, { fit: 'cover' }).png().toBuffer(), left: x, top: y });
    svg.push(
      svgText(fit(captionOf(r), chars), x, y + side + 20),
      svgText(`${r.width}x${r.height}`, x, y + side + 42, { fill: '#666' }),
    );
  }
  return renderSheet(width, height, tiles, svg);
}
