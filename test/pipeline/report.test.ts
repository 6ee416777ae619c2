/**
 * The report's pictures: labels drawn without system fonts, curves with round ticks and resumes shown as
 * breaks, a multi-crop preview at least 800 px wide, a contact sheet whose header counts what ingest kept
 * and dropped, and the k-NN neighbour picture's choice of neighbours and queries.
 */
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCrops } from '../../src/augment/config.js';
import { PREVIEW_MIN_WIDTH, renderPreview } from '../../src/augment/preview.js';
import { knnPicture, nearest, pickQueries } from '../../src/eval/knn-picture.js';
import { captionOf, contactSheet, sheetHeader } from '../../src/pipeline/contact-sheet.js';
import { evalFolders } from '../../src/pipeline/report.js';
import type { UnitRecord } from '../../src/shards/dataset.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { svgText, textWidth } from '../../src/svg-text.js';
import type { MetricLine } from '../../src/train/metrics.js';
import { interruptions, niceTicks, plotCurves } from '../../src/train/plot.js';
import { writePhotoDataset } from '../helpers/dataset.js';

let dir: string;
let data: Store;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-report-'));
  data = await openStore(join(dir, 'data'));
  await writePhotoDataset(data, { units: 2, perUnit: 6, width: 96, height: 72 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Dark pixels of a greyscale rendering of `svg` (w x h). */
async function dark(svg: string, w: number, h: number): Promise<number> {
  const raw = await sharp(
    Buffer.from(
      `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><rect width="100%" height="100%" fill="white"/>${svg}</svg>`,
    ),
  )
    .greyscale()
    .raw()
    .toBuffer();
  return raw.filter((v) => v < 128).length;
}

describe('labels', () => {
  it('are geometry, not <text>: a glyph lights exactly its pixels, whatever fonts the machine has', async () => {
    const one = svgText('1', 0, 7, { size: 1 });
    expect(one).not.toMatch(/<text/);
    expect(await dark(one, 6, 9)).toBe('..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.'.replace(/[^#]/g, '').length);
    expect(await dark(svgText('ln K = 3.466', 0, 14), 200, 18)).toBeGreaterThan(100);
    expect(textWidth('abc', 2)).toBe(34);
    expect(svgText('é', 0, 7)).toBe(svgText('?', 0, 7)); // unknown characters show as '?'
  });
});

describe('curves', () => {
  const line = (step: number, loss: number, minute: number, run?: string): MetricLine => ({
    step,
    epoch: 0,
    loss,
    lr: 0.5,
    imagesPerSec: 10,
    dataWaitPct: 1,
    backend: 'wasm',
    time: new Date(Date.UTC(2026, 0, 1, 0, minute)).toISOString(),
    run,
  });

  it('ticks are round numbers covering the range', () => {
    expect(niceTicks(0, 300, 8)).toEqual([0, 50, 100, 150, 200, 250, 300]);
    expect(niceTicks(3.2, 4.3, 5)).toEqual([3.2, 3.4, 3.6, 3.8, 4, 4.2]);
    expect(niceTicks(0.5, 0.5, 5).length).toBeGreaterThan(0);
  });

  it('a resume is where the logging process changes, or (older metrics) where the clock jumps', () => {
    const marked = [line(25, 4, 1, 'a'), line(50, 3.8, 2, 'a'), line(75, 3.7, 3, 'b'), line(100, 3.6, 4, 'b')];
    expect(interruptions(marked)).toEqual([2]);
    const unmarked = [line(25, 4, 1), line(50, 3.8, 2), line(75, 3.7, 3), line(100, 3.6, 90), line(125, 3.5, 91)];
    expect(interruptions(unmarked)).toEqual([3]);
    expect(interruptions([line(25, 4, 1, 'a'), line(50, 3.8, 2, 'a')])).toEqual([]);
  });

  it('draws both panels wide enough to read', async () => {
    const png = await plotCurves([line(25, 4.2, 1, 'a'), line(50, 3.6, 2, 'a'), line(75, 3.4, 30, 'b')], {
      prototypes: 32,
      freezeSteps: 20,
    });
    expect(await sharp(png).metadata()).toMatchObject({ format: 'png', width: 1000, height: 680 });
  });
});

describe('multi-crop preview', () => {
  it('is at least 800 px wide even for small crops, and taller than the largest crop plus its labels', async () => {
    for (const crops of ['2x32@0.3-1,2x16@0.1-0.3', '2x224@0.14-1,6x96@0.05-0.14']) {
      const { png } = await renderPreview(data, { augment: { crops: parseCrops(crops) } });
      const meta = await sharp(png).metadata();
      expect(meta.width, crops).toBeGreaterThanOrEqual(PREVIEW_MIN_WIDTH);
      expect(meta.height, crops).toBeGreaterThan(200 + 3 * 24);
    }
  });
});

describe('contact sheet', () => {
  const unit = (over: Partial<UnitRecord>): UnitRecord => ({
    unit: 0,
    shard: 's',
    records: 40,
    bytes: 1,
    batches: 1,
    inputs: 50,
    failed: { http_404: 2, decode_error: 1 },
    duplicates: { exact: 4, near: 3 },
    timings: {},
    startedAt: '',
    committedAt: '',
    ...over,
  });

  it('counts what ingest kept and dropped, reasons most frequent first', () => {
    expect(sheetHeader([unit({}), unit({ unit: 1, records: 30, failed: { http_404: 5 } })], 48)).toEqual([
      'Contact sheet: the first 48 of 70 images kept in 2 units',
      'ingest read 100 inputs: 8 failed (http_404 7, decode_error 1)',
      'duplicates dropped: 8 exact, 6 near (perceptual hash)',
    ]);
  });

  it('captions a tile with the record caption, else its URL file name', async () => {
    expect(captionOf({ caption: ' a fox ', url: 'https://x.org/a/b.jpg' })).toBe('a fox');
    expect(captionOf({ caption: null, url: 'https://x.org/a/caf%C3%A9.jpg?s=1' })).toBe('café.jpg');
    expect(captionOf({ caption: '', url: 'not a url' })).toBe('not a url');
    const meta = await sharp(await contactSheet(data, { cols: 4 })).metadata();
    expect(meta).toMatchObject({ width: 4 * 140 + 12, height: 104 + 3 * (128 + 52) });
  });
});

describe('k-NN picture', () => {
  it('nearest neighbours by cosine, best first; queries spread over the labels', () => {
    const pool = [
      [1, 0],
      [0, 1],
      [0.9, 0.1],
      [-1, 0],
    ].map((r) => Float32Array.from(r));
    expect(nearest(pool, Float32Array.from([2, 0]), 3).map((n) => n.index)).toEqual([0, 2, 1]);
    expect(nearest(pool, Float32Array.from([1, 0]), 1)[0]!.similarity).toBeCloseTo(1, 6);
    expect(pickQueries(['b', 'a', 'b', 'a', 'a', 'c'], 2)).toEqual([1, 3, 0, 2, 5]);
  });

  it('one row per query and one block per model', async () => {
    const folder = async (split: string) => {
      const keys: string[] = [];
      for (const [i, label] of ['red', 'red', 'blue', 'blue'].entries()) {
        await mkdir(join(dir, split, label), { recursive: true });
        const key = `${label}/${i}.png`;
        await sharp({ create: { width: 16, height: 16, channels: 3, background: label } })
          .png()
          .toFile(join(dir, split, key));
        keys.push(key);
      }
      const labels = keys.map((k) => k.split('/')[0]!);
      return {
        keys,
        labels,
        features: labels.map((l, i) => Float32Array.from(l === 'red' ? [1, i * 0.01] : [i * 0.01, 1])),
        failed: 0,
      };
    };
    const [train, test] = [await folder('train'), await folder('test')];
    const png = await knnPicture(
      [
        { name: 'trained', top1: 1, train, test },
        { name: 'random init', top1: 0.5, train, test },
      ],
      { trainDir: join(dir, 'train'), testDir: join(dir, 'test'), k: 3 },
    );
    const meta = await sharp(png).metadata();
    expect(meta.height).toBe(112 + 4 * 96 + 8);
    expect(meta.width).toBe(16 + 150 + 80 + 2 * (28 + 3 * 88) + 8);
  });
});

describe("the demo report's evaluation folders", () => {
  it('are made anew: a smaller eval_images leaves no image of an earlier, larger run', async () => {
    const root = join(dir, 'eval');
    const count = async (split: string) =>
      (await readdir(join(root, split), { recursive: true })).filter((f) => f.endsWith('.jpg')).length;
    await evalFolders(root, 16);
    expect([await count('train'), await count('test')]).toEqual([8, 8]);
    const folders = await evalFolders(root, 4);
    expect(folders).toEqual({ train: join(root, 'train'), test: join(root, 'test') });
    expect([await count('train'), await count('test')]).toEqual([2, 2]);
  });
});
