/**
 * One decode rule for an image wherever it is read (src/shards/image-rule.ts): the augment decoder (the
 * workers and `augment preview`) orients, limits, refuses and keeps formats as ingest does, and a record the
 * rule refuses is a counted skip in the loader, never a hung worker.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJpeg, decodeRgb, decodeWithSharp, plainJpeg } from '../../src/augment/decode.js';
import { MultiCropLoader } from '../../src/augment/loader.js';
import { photoJpeg } from '../../src/fixtures/images.js';
import { decodeImage } from '../../src/ingest/decode.js';
import { MAX_IMAGE_PIXELS, sniffImage } from '../../src/shards/image-rule.js';
import { openStore } from '../../src/shards/store.js';
import { writeDataset } from '../helpers/dataset.js';
import { svgBomb, withOrientation } from './hostile-images.js';

const oriented = async (bytes: Uint8Array) =>
  sharp(bytes).autoOrient().toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });

describe('the decode rule, in the augment decoder', () => {
  it('applies EXIF orientation as ingest does: a rotated JPEG leaves the fast path and decodes upright', async () => {
    const photo = await photoJpeg(21, { width: 160, height: 96 });
    for (const o of [3, 6, 8]) {
      for (const little of [true, false]) {
        const jpeg = withOrientation(photo, o, little);
        expect((await sharp(jpeg).metadata()).orientation, `orientation ${o}`).toBe(o);
        expect(plainJpeg(jpeg), `orientation ${o}`).toBeNull();
        const out = await decodeRgb(jpeg);
        if ('error' in out) throw new Error(out.error);
        const upright = await oriented(jpeg);
        expect([out.width, out.height], `orientation ${o}`).toEqual([upright.info.width, upright.info.height]);
        expect(Buffer.from(out.rgb).equals(upright.data), `orientation ${o}`).toBe(true);
        const ingested = await decodeImage(jpeg, { maxSide: 1000, minImageSize: 1 });
        if (!ingested.ok) throw new Error(ingested.reason);
        expect([ingested.width, ingested.height]).toEqual([out.width, out.height]);
      }
    }
    // upright (orientation 1) keeps the fast path
    expect(plainJpeg(withOrientation(photo, 1))).toEqual({ width: 160, height: 96 });
    expect(decodeJpeg(withOrientation(photo, 1))).not.toBeNull();
  });

  it("converts an embedded ICC profile as sharp does everywhere else (not the fast path's raw YCbCr)", async () => {
    const photo = await photoJpeg(22, { width: 64, height: 48 });
    const tagged = await sharp(photo).withIccProfile('p3').jpeg().toBuffer();
    expect(plainJpeg(tagged)).toBeNull();
    const out = await decodeRgb(tagged);
    if ('error' in out) throw new Error(out.error);
    expect(Buffer.from(out.rgb).equals((await oriented(tagged)).data)).toBe(true);
  });

  it('refuses SVG before any decoder runs, however long it would take to render', async () => {
    const bomb = svgBomb();
    expect(bomb.length).toBeLessThan(2048);
    expect(sniffImage(bomb)).toBe('svg');
    const t0 = performance.now();
    expect(await decodeRgb(bomb)).toEqual({ error: 'svg_refused' });
    expect(await decodeWithSharp(bomb)).toEqual({ error: 'svg_refused' });
    expect(await decodeRgb(Buffer.concat([Buffer.from('\ufeff  \n<?xml version="1.0"?>\n'), bomb]))).toEqual({
      error: 'svg_refused',
    });
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(await decodeImage(bomb)).toEqual({ ok: false, reason: 'svg_refused' }); // as ingest refuses it
  }, 10_000);

  it('keeps exactly the formats ingest keeps', async () => {
    const pixels = await sharp(await photoJpeg(23, { width: 96, height: 80 }))
      .raw()
      .toBuffer();
    const image = () => sharp(pixels, { raw: { width: 96, height: 80, channels: 3 } });
    const samples: Record<string, Buffer> = {
      jpeg: await image().jpeg().toBuffer(),
      png: await image().png().toBuffer(),
      webp: await image().webp().toBuffer(),
      gif: await image().gif().toBuffer(),
      tiff: await image().tiff().toBuffer(),
      avif: await image().avif({ effort: 0 }).toBuffer(),
      svg: Buffer.from(
        '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="80"><rect width="96" height="80"/></svg>',
      ),
      html: Buffer.from('<html><body>not an image</body></html>'),
      junk: Buffer.alloc(300, 7),
    };
    for (const [name, bytes] of Object.entries(samples)) {
      const ingested = await decodeImage(bytes, { minImageSize: 1 });
      const decoded = await decodeRgb(bytes);
      expect('error' in decoded, name).toBe(!ingested.ok);
      if (ingested.ok || 'error' in decoded) continue;
      expect([decoded.width, decoded.height], name).toEqual([96, 80]);
    }
  });

  it("refuses images above ingest's pixel limit from the header, and decodes those below it", async () => {
    expect(MAX_IMAGE_PIXELS).toBe(100e6);
    const photo = await photoJpeg(24, { width: 160, height: 120 });
    const sof = photo.findIndex((v, i) => v === 0xff && photo[i + 1] === 0xc0);
    const header = (w: number, h: number) => {
      const b = Buffer.from(photo);
      b.writeUInt16BE(h, sof + 5);
      b.writeUInt16BE(w, sof + 7);
      return b;
    };
    for (const [w, h] of [
      [10001, 10000],
      [20000, 20000],
    ] as const) {
      expect(await decodeRgb(header(w, h)), `${w}x${h}`).toEqual({ error: 'too_many_pixels' });
      expect(await decodeImage(header(w, h))).toEqual({ ok: false, reason: 'too_many_pixels' });
    }
    // 65 MP declared over the data of 0.02 MP: above the augment decoder's old 64 MP limit, below the rule's;
    // libjpeg warns of the missing data (not an error under failOn 'error') and fills it in, as ingest would.
    const bomb = await decodeRgb(header(8100, 8100));
    expect('error' in bomb ? bomb.error : `${bomb.width}x${bomb.height}`).toBe('8100x8100');
  });
});

describe('a record the rule refuses, in the loader', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ws-decode-rule-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('is skipped and counted by its reason, and never holds up a worker', async () => {
    const store = await openStore(join(dir, 'svg'));
    const photos = await Promise.all(Array.from({ length: 5 }, (_, i) => photoJpeg(i, { width: 64, height: 56 })));
    const images = [...photos.slice(0, 2), svgBomb(), ...photos.slice(2)];
    await writeDataset(store, { units: 1, perUnit: images.length, image: (i) => images[i]! });
    const loader = new MultiCropLoader(store, {
      batchSize: 2,
      seed: 1,
      epochs: 1,
      threads: 1,
      augment: { crops: '2x16' },
    });
    const t0 = performance.now();
    let samples = 0;
    for await (const batch of loader) {
      samples += batch.keys.length;
      batch.release();
    }
    expect(performance.now() - t0).toBeLessThan(20_000);
    expect(samples).toBe(5);
    expect(loader.stats.skipped).toEqual({ svg_refused: 1 });
  }, 30_000);
});
