/**
 * Pixel transforms on interleaved RGB typed arrays, the hot loop of the augment workers. Crops are resized
 * once from the decoded image, then every photometric step runs on the small float crop in [0, 1], as
 * torchvision does on tensors. The formulas follow torchvision's `functional_tensor` (blend, rgb<->hsv,
 * ITU-R 601 grey) and PIL's antialiased bilinear resampling (a triangle filter widened by the shrink factor).
 */

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** Resampling taps for one axis: output `o` reads `count` inputs from `first[o]` with `weights[o*taps..]`. */
interface AxisTaps {
  first: Int32Array;
  count: Int32Array;
  weights: Float32Array;
  taps: number;
}

/** PIL-style antialiased bilinear taps mapping [start, start+length) onto `out` samples. */
function axisTaps(start: number, length: number, out: number): AxisTaps {
  const scale = length / out;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // the triangle filter's radius is 1 input pixel, widened when shrinking
  const taps = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(out);
  const count = new Int32Array(out);
  const weights = new Float32Array(out * taps);
  for (let o = 0; o < out; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - support + 0.5));
    const hi = Math.min(length, Math.floor(center + support + 0.5));
    let total = 0;
    for (let k = lo; k < hi; k++) {
      const w = Math.max(0, 1 - Math.abs((k - center + 0.5) / filterScale));
      weights[o * taps + k - lo] = w;
      total += w;
    }
    for (let k = 0; k < hi - lo; k++) weights[o * taps + k]! /= total || 1;
    first[o] = start + lo;
    count[o] = hi - lo;
  }
  return { first, count, weights, taps };
}

/**
 * Crops `box` out of an 8-bit RGB image and resizes it to `size` x `size` floats in [0, 1], mirrored
 * horizontally when `flip`. Two separable passes: rows first (into `size` columns), then columns.
 */
export function resizedCrop(src: Uint8Array, srcWidth: number, box: Box, size: number, flip: boolean): Float32Array {
  const xs = axisTaps(box.x, box.w, size);
  const ys = axisTaps(box.y, box.h, size);
  const rows = new Float32Array(box.h * size * 3);
  for (let r = 0; r < box.h; r++) {
    const srcRow = (box.y + r) * srcWidth * 3;
    for (let o = 0; o < size; o++) {
      const ox = flip ? size - 1 - o : o;
      let r0 = 0, g0 = 0, b0 = 0;
      const n = xs.count[o]!, base = o * xs.taps;
      let p = srcRow + xs.first[o]! * 3;
      for (let k = 0; k < n; k++, p += 3) {
        const w = xs.weights[base + k]!;
        r0 += src[p]! * w;
        g0 += src[p + 1]! * w;
        b0 += src[p + 2]! * w;
      }
      const q = (r * size + ox) * 3;
      rows[q] = r0;
      rows[q + 1] = g0;
      rows[q + 2] = b0;
    }
  }
  const out = new Float32Array(size * size * 3);
  const rowStride = size * 3;
  for (let o = 0; o < size; o++) {
    const n = ys.count[o]!, base = o * ys.taps, firstRow = ys.first[o]! - box.y;
    const dst = o * rowStride;
    for (let k = 0; k < n; k++) {
      const w = ys.weights[base + k]! / 255;
      const srcOff = (firstRow + k) * rowStride;
      for (let i = 0; i < rowStride; i++) out[dst + i]! += rows[srcOff + i]! * w;
    }
  }
  return out;
}

const clamp01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);
const grey = (r: number, g: number, b: number) => 0.299 * r + 0.587 * g + 0.114 * b;

export function adjustBrightness(px: Float32Array, factor: number): void {
  for (let i = 0; i < px.length; i++) px[i] = clamp01(px[i]! * factor);
}

/** Blends with the mean grey level of the whole crop (torchvision's contrast). */
export function adjustContrast(px: Float32Array, factor: number): void {
  let sum = 0;
  for (let i = 0; i < px.length; i += 3) sum += grey(px[i]!, px[i + 1]!, px[i + 2]!);
  const mean = (sum / (px.length / 3)) * (1 - factor);
  for (let i = 0; i < px.length; i++) px[i] = clamp01(px[i]! * factor + mean);
}

