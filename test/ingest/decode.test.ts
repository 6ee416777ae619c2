// Decode memory: estimates from the header, the byte semaphore, and refusal of images too big to decode.
import { constants, crc32, deflateRawSync, inflateSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeAdmission, decodeImage } from '../../src/ingest/decode.js';
import { ByteSemaphore, estimateDecodeBytes, jpegShrinkOnLoad } from '../../src/ingest/memory-budget.js';
import { prng } from '../../src/rng.js';

const MiB = 2 ** 20;

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** Bytes of an Adam7-interlaced image's filtered scanlines: seven passes, each row a filter byte + pixels. */
function adam7Bytes(width: number, height: number, bytesPerPixel: number): number {
  const passes = [
    [0, 0, 8, 8],
    [4, 0, 8, 8],
    [0, 4, 4, 8],
    [2, 0, 4, 4],
    [0, 2, 2, 4],
    [1, 0, 2, 2],
    [0, 1, 1, 2],
  ];
  let total = 0;
  for (const [x0, y0, dx, dy] of passes as Array<[number, number, number, number]>) {
    const w = Math.ceil((width - x0) / dx);
    const h = Math.ceil((height - y0) / dy);
    if (w > 0 && h > 0) total += h * (1 + w * bytesPerPixel);
  }
  return total;
}

/**
 * A valid, all-black, interlaced 16-bit RGB PNG (sharp would hold the whole 600 MB image to write one). The
 * zlib stream is one block of zeros, deflated once and repeated: each copy ends in a full flush, so it does
 * not refer back to the one before. Adler-32 of n zero bytes is a = 1, b = n mod 65521. 10000x10000: 0.6 MB.
 */
function interlacedPng16(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([16, 2, 0, 0, 1], 8); // depth 16, truecolour, deflate, adaptive filtering, Adam7
  const total = adam7Bytes(width, height, 6);
  const block = Buffer.alloc(4 * MiB);
  const copy = deflateRawSync(block, { level: 9, finishFlush: constants.Z_FULL_FLUSH });
  const copies = Math.floor(total / block.length);
  const tail = deflateRawSync(block.subarray(0, total - copies * block.length), { level: 9 });
  const adler = Buffer.alloc(4);
  adler.writeUInt32BE(((total % 65521) * 65536 + 1) >>> 0, 0);
  const idat = Buffer.concat([Buffer.from([0x78, 0xda]), ...Array<Buffer>(copies).fill(copy), tail, adler]);
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}

