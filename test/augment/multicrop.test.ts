import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { augmentConfig, cropList, parseCrops, type AugmentConfig } from '../../src/augment/config.js';
import { cropImage } from '../../src/augment/kernels.js';
import { applyCrop, drawCrop, sampleBox, type CropDraw } from '../../src/augment/multicrop.js';
import { ConfigError } from '../../src/errors.js';
import { photoJpeg } from '../../src/fixtures/images.js';
import { prng } from '../../src/rng.js';
import { expectBytesMatchFloats } from './byte-crops.js';

const config = augmentConfig();

describe('crop config', () => {
  it('parses SwAV crop groups and refuses malformed ones', () => {
    expect(parseCrops('2x224@0.14-1,6x96@0.05-0.14')).toEqual([
      { count: 2, size: 224, scale: [0.14, 1] },
      { count: 6, size: 96, scale: [0.05, 0.14] },
    ]);
    expect(cropList(config).map((c) => c.size)).toEqual([224, 224, 96, 96, 96, 96, 96, 96]);
    for (const bad of ['2x224@0.5-0.1', 'x224', '0x96', '2x224@0-1', '2x99999'])
      expect(() => parseCrops(bad)).toThrow(ConfigError);
    expect(() => augmentConfig({ flipP: 1.5 })).toThrow(/flipP/);
  });
});

describe('random draws', () => {
  const n = 4000;
  const draws = (crop: number, w = 400, h = 300) =>
    Array.from({ length: n }, (_, record) => drawCrop(config, { seed: 9, epoch: 1, record }, crop, w, h));

  it('are a pure function of (seed, epoch, record, crop)', () => {
    const at = { seed: 3, epoch: 2, record: 17 };
    expect(drawCrop(config, at, 1, 400, 300)).toEqual(drawCrop(config, at, 1, 400, 300));
    expect(drawCrop(config, at, 1, 400, 300)).not.toEqual(drawCrop(config, at, 0, 400, 300));
    expect(drawCrop(config, at, 1, 400, 300)).not.toEqual(drawCrop(config, { ...at, epoch: 3 }, 1, 400, 300));
  });

  it('crop areas and aspect ratios follow the configured ranges', () => {
    for (const [crop, [lo, hi]] of [
      [0, [0.14, 1]],
      [2, [0.05, 0.14]],
    ] as const) {
      const boxes = draws(crop).map((d) => d.box);
      const areas = boxes.map((b) => (b.w * b.h) / (400 * 300));
      const logRatios = boxes.map((b) => Math.log(b.w / b.h));
      expect(Math.min(...areas)).toBeGreaterThan(lo * 0.95);
      expect(Math.max(...areas)).toBeLessThan(hi * 1.05);
      expect(Math.max(...logRatios.map(Math.abs))).toBeLessThan(Math.log(4 / 3) + 0.03);
      expect(Math.min(...areas)).toBeLessThan(lo + (hi - lo) * 0.02);
      expect(Math.max(...areas)).toBeGreaterThan(hi - (hi - lo) * 0.1);
      // Small crops always fit, so their area is uniform; large ones that do not fit are redrawn (torchvision's
      // 10 tries), which skews the big group towards smaller areas, so only the small group's means are checked
      // (on this landscape image tall large crops fail more often, shifting the big group's mean ratio too).
      const meanArea = areas.reduce((a, b) => a + b, 0) / n;
      if (crop === 2) expect(Math.abs(meanArea - (lo + hi) / 2)).toBeLessThan((hi - lo) * 0.05);
      if (crop === 2) expect(Math.abs(logRatios.reduce((a, b) => a + b, 0) / n)).toBeLessThan(0.02);
      for (const b of boxes) expect(b.x >= 0 && b.y >= 0 && b.x + b.w <= 400 && b.y + b.h <= 300).toBe(true);
    }
  });

  it('falls back to a centre crop like torchvision when nothing fits', () => {
    expect(sampleBox(() => 0.999, 100, 10, [0.9, 1], [3 / 4, 4 / 3])).toEqual({ x: 43, y: 0, w: 13, h: 10 });
  });

  it('flip, jitter, greyscale and blur happen at their probabilities', () => {
    const d = draws(3);
    const rate = (f: (c: CropDraw) => boolean) => d.filter(f).length / n;
    const tol = 3 * Math.sqrt(0.25 / n); // three standard errors at p = 0.5
    expect(Math.abs(rate((c) => c.flip) - 0.5)).toBeLessThan(tol);
    expect(Math.abs(rate((c) => c.jitter !== null) - 0.8)).toBeLessThan(tol);
    expect(Math.abs(rate((c) => c.grey) - 0.2)).toBeLessThan(tol);
    expect(Math.abs(rate((c) => c.blur !== null) - 0.5)).toBeLessThan(tol);
    const sigmas = d.flatMap((c) => (c.blur === null ? [] : [c.blur]));
    expect(Math.min(...sigmas)).toBeGreaterThanOrEqual(0.1);
    expect(Math.max(...sigmas)).toBeLessThanOrEqual(2);
    const jitters = d.flatMap((c) => c.jitter ?? []);
    for (const { op, factor } of jitters) {
      if (op === 'hue') expect(Math.abs(factor)).toBeLessThanOrEqual(0.2);
      else expect(factor >= 0.2 && factor <= 1.8).toBe(true);
    }
    // every order of the four jitter ops occurs (random order, as torchvision's ColorJitter)
    expect(new Set(d.flatMap((c) => (c.jitter ? [c.jitter.map((j) => j.op).join()] : []))).size).toBe(24);
  });
});

