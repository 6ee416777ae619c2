/**
 * cropFloats, the CPU side of 8-bit crops: a float crop is returned as it is; a byte crop becomes
 * (byte / 255 - mean) / std within the bound cropAffine's docstring states, for every byte value and channel;
 * a normalisation that would make infinities or NaNs, and data of another type than the crop's dtype says,
 * are refused by name.
 */
import { describe, expect, it } from 'vitest';
import { checkCrop, cropAffine, cropFloats, type ByteCrop, type CropTensor } from '../src/crop-tensor.js';
import { InvalidBatchError } from '../src/errors.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../src/crops.js';

/** Every byte value in every channel: 256 pixels whose R, G and B are the pixel's index. */
const everyByte = (): Uint8Array => Uint8Array.from({ length: 256 * 3 }, (_, i) => Math.floor(i / 3));

const byteCrop = (norm: Pick<ByteCrop, 'mean' | 'std'>): ByteCrop => ({
  size: 16,
  dtype: 'uint8',
  data: everyByte(),
  ...norm,
});

describe('cropFloats', () => {
  it('returns a float crop itself', () => {
    const data = new Float32Array([1, 2, 3]);
    expect(cropFloats({ size: 1, data })).toBe(data);
  });

  it("is within 3.4e-7 of (byte / 255 - mean) / std for ImageNet's constants, every byte and channel", () => {
    const got = cropFloats(byteCrop({ mean: IMAGENET_MEAN, std: IMAGENET_STD }));
    let worst = 0;
    got.forEach((v, i) => {
      const c = i % 3;
      worst = Math.max(worst, Math.abs(v - (Math.floor(i / 3) / 255 - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]!));
    });
    expect(worst).toBeLessThan(3.4e-7);
    expect(worst).toBeGreaterThan(0); // f32 arithmetic, not the f64 reference itself
  });

  it.each([
    ['a zero std', { mean: [0, 0, 0], std: [1, 0, 1] }],
    ['a negative std', { mean: [0, 0, 0], std: [1, 1, -0.5] }],
    ['a NaN std', { mean: [0, 0, 0], std: [NaN, 1, 1] }],
    ['an infinite std', { mean: [0, 0, 0], std: [1, Infinity, 1] }],
    ['a NaN mean', { mean: [0, NaN, 0], std: [1, 1, 1] }],
    ['two channels', { mean: [0, 0], std: [1, 1] }],
  ])('refuses %s (InvalidBatchError), in cropFloats and in the constants the GPU kernel takes', (_name, norm) => {
    const crop = byteCrop(norm as unknown as ByteCrop);
    expect(() => cropFloats(crop, 2)).toThrow(InvalidBatchError);
    expect(() => cropFloats(crop, 2)).toThrow(
      /^crop 2 of the batch: a ByteCrop's mean must be 3 finite numbers and its std 3 finite positive ones, got mean /,
    );
    expect(() => cropAffine(crop)).toThrow(/^a ByteCrop's mean must be 3 finite numbers/);
  });

  // Bytes read as floats would train on garbage without a word: what `dtype` says must match the data.
  it.each([
    [
      'bytes without dtype',
      { data: new Uint8Array(12) },
      /a FloatCrop's data must be a Float32Array, got Uint8Array \(8-bit crops need dtype 'uint8', mean and std\)$/,
    ],
    ['a misspelt dtype', { dtype: 'u8', data: new Uint8Array(12) }, /dtype must be 'float32' or 'uint8', got "u8"$/],
    [
      '16-bit data as uint8',
      { dtype: 'uint8', data: new Uint16Array(12) },
      /a ByteCrop's data must be a Uint8Array, got Uint16Array$/,
    ],
    ['signed bytes as uint8', { dtype: 'uint8', data: new Int8Array(12) }, /got Int8Array$/],
    ['an array of numbers', { data: [1, 2, 3] }, /a FloatCrop's data must be a Float32Array, got Array$/],
    ['no data', { dtype: 'uint8' }, /a ByteCrop's data must be a Uint8Array, got undefined$/],
  ])('refuses %s', (_name, crop, message) => {
    const c = { size: 2, mean: IMAGENET_MEAN, std: IMAGENET_STD, ...crop } as unknown as CropTensor;
    expect(() => checkCrop(c, 1)).toThrow(InvalidBatchError);
    expect(() => cropFloats(c, 1)).toThrow(message);
  });

  it('takes a Node Buffer and a Uint8ClampedArray as bytes', () => {
    for (const data of [Buffer.from([0, 255, 7]), new Uint8ClampedArray([0, 255, 7])]) {
      const c = { size: 1, dtype: 'uint8', data, mean: IMAGENET_MEAN, std: IMAGENET_STD } as ByteCrop;
      expect(cropFloats(c)[1]).toBeCloseTo((1 - IMAGENET_MEAN[1]) / IMAGENET_STD[1], 6);
    }
  });
});
