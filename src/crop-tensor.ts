/**
 * One crop of a batch, as the loader hands it to train: NHWC [batch, size, size, 3], either normalised floats
 * or the 8-bit RGB the augmentations produced before normalisation, which carries its mean and std so any
 * consumer can finish it. Bytes are a quarter of the floats to move: what a GPU trainer uploads each step
 * (it normalises on the device); the CPU backends turn them into floats with `cropFloats`.
 *
 * Bytes are what torchvision's PIL pipeline (SwAV, VISSL) computes too: its colour jitter, greyscale and blur
 * work on 8-bit images and ToTensor + Normalize come last. The float crops skip that rounding (at most half a
 * level, 0.5 / 255 / std: 0.0087 for ImageNet's smallest std) and keep resampling overshoot past 0..1.
 */

import { ConfigError, InvalidBatchError } from './errors.js';

/** Element type of a crop's data. */
export type CropDtype = 'float32' | 'uint8';

export const CROP_DTYPES: readonly CropDtype[] = ['float32', 'uint8'];

/**
 * `cropDtype` as given (options come from users' JavaScript too, so checked at run time): undefined is
 * 'float32'; anything but the two names is a ConfigError.
 */
export function checkCropDtype(value: unknown): CropDtype {
  if (value === undefined) return 'float32';
  if (CROP_DTYPES.includes(value as CropDtype)) return value as CropDtype;
  const got =
    typeof value === 'string' ? `'${value}'` : typeof value === 'object' && value ? 'an object' : String(value);
  throw new ConfigError(`cropDtype must be ${CROP_DTYPES.map((d) => `'${d}'`).join(' or ')}, got ${got}`);
}

/** Normalised floats: (x / 255 - mean) / std per channel. */
export interface FloatCrop {
  size: number;
  dtype?: 'float32';
  /** Float32 NHWC [batch, size, size, 3]; full batches live in a SharedArrayBuffer the workers wrote. */
  data: Float32Array;
}

/** Per channel (R, G, B), on the 0-1 scale: float = (byte / 255 - mean) / std. */
export interface CropNormalisation {
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

/** 8-bit RGB before normalisation, with the normalisation that finishes it. */
export interface ByteCrop extends CropNormalisation {
  size: number;
  dtype: 'uint8';
  /** Uint8 NHWC [batch, size, size, 3], 0-255; full batches live in a SharedArrayBuffer the workers wrote. */
  data: Uint8Array;
}

export type CropTensor = FloatCrop | ByteCrop;

/**
 * Checks that a crop is what its `dtype` says, as one from a BatchSource may not be: a FloatCrop's data a
 * Float32Array; a ByteCrop's a Uint8Array (or Uint8ClampedArray) with a mean of 3 finite numbers and a std of
 * 3 finite positive ones. Bytes without `dtype: 'uint8'` would otherwise be read as floats. Throws
 * InvalidBatchError naming crop `index`.
 */
export function checkCrop(crop: CropTensor, index: number): void {
  const { dtype, data } = crop as { dtype?: unknown; data?: unknown };
  const kind = (x: unknown) => (x === null || typeof x !== 'object' ? typeof x : x.constructor.name);
  const fail = (why: string) => {
    throw new InvalidBatchError(`crop ${index} of the batch: ${why}`);
  };
  if (dtype === 'uint8') {
    if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray))
      fail(`a ByteCrop's data must be a Uint8Array, got ${kind(data)}`);
    const norm = crop as CropNormalisation;
    if (!normalisable(norm))
      fail(
        `a ByteCrop's mean must be 3 finite numbers and its std 3 finite positive ones, got mean ${String(norm.mean)} and std ${String(norm.std)}`,
      );
  } else if (dtype === undefined || dtype === 'float32') {
    if (!(data instanceof Float32Array))
      fail(
        `a FloatCrop's data must be a Float32Array, got ${kind(data)}${data instanceof Uint8Array ? " (8-bit crops need dtype 'uint8', mean and std)" : ''}`,
      );
  } else fail(`dtype must be 'float32' or 'uint8', got ${JSON.stringify(dtype)}`);
}

/** Whether `v` is 3 finite numbers (R, G, B), each positive when asked: what a mean or std must be. */
export function isChannelTriple(v: unknown, positive: boolean): boolean {
  return Array.isArray(v) && v.length === 3 && v.every((x) => Number.isFinite(x) && (!positive || x > 0));
}

function normalisable(norm: CropNormalisation): boolean {
  return isChannelTriple(norm.mean, false) && isChannelTriple(norm.std, true);
}

/**
 * A ByteCrop's normalisation as one multiply-add per element: float = byte * scale[c] + shift[c], with
 * scale = 1 / (255 std) and shift = -mean / std computed in f64 and rounded to f32 once. For ImageNet's
 * constants it is within 3.4e-7 of (byte / 255 - mean) / std in f64 over 0-255 (that formula in f32 steps:
 * 3.7e-7), with one multiply-add where it took two divisions. A mean or std that is not 3 finite numbers (std
 * positive) is an InvalidBatchError.
 */
export function cropAffine(norm: CropNormalisation): { scale: number[]; shift: number[] } {
  if (!normalisable(norm))
    throw new InvalidBatchError(
      `a ByteCrop's mean must be 3 finite numbers and its std 3 finite positive ones, got mean ${String(norm.mean)} and std ${String(norm.std)}`,
    );
  return {
    scale: norm.std.map((s) => Math.fround(1 / (255 * s))),
    shift: norm.mean.map((m, c) => Math.fround(-m / norm.std[c]!)),
  };
}

/**
 * A crop's normalised floats: the data itself for a FloatCrop, a new array for a ByteCrop (byte * scale +
 * shift in f32 steps, cropAffine's constants: what the WebGPU decode kernel computes). Checks the crop first
 * (checkCrop; `index` names it in the error).
 */
export function cropFloats(crop: CropTensor, index = 0): Float32Array {
  checkCrop(crop, index);
  if (crop.dtype !== 'uint8') return crop.data;
  const { scale, shift } = cropAffine(crop);
  const f = Math.fround;
  const out = new Float32Array(crop.data.length);
  crop.data.forEach((b, i) => (out[i] = f(f(b * scale[i % 3]!) + shift[i % 3]!)));
  return out;
}
