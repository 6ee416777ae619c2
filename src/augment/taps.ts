/**
 * The weight tables of the crop kernels, computed in JS (resampling tables cached by size) and handed to
 * the WASM kernels (./kernels.ts): PIL's antialiased bilinear resampling taps (a triangle filter widened
 * by the shrink factor, as torchvision's RandomResizedCrop gets from PIL) and the truncated Gaussian of
 * the blur.
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
 * weights): the kernels' loops then run a fixed count (a count that changes from one pixel to the next
 * costs a mispredicted branch per pixel).
 */
export interface AxisTaps {
  first: Int32Array;
  weights: Float32Array;
  taps: number;
}

export interface TapOptions {
  /** `first` in these units of an input (e.g. bytes per pixel). @default 1 */
  unit?: number;
  /** Outputs in reverse order: resampling and a mirror image in one pass. */
  flip?: boolean;
}

/** Per-output working arrays, kept between calls (a scratch A/B: 21-29 -> 11-21 us per 96-224 output axis). */
let scratch = { raw: new Float64Array(0), lo: new Int32Array(0), hi: new Int32Array(0), skip: new Int32Array(0) };
function scratchFor(out: number, span: number): typeof scratch {
  if (scratch.raw.length < out * span || scratch.lo.length < out) {
    const n = Math.max(out, scratch.lo.length);
    scratch = {
      raw: new Float64Array(Math.max(out * span, scratch.raw.length)),
      lo: new Int32Array(n),
      hi: new Int32Array(n),
      skip: new Int32Array(n),
    };
  }
  return scratch;
}

/** Taps mapping inputs [start, start+length) onto `out` samples. */
export function axisTaps(start: number, length: number, out: number, options: TapOptions = {}): AxisTaps {
  const { unit = 1, flip = false } = options;
  const scale = length / out;
  const support = Math.max(scale, 1); // the triangle's radius: 1 input pixel, widened when shrinking
  const span = Math.ceil(support) * 2 + 1; // the widest window before its zero ends are trimmed
  const { raw, lo, hi, skip } = scratchFor(out, span);
  let taps = 1;
  for (let o = 0; o < out; o++) {
    const center = (o + 0.5) * scale,
      base = o * span;
    let a = Math.max(0, Math.floor(center - support + 0.5)),
      b = Math.min(length, Math.floor(center + support + 0.5));
    for (let k = a; k < b; k++) raw[base + k - a] = Math.max(0, 1 - Math.abs((k - center + 0.5) / support));
    let s = 0;
    for (; b - a > 1 && raw[base + s] === 0; s++) a++;
    while (b - a > 1 && raw[base + s + b - a - 1] === 0) b--;
    lo[o] = a;
    hi[o] = b;
    skip[o] = s;
    taps = Math.max(taps, b - a);
  }
  const first = new Int32Array(out),
    weights = new Float32Array(out * taps);
  for (let o = 0; o < out; o++) {
    const from = Math.min(lo[o]!, length - taps); // keeps the window inside the axis; taps <= length
    const at = flip ? out - 1 - o : o,
      w0 = o * span + skip[o]!,
      n = hi[o]! - lo[o]!;
    let total = 0;
    for (let k = 0; k < n; k++) total += raw[w0 + k]!;
    for (let k = 0; k < n; k++) weights[at * taps + lo[o]! - from + k] = raw[w0 + k]! / (total || 1);
    first[at] = (start + from) * unit;
  }
  return { first, weights, taps };
}

/**
 * Taps from the start of an axis, kept for reuse: with `start` 0 they depend only on (length, out, options),
 * and a dataset's crops repeat those (~1,400 tables, ~10 MB, for 2x224 + 6x96 crops of 512 px images) while
 * computing two tables per crop cost ~0.26 ms a sample. Kept per options object, so callers pass constant
 * ones (a string key per lookup cost ~4 us). Past CACHE_BYTES the cache starts over. The tables returned are
 * shared: read them, never write them.
 */
export function cachedTaps(length: number, out: number, options: Readonly<TapOptions>): AxisTaps {
  let tables = cache.get(options);
  if (!tables) cache.set(options, (tables = new Map()));
  const key = length * 65536 + out;
  let taps = tables.get(key);
  if (!taps) {
    taps = axisTaps(0, length, out, options);
    if (cachedBytes > CACHE_BYTES) {
      cache.clear();
      cache.set(options, (tables = new Map()));
      cachedBytes = 0;
    }
    tables.set(key, taps);
    cachedBytes += taps.first.byteLength + taps.weights.byteLength;
  }
  return taps;
}

/** The fixed-point weight of 1 in `pairedWeights`: 2^14 keeps 255 x the sum of a row's weights inside an i32. */
export const FIXED_ONE = 16384;

/**
 * `t`'s weights in fixed point (FIXED_ONE = 1) for the column pass's integer sums, laid out as pairs of
 * taps (an odd count padded with a zero weight): ceil(taps / 2) * 2 int16 per output. Each output's weights
 * are rounded and then its largest corrected so that they sum to exactly FIXED_ONE, so a flat area stays
 * exactly flat; a pixel's error is at most 255 x taps / 2^15 levels (0.0078 a tap), far under a JPEG's
 * rounding. Kept per table object, so cached tables give cached pairs.
 */
export function pairedWeights(t: AxisTaps): Int16Array {
  let pairs = paired.get(t);
  if (pairs) return pairs;
  const n = (t.taps + 1) >> 1,
    out = t.first.length;
  pairs = new Int16Array(out * n * 2);
  for (let o = 0; o < out; o++) {
    let total = 0,
      largest = 0;
    for (let k = 0; k < t.taps; k++) {
      const w = (pairs[o * n * 2 + k] = Math.round(t.weights[o * t.taps + k]! * FIXED_ONE));
      total += w;
      if (w > pairs[o * n * 2 + largest]!) largest = k;
    }
    pairs[o * n * 2 + largest]! += FIXED_ONE - total;
  }
  paired.set(t, pairs);
  return pairs;
}
const paired = new WeakMap<AxisTaps, Int16Array>();

const CACHE_BYTES = 32 * 1024 * 1024;
const cache = new Map<Readonly<TapOptions>, Map<number, AxisTaps>>();
let cachedBytes = 0;

/** The normalised 1-D Gaussian kernel, truncated at 3 sigma (at least radius 1). */
export function gaussianKernel(sigma: number): Float32Array {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const kernel = new Float32Array(radius * 2 + 1);
  let total = 0;
  for (let k = -radius; k <= radius; k++) total += kernel[k + radius] = Math.exp(-(k * k) / (2 * sigma * sigma));
  for (let k = 0; k < kernel.length; k++) kernel[k]! /= total;
  return kernel;
}