/** Blends each pixel with its own grey level. */
export function adjustSaturation(px: Float32Array, factor: number): void {
  for (let i = 0; i < px.length; i += 3) {
    const g = grey(px[i]!, px[i + 1]!, px[i + 2]!) * (1 - factor);
    px[i] = clamp01(px[i]! * factor + g);
    px[i + 1] = clamp01(px[i + 1]! * factor + g);
    px[i + 2] = clamp01(px[i + 2]! * factor + g);
  }
}

/** Rotates hue by `shift` turns (in [-0.5, 0.5]) through HSV, as torchvision's adjust_hue. */
export function adjustHue(px: Float32Array, shift: number): void {
  for (let i = 0; i < px.length; i += 3) {
    const r = px[i]!, g = px[i + 1]!, b = px[i + 2]!;
    const max = Math.max(r, g, b), min = Math.min(r, g, b);
    const chroma = max - min;
    if (chroma === 0) continue; // grey pixels have no hue to rotate
    const s = chroma / max;
    let h: number;
    if (max === r) h = (g - b) / chroma;
    else if (max === g) h = 2 + (b - r) / chroma;
    else h = 4 + (r - g) / chroma;
    h = h / 6 + shift;
    h -= Math.floor(h);
    const h6 = h * 6;
    const sector = Math.floor(h6) % 6;
    const f = h6 - Math.floor(h6);
    const p = max * (1 - s), q = max * (1 - s * f), t = max * (1 - s * (1 - f));
    const [nr, ng, nb] =
      sector === 0 ? [max, t, p] : sector === 1 ? [q, max, p] : sector === 2 ? [p, max, t]
        : sector === 3 ? [p, q, max] : sector === 4 ? [t, p, max] : [max, p, q];
    px[i] = nr;
    px[i + 1] = ng;
    px[i + 2] = nb;
  }
}

export function toGreyscale(px: Float32Array): void {
  for (let i = 0; i < px.length; i += 3) {
    const g = grey(px[i]!, px[i + 1]!, px[i + 2]!);
    px[i] = g;
    px[i + 1] = g;
    px[i + 2] = g;
  }
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

/** Separable Gaussian blur of a square RGB crop; edges repeat the border pixel. */
export function gaussianBlur(px: Float32Array, size: number, sigma: number): void {
  const kernel = gaussianKernel(sigma);
  const radius = (kernel.length - 1) / 2;
  const line = new Float32Array((size + 2 * radius) * 3);
  blurPass(px, line, size, kernel, radius, 3, size * 3); // along rows
  blurPass(px, line, size, kernel, radius, size * 3, 3); // along columns
}

/**
 * One 1-D pass in place: `step` moves along the blurred axis, `lineStep` to the next line. Each line is
 * first copied into `line` with `radius` repeated border pixels on both sides, so the tap loop has no
 * bounds checks (branches in that loop cost more than the arithmetic).
 */
function blurPass(px: Float32Array, line: Float32Array, size: number, kernel: Float32Array, radius: number, step: number, lineStep: number): void {
  const taps = kernel.length;
  for (let l = 0; l < size; l++) {
    const base = l * lineStep;
    for (let j = -radius; j < size + radius; j++) {
      const src = base + (j < 0 ? 0 : j >= size ? size - 1 : j) * step;
      const dst = (j + radius) * 3;
      line[dst] = px[src]!;
      line[dst + 1] = px[src + 1]!;
      line[dst + 2] = px[src + 2]!;
    }
    for (let i = 0; i < size; i++) {
      let r = 0, g = 0, b = 0;
      for (let k = 0, p = i * 3; k < taps; k++, p += 3) {
        const w = kernel[k]!;
        r += line[p]! * w;
        g += line[p + 1]! * w;
        b += line[p + 2]! * w;
      }
      const q = base + i * step;
      px[q] = r;
      px[q + 1] = g;
      px[q + 2] = b;
    }
  }
}

/** (x - mean) / std per channel, in place. */
export function normalise(px: Float32Array, mean: readonly number[], std: readonly number[]): void {
  const [m0, m1, m2] = mean as [number, number, number];
  const [s0, s1, s2] = std.map((s) => 1 / s) as [number, number, number];
  for (let i = 0; i < px.length; i += 3) {
    px[i] = (px[i]! - m0) * s0;
    px[i + 1] = (px[i + 1]! - m1) * s1;
    px[i + 2] = (px[i + 2]! - m2) * s2;
  }
}
