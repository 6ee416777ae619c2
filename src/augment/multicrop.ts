/**
 * SwAV multi-crop for one decoded image: per crop, the random draws (a pure function of seed, epoch, record
 * and crop index) and their application. Draws and pixels are separate so tests can check the statistics of
 * the draws and compare the pixels against an independent reference for the same draws.
 */
import { prng, randInt, seedOf, shuffle, uniform } from '../rng.js';
import { cropList, type AugmentConfig } from './config.js';
import { cropImage, type CropArray, type CropDraw, type JitterOp } from './kernels.js';
import type { Box } from './taps.js';

export type { CropArray, CropDraw, JitterOp } from './kernels.js';

/** Where a record sits in the stream: all its crops' randomness derives from this. */
export interface DrawSeed {
  seed: number;
  epoch: number;
  record: number;
}

/** torchvision's RandomResizedCrop.get_params: 10 tries at (scale, log-uniform ratio), then a centre crop. */
export function sampleBox(
  rand: () => number,
  width: number,
  height: number,
  scale: readonly [number, number],
  ratio: readonly [number, number],
): Box {
  const area = width * height;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])] as const;
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * uniform(rand, scale[0], scale[1]);
    const aspect = Math.exp(uniform(rand, logRatio[0], logRatio[1]));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const y = randInt(rand, height - h + 1);
      const x = randInt(rand, width - w + 1);
      return { x, y, w, h };
    }
  }
  const inRatio = width / height;
  let w = width,
    h = height;
  if (inRatio < ratio[0]) h = Math.round(w / ratio[0]);
  else if (inRatio > ratio[1]) w = Math.round(h * ratio[1]);
  return { x: Math.floor((width - w) / 2), y: Math.floor((height - h) / 2), w, h };
}

/** Every random choice for one crop, in torchvision/SwAV order: crop, flip, jitter (p, order), grey, blur. */
export function drawCrop(config: AugmentConfig, at: DrawSeed, crop: number, width: number, height: number): CropDraw {
  const spec = cropList(config)[crop];
  if (!spec) throw new RangeError(`crop ${crop} out of range`);
  const rand = prng(seedOf(at.seed, at.epoch, at.record, crop));
  const box = sampleBox(rand, width, height, spec.scale, config.ratio);
  const flip = rand() < config.flipP;
  let jitter: CropDraw['jitter'] = null;
  if (rand() < config.jitterP) {
    const factors: Record<JitterOp, number> = {
      brightness: uniform(rand, Math.max(0, 1 - config.brightness), 1 + config.brightness),
      contrast: uniform(rand, Math.max(0, 1 - config.contrast), 1 + config.contrast),
      saturation: uniform(rand, Math.max(0, 1 - config.saturation), 1 + config.saturation),
      hue: uniform(rand, -config.hue, config.hue),
    };
    const order = shuffle<JitterOp>(['brightness', 'contrast', 'saturation', 'hue'], rand);
    jitter = order.map((op) => ({ op, factor: factors[op] }));
  }
  const grey = rand() < config.greyP;
  const blur = rand() < config.blurP ? uniform(rand, config.blurSigma[0], config.blurSigma[1]) : null;
  return { size: spec.size, box, flip, jitter, grey, blur };
}

/** Applies one crop's draws to an 8-bit RGB image: a normalised Float32 size x size x 3 (HWC) crop. */
export function applyCrop(rgb: Uint8Array, width: number, draw: CropDraw, config: AugmentConfig): Float32Array {
  return cropImage(rgb, width, [draw], config)[0]!;
}

/**
 * All crops of one image, in `cropList` order: normalised floats, or with Uint8Array `outputs` the bytes
 * before normalisation (see cropImage). Written into `outputs` when given.
 */
export function multiCrop<T extends CropArray = Float32Array>(
  rgb: Uint8Array,
  width: number,
  height: number,
  config: AugmentConfig,
  at: DrawSeed,
  outputs?: T[],
): T[] {
  return cropImage(
    rgb,
    width,
    cropList(config).map((_, crop) => drawCrop(config, at, crop, width, height)),
    config,
    outputs,
  );
}
