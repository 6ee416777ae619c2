import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { augmentConfig } from '../../src/augment/config.js';
import { DecodeBuffer, decodeJpeg, decodeRgb, plainJpeg } from '../../src/augment/decode.js';
import { imageMemory } from '../../src/augment/kernels.js';
import { multiCrop } from '../../src/augment/multicrop.js';
import { photoJpeg, prng } from '../../src/fixtures/images.js';

const viaSharp = async (bytes: Uint8Array) =>
  (await sharp(bytes).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true })).data;

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

function rms(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(sum / a.length);
}

describe('decodeRgb', () => {
  it("decodes plain JPEGs (colour, grey, progressive) nearly as closely to the encoded pixels as libjpeg's accurate IDCT", async () => {
    const photo = await photoJpeg(3, { width: 200, height: 150 });
    const pixels = await sharp(photo).raw().toBuffer();
    const raw = { raw: { width: 200, height: 150, channels: 3 as const } };
    const jpegs = [
      await sharp(pixels, raw).jpeg({ quality: 90 }).toBuffer(),
      await sharp(pixels, raw).jpeg({ quality: 75, progressive: true, chromaSubsampling: '4:4:4' }).toBuffer(),
      await sharp(pixels, raw).greyscale().jpeg({ quality: 90 }).toBuffer(),
    ];
    const grey = await sharp(pixels, raw).greyscale().raw().toBuffer(); // one channel
    const greyPixels = Uint8Array.from({ length: grey.length * 3 }, (_, i) => grey[Math.floor(i / 3)]!);
    for (const [i, jpeg] of jpegs.entries()) {
      expect(plainJpeg(jpeg)).toEqual({ width: 200, height: 150 });
      const out = await decodeRgb(jpeg);
      if ('error' in out) throw new Error(out.error);
      expect([out.width, out.height]).toEqual([200, 150]);
      const encoded = i === 2 ? greyPixels : pixels;
      const accurate = rms(await viaSharp(jpeg), encoded);
      // The fast integer IDCT adds its own error, ~1.3 levels rms in quadrature on these photos (2.5 vs 2.2
      // levels at q90 on 512 px ones); a wrong colour conversion or upsampling would add far more.
      const added = Math.sqrt(Math.max(0, rms(out.rgb, encoded) ** 2 - accurate ** 2));
      expect(added, `jpeg ${i}`).toBeLessThanOrEqual(1.6);
      expect(maxDiff(out.rgb, await viaSharp(jpeg)), `jpeg ${i}`).toBeLessThanOrEqual(16);
    }
  });

  it('decodes into a reused buffer: each result equals a fresh decode until the next one', async () => {
    const buffer = new DecodeBuffer();
    const photos = [await photoJpeg(6, { width: 64, height: 48 }), await photoJpeg(7, { width: 90, height: 30 })];
    const fresh = await Promise.all(photos.map((p) => decodeRgb(p)));
    const first = await decodeRgb(photos[0]!, buffer);
    expect(first).toEqual(fresh[0]);
    const second = await decodeRgb(photos[1]!, buffer);
    expect(second).toEqual(fresh[1]);
    if ('error' in first || 'error' in second) throw new Error('decode failed');
    expect(second.rgb.buffer).toBe(first.rgb.buffer); // the same memory, now holding the second image
  });

  it("decodes into the crop kernels' input memory, and crops from there equal crops of a fresh decode", async () => {
    const config = augmentConfig();
    const kernels = new DecodeBuffer(imageMemory);
    for (const [i, photo] of [
      await photoJpeg(13, { width: 300, height: 200 }),
      await photoJpeg(14, { width: 120, height: 260 }),
    ].entries()) {
      const fresh = await decodeRgb(photo);
      const inPlace = decodeJpeg(photo, kernels);
      if (!inPlace || 'error' in inPlace || 'error' in fresh) throw new Error('decode failed');
      expect(inPlace.rgb).toEqual(fresh.rgb);
      const at = { seed: 1, epoch: 0, record: i };
      const crops = multiCrop(inPlace.rgb, inPlace.width, inPlace.height, config, at);
      expect(crops).toEqual(multiCrop(fresh.rgb, fresh.width, fresh.height, config, at));
    }
  });

  it('sends CMYK JPEGs, PNG and WebP to sharp, with its colour management', async () => {
    const photo = await photoJpeg(4, { width: 120, height: 90 });
    const cmyk = await sharp(photo).toColourspace('cmyk').jpeg().toBuffer();
    const png = await sharp(photo).png().toBuffer();
    const webp = await sharp(photo).webp().toBuffer();
    for (const bytes of [cmyk, png, webp]) {
      expect(plainJpeg(bytes)).toBeNull();
      const out = await decodeRgb(bytes);
      if ('error' in out) throw new Error(out.error);
      expect(maxDiff(out.rgb, await viaSharp(bytes))).toBe(0);
    }
  });

  it('refuses truncated files, junk and oversized headers with a reason', async () => {
    const photo = await photoJpeg(5, { width: 160, height: 120 });
    expect(plainJpeg(photo.subarray(0, photo.length - 200))).toBeNull(); // no EOI: not the silent fast path
    expect(await decodeRgb(photo.subarray(0, photo.length - 200))).toEqual({ error: 'decode_error' });
    expect(await decodeRgb(photo.subarray(0, 300))).toEqual({ error: 'decode_error' });
    expect(await decodeRgb(new TextEncoder().encode('<html>not an image</html>'))).toEqual({ error: 'decode_error' });
    // frame headers claiming 100.02 MP and 400 MP: refused from the header, before any pixel is decoded
    const sof = photo.findIndex((v, i) => v === 0xff && photo[i + 1] === 0xc0);
    for (const side of [10001, 20000]) {
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
      const frame = plainJpeg(bytes);
      if (frame) expect(frame.width * frame.height).toBeGreaterThan(0);
      const out = await decodeRgb(bytes);
      if ('error' in out) expect(out.error).toBe('decode_error');
    }
  });

  it('gives an image of the declared size or a reason for photos with damaged bytes, never a crash', async () => {
    const photo = await photoJpeg(8, { width: 120, height: 80 });
    const rand = prng(11);
    for (let t = 0; t < 150; t++) {
      const bytes = Uint8Array.from(photo);
      for (let k = 0; k < 1 + Math.floor(rand() * 8); k++)
        bytes[2 + Math.floor(rand() * (bytes.length - 4))] = Math.floor(rand() * 256);
      const out = await decodeRgb(bytes, new DecodeBuffer());
      if ('error' in out) {
        expect(out.error).toBe('decode_error');
      } else {
        expect(out.rgb.length).toBe(out.width * out.height * 3);
      }
    }
  });
});