/**
 * An independent reference for one crop: direct 2-D resampling weights, HSV via the textbook formulas, a 2-D
 * Gaussian convolution, all in float64 on plain arrays, written without the code under test.
 */
function reference(rgb: Uint8Array, width: number, draw: CropDraw, c: AugmentConfig): Float64Array {
  const { box, size } = draw;
  const tri = (x: number) => Math.max(0, 1 - Math.abs(x));
  const weights1d = (len: number) => {
    const s = len / size,
      fs = Math.max(s, 1);
    return Array.from({ length: size }, (_, o) => {
      const centre = (o + 0.5) * s;
      const w = Array.from({ length: len }, (_, k) => tri((k + 0.5 - centre) / fs));
      const total = w.reduce((a, b) => a + b, 0);
      return w.map((v) => v / total);
    });
  };
  const wx = weights1d(box.w),
    wy = weights1d(box.h);
  let img = new Float64Array(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++)
      for (let ch = 0; ch < 3; ch++) {
        let v = 0;
        for (let j = 0; j < box.h; j++) {
          if (wy[y]![j] === 0) continue;
          for (let i = 0; i < box.w; i++)
            v += wy[y]![j]! * wx[x]![i]! * rgb[((box.y + j) * width + box.x + i) * 3 + ch]!;
        }
        img[(y * size + (draw.flip ? size - 1 - x : x)) * 3 + ch] = v / 255;
      }
  const clip = (v: number) => Math.min(1, Math.max(0, v));
  const luma = (p: number) => 0.299 * img[p]! + 0.587 * img[p + 1]! + 0.114 * img[p + 2]!;
  for (const { op, factor } of draw.jitter ?? []) {
    if (op === 'brightness') img = img.map((v) => clip(v * factor));
    if (op === 'contrast') {
      let mean = 0;
      for (let p = 0; p < img.length; p += 3) mean += luma(p) / (size * size);
      img = img.map((v) => clip(factor * v + (1 - factor) * mean));
    }
    if (op === 'saturation')
      for (let p = 0; p < img.length; p += 3) {
        const g = luma(p);
        for (let k = 0; k < 3; k++) img[p + k] = clip(factor * img[p + k]! + (1 - factor) * g);
      }
    if (op === 'hue')
      for (let p = 0; p < img.length; p += 3) {
        const [r, g, b] = [img[p]!, img[p + 1]!, img[p + 2]!];
        const v = Math.max(r, g, b),
          d = v - Math.min(r, g, b);
        if (d === 0) continue;
        const s = d / v;
        let h = v === r ? (g - b) / d / 6 : v === g ? (2 + (b - r) / d) / 6 : (4 + (r - g) / d) / 6;
        h = (((h + factor) % 1) + 1) % 1;
        const f = (n: number) => {
          const k = (n + h * 6) % 6;
          return v - v * s * Math.max(0, Math.min(k, 4 - k, 1));
        };
        [img[p], img[p + 1], img[p + 2]] = [f(5), f(3), f(1)];
      }
  }
  if (draw.grey)
    for (let p = 0; p < img.length; p += 3) {
      const g = luma(p);
      img[p] = img[p + 1] = img[p + 2] = g;
    }
  if (draw.blur !== null) {
    const sigma = draw.blur,
      r = Math.max(1, Math.ceil(3 * sigma));
    const src = img.slice();
    const at = (v: number) => Math.min(size - 1, Math.max(0, v));
    let norm = 0;
    for (let j = -r; j <= r; j++)
      for (let i = -r; i <= r; i++) norm += Math.exp(-(i * i + j * j) / (2 * sigma * sigma));
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++)
        for (let ch = 0; ch < 3; ch++) {
          let v = 0;
          for (let j = -r; j <= r; j++)
            for (let i = -r; i <= r; i++) {
              v += Math.exp(-(i * i + j * j) / (2 * sigma * sigma)) * src[(at(y + j) * size + at(x + i)) * 3 + ch]!;
            }
          img[(y * size + x) * 3 + ch] = v / norm;
        }
  }
  return img.map((v, p) => (v - c.mean[p % 3]!) / c.std[p % 3]!);
}