it('makes valid interlaced PNGs (checked at a size that is cheap to decode)', async () => {
  const png = interlacedPng16(300, 200);
  const idat = png.subarray(8 + 25 + 8, png.length - 12 - 4);
  expect(inflateSync(idat).length).toBe(adam7Bytes(300, 200, 6)); // checks the Adler-32 too
  const { info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  expect(info).toMatchObject({ width: 300, height: 200 });
});

describe('ByteSemaphore', () => {
  it('never holds more than its capacity, and admits everything in the end', async () => {
    const semaphore = new ByteSemaphore(100);
    const rand = prng(7);
    let over = 0;
    let done = 0;
    await Promise.all(
      Array.from({ length: 200 }, async () => {
        const bytes = 1 + Math.floor(rand() * 100);
        await semaphore.use(bytes, async () => {
          if (semaphore.inUse > semaphore.capacity) over++;
          await sleep(Math.floor(rand() * 3));
          done++;
        });
      }),
    );
    expect(over).toBe(0);
    expect(done).toBe(200);
    expect(semaphore.peak).toBeLessThanOrEqual(100);
    expect(semaphore.peak).toBeGreaterThan(50); // it did run requests side by side
    expect(semaphore.inUse).toBe(0);
  });

  it('is first come, first served: a large request is not starved by small ones', async () => {
    const semaphore = new ByteSemaphore(10);
    const order: string[] = [];
    const first = await semaphore.acquire(6);
    const big = semaphore.acquire(10).then((release) => {
      order.push('big');
      release();
    });
    const small = semaphore.acquire(1).then((release) => {
      order.push('small');
      release();
    });
    await sleep(5);
    expect(order).toEqual([]); // 1 byte would fit, but it queued behind the big request
    first();
    first(); // a second release is a no-op
    await Promise.all([big, small]);
    expect(order).toEqual(['big', 'small']);
    expect(semaphore.inUse).toBe(0);
  });

  it('refuses what could never fit and bad capacities', async () => {
    await expect(new ByteSemaphore(10).acquire(11)).rejects.toThrow(/cannot admit 11 bytes/);
    expect(() => new ByteSemaphore(0)).toThrow(/positive integer/);
  });
});

describe('estimateDecodeBytes', () => {
  const header = { width: 10000, height: 10000, channels: 3 };
  it('charges a whole-image decode for interlaced PNG and a coefficient buffer for progressive JPEG', () => {
    const plain = estimateDecodeBytes({ ...header, format: 'png', depth: 'ushort' }, 19.5, 512 * 512);
    const interlaced = estimateDecodeBytes(
      { ...header, format: 'png', depth: 'ushort', isProgressive: true },
      19.5,
      512 * 512,
    );
    expect(interlaced).toBeGreaterThanOrEqual(10000 * 10000 * 3 * 2); // the whole 16-bit image
    expect(plain).toBeLessThan(interlaced / 3);
    const baseline = estimateDecodeBytes({ ...header, format: 'jpeg', chromaSubsampling: '4:2:0' }, 19.5, 512 * 512);
    const progressive = estimateDecodeBytes(
      { ...header, format: 'jpeg', chromaSubsampling: '4:2:0', isProgressive: true },
      19.5,
      512 * 512,
    );
    expect(baseline).toBeLessThan(32 * MiB); // decoded at 1/8 scale, streamed
    expect(progressive).toBeGreaterThanOrEqual(10000 * 10000 * 2 * 1.5); // Y + two quarter-size chroma planes
    const cmyk = estimateDecodeBytes(
      { ...header, channels: 4, format: 'jpeg', chromaSubsampling: '4:4:4:4', isProgressive: true },
      1,
      1e8,
    );
    expect(cmyk).toBeGreaterThanOrEqual(10000 * 10000 * 2 * 4);
  });

  it('follows sharp in choosing the JPEG shrink-on-load, never above it', () => {
    expect([1, 1.9, 2, 3.9, 4, 8, 15.9, 16, 100].map(jpegShrinkOnLoad)).toEqual([1, 1, 1, 1, 2, 4, 4, 8, 8]);
  });
});

describe('decodeImage within a memory budget', () => {
  it('refuses an interlaced 16-bit 10000x10000 PNG from its header, without decoding it', async () => {
    const png = interlacedPng16(10000, 10000);
    expect(png.length).toBeLessThan(2 * MiB);
    const meta = await sharp(png, { limitInputPixels: false }).metadata();
    expect(meta).toMatchObject({ width: 10000, height: 10000, depth: 'ushort', isProgressive: true });
    const t0 = performance.now();
    const outcome = await decodeImage(png);
    expect(outcome).toEqual({ ok: false, reason: 'decode_memory' });
    expect(performance.now() - t0).toBeLessThan(1000); // a decode of it takes seconds and 700 MB
    expect(decodeAdmission().peak).toBe(0);
  }, 30_000);

  it('still decodes a normal image, interlaced or not, and holds nothing afterwards', async () => {
    const pixels = Buffer.alloc(300 * 200 * 3, 90);
    for (const progressive of [false, true]) {
      const png = await sharp(pixels, { raw: { width: 300, height: 200, channels: 3 } })
        .png({ progressive })
        .toBuffer();
      const outcome = await decodeImage(png, { memoryBudget: 64 * MiB });
      expect(outcome).toMatchObject({ ok: true, width: 300, height: 200 });
    }
    // libvips' operation cache would keep each decoder's memory alive after the decode (see decode.ts)
    expect(sharp.cache()).toMatchObject({ items: { current: 0, max: 0 } });
    const admission = decodeAdmission(64 * MiB);
    expect(admission.peak).toBeGreaterThan(0);
    expect(admission.inUse).toBe(0);
  });

  it('decodes eight large images at once without the admitted bytes passing the budget', async () => {
    const side = 1200;
    const rand = prng(3);
    const pixels = Buffer.alloc(side * side * 3, 128);
    for (let i = 0; i < 4000; i++) pixels[Math.floor(rand() * pixels.length)] = 0;
    const png = await sharp(pixels, { raw: { width: side, height: side, channels: 3 } })
      .png({ progressive: true })
      .toBuffer();
    const cost = estimateDecodeBytes(
      { format: 'png', width: side, height: side, channels: 3, isProgressive: true },
      side / 512,
      512 * 512,
    );
    const budget = Math.floor(1.5 * cost); // one decode at a time
    const outcomes = await Promise.all(Array.from({ length: 8 }, () => decodeImage(png, { memoryBudget: budget })));
    expect(outcomes.every((o) => o.ok)).toBe(true);
    const admission = decodeAdmission(budget);
    expect(admission.peak).toBe(cost);
    expect(admission.inUse).toBe(0);
  }, 60_000);

  it('refuses when one image alone is over a small budget', async () => {
    const png = await sharp(Buffer.alloc(400 * 400 * 3), { raw: { width: 400, height: 400, channels: 3 } })
      .png()
      .toBuffer();
    expect(await decodeImage(png, { memoryBudget: 1 * MiB })).toEqual({ ok: false, reason: 'decode_memory' });
  });
});
