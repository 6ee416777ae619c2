/**
 * embed and eval read an image by the one rule every stage reads by (src/shards/image-rule.ts): EXIF orientation
 * applied, alpha flattened on white, SVG refused before any decoder runs (a refused image counts as failed).
 */
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeRgb } from '../../src/augment/decode.js';
import { evalPixels } from '../../src/eval/images.js';
import { photoJpeg } from '../../src/fixtures/images.js';
import { svgBomb, withOrientation } from '../augment/hostile-images.js';

const MEAN = [0, 0, 0];
const STD = [1, 1, 1];

/** evalPixels with identity normalisation, back to bytes. */
async function pixels(bytes: Uint8Array, size: number): Promise<Uint8Array | null> {
  const out = await evalPixels(bytes, size, MEAN, STD);
  return 'error' in out ? null : Uint8Array.from(out, (v) => Math.round(v * 255));
}

describe('the decode rule, in embed and eval', () => {
  it('turns a photo by its EXIF orientation, as the augment workers and ingest do', async () => {
    // A wide image whose left half is dark and right half bright: after a quarter turn the dark half is on top.
    const left = { create: { width: 80, height: 120, channels: 3, background: '#000000' } } as const;
    const wide = await sharp({ create: { width: 160, height: 120, channels: 3, background: '#ffffff' } })
      .composite([{ input: await sharp(left).png().toBuffer(), left: 0, top: 0 }])
      .jpeg()
      .toBuffer();
    const rotated = withOrientation(wide, 6); // stored wide, shown tall: rotate 90 degrees clockwise
    const out = await pixels(rotated, 32);
    if (!out) throw new Error('refused');
    const at = (x: number, y: number) => out[(y * 32 + x) * 3]!;
    expect(at(16, 2)).toBeLessThan(40); // top: the dark half
    expect(at(16, 29)).toBeGreaterThan(215); // bottom: the bright half
    // and the same pixels as the augment decoder gives, up to the resize
    const decoded = await decodeRgb(rotated);
    if ('error' in decoded) throw new Error(decoded.error);
    expect([decoded.width, decoded.height]).toEqual([120, 160]);
  });

  it('flattens transparency on white, not on the colour hidden under it', async () => {
    const clear = await sharp({
      create: { width: 40, height: 40, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
    })
      .png()
      .toBuffer();
    const out = await pixels(clear, 16);
    if (!out) throw new Error('refused');
    expect(Math.min(...out)).toBe(255);
  });

  it('refuses SVG without rendering it, and bytes of no kept format', async () => {
    const t0 = performance.now();
    expect(await pixels(svgBomb(), 16)).toBeNull();
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(await pixels(Buffer.from('<html><body>not an image</body></html>'), 16)).toBeNull();
    expect(await pixels(await photoJpeg(3, { width: 48, height: 48 }), 16)).not.toBeNull();
  });
});