describe('crop pixels', () => {
  it('match an independent float64 reference for the same draws', async () => {
    const jpeg = await photoJpeg(11, { width: 160, height: 120 });
    const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
    // 23 x 23: a pixel count that is not a multiple of 4 (the kernels colour four pixels at a time)
    const small = augmentConfig({ crops: parseCrops('1x48@0.3-1,1x23@0.05-0.2') });
    let checked = 0;
    const rand = prng(4);
    for (let record = 0; record < 24; record++) {
      for (const crop of [0, 1]) {
        const draw = drawCrop(small, { seed: 1, epoch: 0, record }, crop, info.width, info.height);
        if (record < 4) {
          draw.jitter = [
            { op: 'hue', factor: rand() - 0.5 },
            { op: 'contrast', factor: 1.5 },
          ];
          draw.blur = 1.3;
        }
        if (record >= 4 && record < 8)
          draw.jitter = [
            { op: 'saturation', factor: 1.7 },
            { op: 'contrast', factor: 0.4 + rand() },
            { op: 'brightness', factor: 1.3 },
          ];
        const ours = applyCrop(data, info.width, draw, small);
        const ref = reference(data, info.width, draw, small);
        let worst = 0;
        for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - ref[i]!));
        expect(worst, JSON.stringify(draw)).toBeLessThan(2e-3);
        checked++;
      }
    }
    expect(checked).toBe(48);
  });

  it('match the reference for boxes of one size at other places (resampling tables reused from a cache)', async () => {
    const jpeg = await photoJpeg(12, { width: 150, height: 110 });
    const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
    const config = augmentConfig({ crops: parseCrops('1x40@0.2-1') });
    const draw = {
      ...drawCrop(config, { seed: 5, epoch: 0, record: 0 }, 0, info.width, info.height),
      jitter: null,
      blur: null,
    };
    for (const [x, y] of [
      [0, 0],
      [150 - 61, 110 - 47],
      [13, 29],
    ] as const) {
      const moved = { ...draw, box: { x, y, w: 61, h: 47 } };
      const ours = applyCrop(data, info.width, moved, config),
        ref = reference(data, info.width, moved, config);
      let worst = 0;
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - ref[i]!));
      expect(worst, `box at ${x}, ${y}`).toBeLessThan(2e-3);
    }
  });

  it('match the reference on tiny and thin images (windows wider than the image, every tap count)', async () => {
    const config = augmentConfig({ crops: parseCrops('1x16@0.2-1,1x9@0.05-1') });
    const rand = prng(9);
    for (const [width, height] of [
      [1, 1],
      [1, 9],
      [7, 1],
      [2, 3],
      [3, 40],
      [37, 2],
      [9, 9],
      [90, 11],
    ] as const) {
      const rgb = Uint8Array.from({ length: width * height * 3 }, () => Math.floor(rand() * 256));
      for (let record = 0; record < 6; record++) {
        for (const crop of [0, 1]) {
          const draw = drawCrop(config, { seed: 2, epoch: 0, record }, crop, width, height);
          if (record % 2)
            draw.jitter = [
              { op: 'hue', factor: 0.3 },
              { op: 'contrast', factor: 1.4 },
            ];
          const ours = applyCrop(rgb, width, draw, config),
            ref = reference(rgb, width, draw, config);
          let worst = 0;
          for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - ref[i]!));
          expect(worst, `${width}x${height} ${JSON.stringify(draw)}`).toBeLessThan(2e-3);
        }
      }
    }
  });
});

