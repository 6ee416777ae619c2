import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeRgb, plainJpeg } from '../../src/augment/decode.js';
import { photoJpeg, prng } from '../../src/fixtures/images.js';

const viaSharp = async (bytes: Uint8Array) => (await sharp(bytes).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true })).data;

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

describe('decodeRgb', () => {
  it('decodes plain JPEGs (colour, grey, progressive) to RGB within a few levels of libjpeg', async () => {
    const photo = await photoJpeg(3, { width: 200, height: 150 });
    const grey = await sharp(photo).greyscale().jpeg().toBuffer();
    const progressive = await sharp(photo).jpeg({ progressive: true, chromaSubsampling: '4:4:4' }).toBuffer();
    for (const jpeg of [photo, grey, progressive]) {
      expect(plainJpeg(jpeg)).toBe(true);
      const out = await decodeRgb(jpeg);
      if ('error' in out) throw new Error(out.error);
      expect([out.width, out.height]).toEqual([200, 150]);
      expect(maxDiff(out.rgb, await viaSharp(jpeg))).toBeLessThanOrEqual(6);
    }
  });

  it('sends CMYK JPEGs, PNG and WebP to sharp, with its colour management', async () => {
    const photo = await photoJpeg(4, { width: 120, height: 90 });
    const cmyk = await sharp(photo).toColourspace('cmyk').jpeg().toBuffer();
    const png = await sharp(photo).png().toBuffer();
    const webp = await sharp(photo).webp().toBuffer();
    for (const bytes of [cmyk, png, webp]) {
      expect(plainJpeg(bytes)).toBe(false);
      const out = await decodeRgb(bytes);
      if ('error' in out) throw new Error(out.error);
      expect(maxDiff(out.rgb, await viaSharp(bytes))).toBe(0);
    }
  });

  it('refuses truncated files, junk and oversized headers with a reason', async () => {
    const photo = await photoJpeg(5, { width: 160, height: 120 });
    expect(plainJpeg(photo.subarray(0, photo.length - 200))).toBe(false); // no EOI: not the silent fast path
    expect(await decodeRgb(photo.subarray(0, photo.length - 200))).toEqual({ error: 'decode_error' });
    expect(await decodeRgb(photo.subarray(0, 300))).toEqual({ error: 'decode_error' });
    expect(await decodeRgb(new TextEncoder().encode('<html>not an image</html>'))).toEqual({ error: 'decode_error' });
    // frame headers claiming 81 MP and 400 MP: refused from the header, before any pixel is decoded
    const sof = photo.findIndex((v, i) => v === 0xff && photo[i + 1] === 0xc0);
    for (const side of [9000, 20000]) {
      const huge = Buffer.from(photo);
      huge.writeUInt16BE(side, sof + 5);
      huge.writeUInt16BE(side, sof + 7);
      expect(await decodeRgb(huge)).toEqual({ error: 'too_many_pixels' });
    }
  });

  it('never throws on random bytes behind a JPEG signature', async () => {
    const rand = prng(9);
    for (let t = 0; t < 200; t++) {
      const bytes = Uint8Array.from({ length: 4 + Math.floor(rand() * 64) }, () => Math.floor(rand() * 256));
      bytes.set([0xff, 0xd8], 0);
      bytes.set([0xff, 0xd9], bytes.length - 2);
      expect(typeof plainJpeg(bytes)).toBe('boolean');
      const out = await decodeRgb(bytes);
      if ('error' in out) expect(out.error).toBe('decode_error');
    }
  });
});
