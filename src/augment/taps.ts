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

/** Resampling taps for one axis: output `o` reads `count[o]` inputs from `first[o]` with `weights[o*taps..]`. */
export interface AxisTaps {
  first: Int32Array;
  count: Int32Array;
  weights: Float32Array;
  taps: number;
}

/** Taps mapping [start, start+length) onto `out` samples, weights normalised to sum to `gain`. */
export function axisTaps(start: number, length: number, out: number, gain = 1): AxisTaps {
  const scale = length / out;
  const support = Math.max(scale, 1); // the triangle's radius: 1 input pixel, widened when shrinking
  const taps = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(out);
  const count = new Int32Array(out);
  const weights = new Float32Array(out * taps);
  for (let o = 0; o < out; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - support + 0.5));
    const hi = Math.min(length, Math.floor(center + support + 0.5));
    let total = 0;
    for (let k = lo; k < hi; k++) total += weights[o * taps + k - lo] = Math.max(0, 1 - Math.abs((k - center + 0.5) / support));
    for (let k = 0; k < hi - lo; k++) weights[o * taps + k]! *= gain / (total || 1);
    first[o] = start + lo;
    count[o] = hi - lo;
  }
  return { first, count, weights, taps };
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