describe('8-bit crops', () => {
  // 97 x 97 x 3 and 7 x 7 x 3 values are 3 past a multiple of 16: the conversion's scalar tail runs.
  const bytesConfig = augmentConfig({ crops: parseCrops('1x97@0.2-1,1x8@0.05-0.3,1x32@0.1-1') });
  const rand = prng(5);
  const [W, H] = [150, 110];
  const rgb = Uint8Array.from({ length: W * H * 3 }, () => Math.floor(rand() * 256));
  const drawsOf = (record: number) => {
    const draws = [0, 1, 2].map((c) => drawCrop(bytesConfig, { seed: 1, epoch: 0, record }, c, W, H));
    draws[1]!.size = 7; // under the configs' 8 px minimum, as only the kernels can be asked
    if (record % 3 === 0) for (const d of draws) d.blur = 1.7;
    if (record % 4 === 1)
      draws[0]!.jitter = [
        { op: 'contrast', factor: 1.8 },
        { op: 'hue', factor: 0.3 },
      ];
    if (record % 5 === 2) draws[2]!.grey = true;
    return draws;
  };
  const bytesFor = (draws: CropDraw[]) => draws.map((d) => new Uint8Array(d.size * d.size * 3));

  it('are the float crops before normalisation, rounded half up, for the same draws', () => {
    let values = 0,
      near = 0;
    for (let record = 0; record < 40; record++) {
      const draws = drawsOf(record);
      const floats = cropImage(rgb, W, draws, bytesConfig);
      const bytes = cropImage(rgb, W, draws, bytesConfig, bytesFor(draws));
      floats.forEach((f, c) => {
        near += expectBytesMatchFloats(f, bytes[c]!, bytesConfig, `record ${record} crop ${c}`);
        values += f.length;
      });
    }
    expect(values).toBe(40 * (97 * 97 + 7 * 7 + 32 * 32) * 3);
    expect(near).toBeLessThan(values / 1000); // the boundary exemption covers a few values, not the test
  });

  it('of a box its own size are the pixels, and clamp where jitter passes white', () => {
    // One tap of weight 1 a pixel: the bytes are the image's (any slip of channel or offset shows), and
    // brightness 1.5 takes every value from 170 past 255, where the bytes clamp.
    const image = Uint8Array.from({ length: 12 * 12 * 3 }, (_, i) => (i * 7) % 256);
    const plain: CropDraw = {
      size: 11,
      box: { x: 1, y: 1, w: 11, h: 11 },
      flip: false,
      jitter: null,
      grey: false,
      blur: null,
    };
    const lit: CropDraw = { ...plain, jitter: [{ op: 'brightness', factor: 1.5 }] };
    const [same, brighter] = cropImage(image, 12, [plain, lit], bytesConfig, bytesFor([plain, lit]));
    const want = Array.from({ length: 11 * 11 * 3 }, (_, i) => {
      const [y, x, c] = [Math.floor(i / 33), Math.floor((i % 33) / 3), i % 3];
      return image[((1 + y) * 12 + 1 + x) * 3 + c]!;
    });
    expect(Array.from(same!)).toEqual(want);
    // Odd values land on a .5 (x * 1.5) that f32 may put either side of: the even ones are exact.
    const even = (v: number[]) => v.filter((_, i) => want[i]! % 2 === 0);
    expect(even(Array.from(brighter!))).toEqual(even(want.map((v) => Math.min(255, v * 1.5))));
    expect(want.filter((v) => v >= 170).length).toBeGreaterThan(50);
  });

  it('leave the float crops as they were, and refuse mixed or wrong-sized outputs', () => {
    const draws = drawsOf(3);
    const before = cropImage(rgb, W, draws, bytesConfig);
    cropImage(rgb, W, draws, bytesConfig, bytesFor(draws));
    expect(cropImage(rgb, W, draws, bytesConfig)).toEqual(before);
    const into = bytesFor(draws);
    expect(cropImage(rgb, W, draws, bytesConfig, into)[2]).toBe(into[2]); // written in place
    const mixed = [new Uint8Array(97 * 97 * 3), new Float32Array(7 * 7 * 3)];
    expect(() => cropImage(rgb, W, draws, bytesConfig, mixed)).toThrow(TypeError);
    expect(() => cropImage(rgb, W, draws, bytesConfig, [new Uint8Array(5)])).toThrow(
      /crop 0 needs 28227 bytes, its output has 5/,
    );
  });
});
