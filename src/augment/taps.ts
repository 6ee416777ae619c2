/**
 * The weight tables of the crop kernels, computed in JS once per crop and handed to the WASM kernels
 * (./kernels.ts): PIL's antialiased bilinear resampling taps (a triangle filter widened by the shrink
 * factor, as torchvision's RandomResizedCrop gets from PIL) and the truncated Gaussian of the blur.
 */
export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/**
 * Resampling taps for one axis: output `o` reads `taps` inputs from `first[o]` with `weights[o*taps..]`.
 * Every output reads the same number of inputs (the widest non-zero window, shorter ones padded with zero
 * weights): the kernels' loops then run a fixed count, where a count changing from one pixel to the next
 * cost a mispredicted branch per pixel.
 */
export interface AxisTaps {
  first: Int32Array;
  weights: Float32Array;
  taps: number;
}

/** Taps mapping [start, start+length) onto `out` samples, weights normalised to sum to `gain`. */
export function axisTaps(start: number, length: number, out: number, gain = 1): AxisTaps {
  const scale = length / out;
  const support = Math.max(scale, 1); // the triangle's radius: 1 input pixel, widened when shrinking
  const weightAt = (o: number, k: number) => Math.max(0, 1 - Math.abs((k - (o + 0.5) * scale + 0.5) / support));
  const lo = new Int32Array(out), hi = new Int32Array(out);
  let taps = 1;
  for (let o = 0; o < out; o++) {
    const center = (o + 0.5) * scale;
    let a = Math.max(0, Math.floor(center - support + 0.5)), b = Math.min(length, Math.floor(center + support + 0.5));
    while (b - a > 1 && weightAt(o, a) === 0) a++;
    while (b - a > 1 && weightAt(o, b - 1) === 0) b--;
    lo[o] = a;
    hi[o] = b;
    taps = Math.max(taps, b - a);
  }
  const first = new Int32Array(out), weights = new Float32Array(out * taps);
  for (let o = 0; o < out; o++) {
    const from = Math.min(lo[o]!, length - taps); // keeps the window inside the axis; taps <= length
    let total = 0;
    for (let k = lo[o]!; k < hi[o]!; k++) total += weightAt(o, k);
    for (let k = lo[o]!; k < hi[o]!; k++) weights[o * taps + k - from] = (weightAt(o, k) * gain) / (total || 1);
    first[o] = start + from;
  }
  return { first, weights, taps };
}

/** The normalised 1-D Gaussian kernel, truncated at 3 sigma (at least radius 1). */
export function gaussianKernel(sigma: number): Float32Array {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const kernel = new Float32Array(radius * 2 + 1);
  let total = 0;
  for (let k = -radius; k <= radius; k++) total += kernel[k + radius] = Math.exp(-(k * k) / (2 * sigma * sigma));
  for (let k = 0; k < kernel.length; k++) kernel[k]! /= total;
  return kernel;
}
