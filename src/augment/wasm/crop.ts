/**
 * AssemblyScript source of the augment workers' pixel kernels (WASM SIMD), built into crop.wasm by
 * `npm run build:wasm`. The JS side (../kernels.ts) owns the memory layout: every pointer here is a byte
 * offset into this module's memory, every table (taps, weights, jitter ops) is written there by JS first.
 * SIMD (f32x4 / i16x8) is why this is wasm: plain JS loops run one float multiply-add at a time.
 *
 * Crops are interleaved RGB f32; a pixel is loaded as one f32x4 (r, g, b, next r) whose 4th lane is
 * ignored, so every buffer that is read this way ends with 16 bytes of padding.
 */

/** Sixteen floats from four accumulators. */
@inline function store4(d: usize, a0: v128, a1: v128, a2: v128, a3: v128): void {
  v128.store(d, a0);
  v128.store(d, a1, 16);
  v128.store(d, a2, 32);
  v128.store(d, a3, 48);
}

/** Bytes 0-7 (`high` false) or 8-15 of rows A and B interleaved: a0 b0 a1 b1 ... */
@inline function zip(A: v128, B: v128, high: bool): v128 {
  return high
    ? i8x16.shuffle(A, B, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)
    : i8x16.shuffle(A, B, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
}

/**
 * Vertical resampling: output row o (`rowLen` floats) = sum over k < taps of source row `first[o]+k` (u8,
 * `stride` bytes apart, starting at `src`) times its weight, times `scale`. Weights are 16-bit integers, two
 * taps to an i32 of `pairs` (ceil(taps / 2) per output row; an odd count's last pair has a zero second
 * weight): the bytes of two rows are interleaved and summed with one i32x4.dot_i16x8_s per four columns,
 * exact integer sums of 8 x 16 bit products. Widening every tap's bytes to f32 instead costs ~2.5 times the
 * instructions. Sixteen columns at a time are summed over all taps in registers, then converted once.
 */
export function columnPass(src: usize, stride: i32, rowLen: i32, out: usize, size: i32, first: usize, pairs: usize, taps: i32, scale: f32): void {
  const n = (taps + 1) >> 1, full = taps >> 1, sv = f32x4.splat(scale), step = <usize>stride << 1;
  for (let o = 0; o < size; o++) {
    const dst = out + (<usize>(o * rowLen) << 2), w = pairs + (<usize>(o * n) << 2);
    const top = src + <usize>(load<i32>(first + (<usize>o << 2)) * stride);
    let i = 0;
    for (; i + 16 <= rowLen; i += 16) {
      let a0 = i32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
      let p = top + <usize>i;
      for (let k = 0; k < n; k++, p += step) {
        const wv = i32x4.splat(load<i32>(w + (<usize>k << 2)));
        const A = v128.load(p), B = k < full ? v128.load(p + <usize>stride) : A; // an odd last tap pairs with itself, weight 0
        const lo = zip(A, B, false), hi = zip(A, B, true);
        a0 = i32x4.add(a0, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(lo), wv));
        a1 = i32x4.add(a1, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(lo), wv));
        a2 = i32x4.add(a2, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(hi), wv));
        a3 = i32x4.add(a3, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(hi), wv));
      }
      store4(dst + (<usize>i << 2), f32x4.mul(f32x4.convert_i32x4_s(a0), sv), f32x4.mul(f32x4.convert_i32x4_s(a1), sv),
        f32x4.mul(f32x4.convert_i32x4_s(a2), sv), f32x4.mul(f32x4.convert_i32x4_s(a3), sv));
    }
    for (; i < rowLen; i++) {
      let acc: i32 = 0;
      for (let k = 0; k < taps; k++) acc += <i32>load<u8>(top + <usize>(i + k * stride)) * <i32>load<i16>(w + (<usize>k << 1));
      store<f32>(dst + (<usize>i << 2), <f32>acc * scale);
    }
  }
}

/** Input pixel k of a row-pass window times its weight. */
@inline function tap(p: usize, w: usize, k: i32): v128 {
  return f32x4.mul(v128.load(p + <usize>(k * 12)), f32x4.splat(load<f32>(w + (<usize>k << 2))));
}

/**
 * Horizontal resampling of `size` rows of `width` pixels to `size` pixels: output o of a row sums `taps`
 * pixels from byte offset `first[o]` of the row with weights `weights[o*taps..]` (a flip is a mirrored
 * table). Pixels are written in ascending memory order as whole f32x4, so each store's 4th lane lands on
 * the next pixel's red before that pixel is written (the last one in the buffer's padding). Up to four taps
 * run as straight-line code: per-pixel loop control cost more than the taps.
 */
export function rowPass(cols: usize, width: i32, size: i32, first: usize, weights: usize, taps: i32, out: usize): void {
  let q = out;
  for (let r = 0; r < size; r++) {
    const row = cols + <usize>(r * width * 12);
    let w = weights, f = first;
    const end = first + (<usize>size << 2), step = <usize>taps << 2;
    if (taps == 1) {
      for (; f < end; f += 4, w += step, q += 12) v128.store(q, tap(row + <usize>load<i32>(f), w, 0));
    } else if (taps == 2) {
      for (; f < end; f += 4, w += step, q += 12) {
        const p = row + <usize>load<i32>(f);
        v128.store(q, f32x4.add(tap(p, w, 0), tap(p, w, 1)));
      }
    } else if (taps == 3) {
      for (; f < end; f += 4, w += step, q += 12) {
        const p = row + <usize>load<i32>(f);
        v128.store(q, f32x4.add(f32x4.add(tap(p, w, 0), tap(p, w, 1)), tap(p, w, 2)));
      }
    } else if (taps == 4) {
      for (; f < end; f += 4, w += step, q += 12) {
        const p = row + <usize>load<i32>(f);
        v128.store(q, f32x4.add(f32x4.add(tap(p, w, 0), tap(p, w, 1)), f32x4.add(tap(p, w, 2), tap(p, w, 3))));
      }
    } else {
      for (; f < end; f += 4, w += step, q += 12) {
        const p = row + <usize>load<i32>(f);
        let a0 = f32x4.add(tap(p, w, 0), tap(p, w, 1)), a1 = f32x4.add(tap(p, w, 2), tap(p, w, 3));
        let k = 4;
        for (; k + 2 <= taps; k += 2) {
          a0 = f32x4.add(a0, tap(p, w, k));
          a1 = f32x4.add(a1, tap(p, w, k + 1));
        }
        if (k < taps) a0 = f32x4.add(a0, tap(p, w, k));
        v128.store(q, f32x4.add(a0, a1));
      }
    }
  }
}

@inline function clamp01(v: v128): v128 {
  return f32x4.pmin(f32x4.pmax(v, f32x4.splat(0)), f32x4.splat(1));
}

/** ITU-R 601 grey of four pixels. */
@inline function luma(r: v128, g: v128, b: v128): v128 {
  return f32x4.add(f32x4.add(f32x4.mul(r, f32x4.splat(0.299)), f32x4.mul(g, f32x4.splat(0.587))), f32x4.mul(b, f32x4.splat(0.114)));
}

/**
 * The three channels of a hue rotation, without branches: HSV -> RGB is max - chroma * w(k) per channel, w
 * the triangle clamp(min(k, 4 - k), 0, 1) of period 6 and k = (n + h) mod 6 (n = 5 red, 3 green, 1 blue).
 * With `u` = (h - 1) mod 6 (hueOf's `shift` lowered by a sixth of a turn) red's k is u itself and green's
 * u - 2 in [-2, 4), where the formula holds without the mod; blue's u + 2 in [2, 8) is the same triangle
 * written as clamp(max(4 - k, k - 6), 0, 1). That saves the three wraps (~10 of ~58 ops). A grey pixel (no
 * chroma) comes out as max, unchanged.
 */
@inline function hueRed(u: v128, max: v128, chroma: v128): v128 {
  return f32x4.sub(max, f32x4.mul(chroma, clamp01(f32x4.pmin(u, f32x4.sub(f32x4.splat(4), u)))));
}
@inline function hueGreen(u: v128, max: v128, chroma: v128): v128 {
  return f32x4.sub(max, f32x4.mul(chroma, clamp01(f32x4.pmin(f32x4.sub(u, f32x4.splat(2)), f32x4.sub(f32x4.splat(6), u)))));
}
@inline function hueBlue(u: v128, max: v128, chroma: v128): v128 {
  return f32x4.sub(max, f32x4.mul(chroma, clamp01(f32x4.pmax(f32x4.sub(f32x4.splat(2), u), f32x4.sub(u, f32x4.splat(4))))));
}

/**
 * The hue of four pixels in [0, 6) after adding `shift` (in turns). Chroma is floored at 1e-30 before its
 * reciprocal so that a grey pixel's hue is 0 rather than NaN (0 / 0): its channels need no mask then.
 */
@inline function hueOf(r: v128, g: v128, b: v128, max: v128, chroma: v128, shift: v128): v128 {
  const inv = f32x4.div(f32x4.splat(1), f32x4.pmax(chroma, f32x4.splat(1e-30)));
  const hr = f32x4.mul(f32x4.sub(g, b), inv);
  const hg = f32x4.add(f32x4.splat(2), f32x4.mul(f32x4.sub(b, r), inv));
  const hb = f32x4.add(f32x4.splat(4), f32x4.mul(f32x4.sub(r, g), inv));
  let h = v128.bitselect(hr, v128.bitselect(hg, hb, f32x4.eq(max, g)), f32x4.eq(max, r));
  h = f32x4.add(f32x4.mul(h, f32x4.splat(<f32>1 / 6)), shift);
  return f32x4.mul(f32x4.sub(h, f32x4.floor(h)), f32x4.splat(6));
}

/** What contrast (1) or saturation (2) blends four pixels with: x * f + base. */
@inline function blendBase(code: i32, f: f32, mean: f32, r: v128, g: v128, b: v128): v128 {
  return code == 1 ? f32x4.splat(mean * (1 - f)) : f32x4.mul(luma(r, g, b), f32x4.splat(1 - f));
}

@inline function blend(x: v128, f: v128, base: v128): v128 {
  return f32x4.add(f32x4.mul(x, f), base);
}

/** Adds the grey of the first `valid` (of four) pixels to the f64 pair `sum`. */
@inline function sumGrey(sum: v128, r: v128, g: v128, b: v128, valid: i32): v128 {
  let l = luma(r, g, b);
  if (valid < 4) l = v128.and(l, i32x4.lt_s(i32x4(0, 1, 2, 3), i32x4.splat(valid)));
  return f64x2.add(sum, f64x2.add(f64x2.promote_low_f32x4(l), f64x2.promote_low_f32x4(f32x4.shuffle(l, l, 2, 3, 0, 1))));
}

@inline function normal(x: v128, m: f32, s: f32): v128 {
  return f32x4.mul(f32x4.sub(x, f32x4.splat(m)), f32x4.splat(s));
}

// Four interleaved pixels (r0 g0 b0 r1 | g1 b1 r2 g2 | b2 r3 g3 b3) to and from r, g and b vectors. Every
// shuffle takes its low two lanes from its first operand and its high two from its second (or is a
// one-operand swizzle): the forms V8 emits as a single shufps/pshufd; others cost 2 pshufb and a por.
@inline function mid(v0: v128, v1: v128): v128 { return f32x4.shuffle(v0, v1, 1, 2, 4, 5); } // g0 b0 g1 b1
@inline function tail(v1: v128, v2: v128): v128 { return f32x4.shuffle(v1, v2, 2, 3, 5, 6); } // r2 g2 r3 g3
@inline function reds(v0: v128, v1: v128, v2: v128): v128 { return f32x4.shuffle(v0, tail(v1, v2), 0, 3, 4, 6); }
@inline function greens(v0: v128, v1: v128, v2: v128): v128 { return f32x4.shuffle(mid(v0, v1), tail(v1, v2), 0, 2, 5, 7); }
@inline function blues(v0: v128, v1: v128, v2: v128): v128 { return f32x4.shuffle(mid(v0, v1), v2, 1, 3, 4, 7); }
@inline function storePixels(p: usize, r: v128, g: v128, b: v128): void {
  const high = f32x4.shuffle(r, g, 2, 3, 6, 7); // r2 r3 g2 g3
  v128.store(p, f32x4.shuffle(f32x4.shuffle(r, g, 0, 1, 4, 5), f32x4.shuffle(b, r, 0, 1, 5, 6), 0, 2, 4, 6));
  v128.store(p, f32x4.shuffle(f32x4.shuffle(g, b, 1, 2, 5, 6), high, 0, 2, 4, 6), 16);
  const last = f32x4.shuffle(b, high, 2, 3, 5, 7); // b2 b3 r3 g3
  v128.store(p, f32x4.shuffle(last, last, 0, 2, 3, 1), 32);
}

/**
 * Jitter ops `codes[0..nops)` (0 brightness, 1 contrast with `mean`, 2 saturation, 3 hue) with `factors`,
 * in order, over `pixels` pixels in place. Eight pixels a step, as two independent groups of four (A at
 * p, B at p + 48): the hue chain is long (a division, a floor, three selects), so one group at a time is
 * bound by its latency. A last partial step runs on the padding after the crop. With `finish` it then
 * applies greyscale (when `grey`) and (x - m) * s per channel; without, it returns the grey sum of the
 * result (contrast's mean).
 */
export function colour(px: usize, pixels: i32, codes: usize, factors: usize, nops: i32, mean: f32, finish: bool, grey: bool,
  m0: f32, m1: f32, m2: f32, s0: f32, s1: f32, s2: f32): f64 {
  let sum = f64x2.splat(0);
  for (let i = 0; i < pixels; i += 8) {
    const p = px + <usize>i * 12;
    let v0 = v128.load(p), v1 = v128.load(p, 16), v2 = v128.load(p, 32);
    let rA = reds(v0, v1, v2), gA = greens(v0, v1, v2), bA = blues(v0, v1, v2);
    v0 = v128.load(p, 48); v1 = v128.load(p, 64); v2 = v128.load(p, 80);
    let rB = reds(v0, v1, v2), gB = greens(v0, v1, v2), bB = blues(v0, v1, v2);
    for (let k = 0; k < nops; k++) {
      const f = load<f32>(factors + (<usize>k << 2)), code = load<i32>(codes + (<usize>k << 2));
      const fv = f32x4.splat(f);
      if (code == 3) {
        const maxA = f32x4.pmax(rA, f32x4.pmax(gA, bA)), chromaA = f32x4.sub(maxA, f32x4.pmin(rA, f32x4.pmin(gA, bA)));
        const maxB = f32x4.pmax(rB, f32x4.pmax(gB, bB)), chromaB = f32x4.sub(maxB, f32x4.pmin(rB, f32x4.pmin(gB, bB)));
        const shift = f32x4.splat(f - <f32>1 / 6); // u = (h - 1) mod 6: see hueRed
        const uA = hueOf(rA, gA, bA, maxA, chromaA, shift), uB = hueOf(rB, gB, bB, maxB, chromaB, shift);
        rA = hueRed(uA, maxA, chromaA); rB = hueRed(uB, maxB, chromaB);
        gA = hueGreen(uA, maxA, chromaA); gB = hueGreen(uB, maxB, chromaB);
        bA = hueBlue(uA, maxA, chromaA); bB = hueBlue(uB, maxB, chromaB);
      } else {
        if (code == 0) {
          rA = f32x4.mul(rA, fv); rB = f32x4.mul(rB, fv);
          gA = f32x4.mul(gA, fv); gB = f32x4.mul(gB, fv);
          bA = f32x4.mul(bA, fv); bB = f32x4.mul(bB, fv);
        } else {
          const baseA = blendBase(code, f, mean, rA, gA, bA), baseB = blendBase(code, f, mean, rB, gB, bB);
          rA = blend(rA, fv, baseA); rB = blend(rB, fv, baseB);
          gA = blend(gA, fv, baseA); gB = blend(gB, fv, baseB);
          bA = blend(bA, fv, baseA); bB = blend(bB, fv, baseB);
        }
        // With 0 <= f <= 1 every op is a convex blend of values in [0, 1] (the pixel and 0, the mean grey or
        // its own grey), which stays in [0, 1]: the clamp is needed only for the other half of the draws.
        if (f < 0 || f > 1) {
          rA = clamp01(rA); rB = clamp01(rB);
          gA = clamp01(gA); gB = clamp01(gB);
          bA = clamp01(bA); bB = clamp01(bB);
        }
      }
    }
    if (!finish) {
      sum = sumGrey(sum, rA, gA, bA, pixels - i);
      sum = sumGrey(sum, rB, gB, bB, pixels - i - 4);
    } else {
      if (grey) {
        rA = gA = bA = luma(rA, gA, bA);
        rB = gB = bB = luma(rB, gB, bB);
      }
      rA = normal(rA, m0, s0); gA = normal(gA, m1, s1); bA = normal(bA, m2, s2);
      rB = normal(rB, m0, s0); gB = normal(gB, m1, s1); bB = normal(bB, m2, s2);
    }
    storePixels(p, rA, gA, bA);
    storePixels(p + 48, rB, gB, bB);
  }
  return f64x2.extract_lane(sum, 0) + f64x2.extract_lane(sum, 1);
}

/**
 * Separable blur of a size x size RGB crop in place with the odd-length `kernel` (`taps` floats); edges
 * repeat the border pixel. Rows: flat index j = 3x+c reads j + 3k of a padded copy of the row (`line`,
 * (size + taps - 1) * 3 floats + padding). Columns: weighted sums of whole rows. Both sum sixteen floats at
 * a time over all taps in registers (four independent chains, one store).
 */
export function blur(px: usize, tmp: usize, line: usize, size: i32, kernel: usize, taps: i32): void {
  const radius = (taps - 1) >> 1, rowLen = size * 3, rowBytes = <usize>rowLen << 2;
  for (let y = 0; y < size; y++) {
    const row = px + <usize>y * rowBytes;
    memory.copy(line + <usize>radius * 12, row, rowBytes);
    for (let k = 0; k < radius; k++) {
      memory.copy(line + <usize>k * 12, row, 12);
      memory.copy(line + <usize>(radius + size + k) * 12, row + rowBytes - 12, 12);
    }
    blurRun(line, tmp + <usize>y * rowBytes, rowLen, kernel, taps, 12, false, 0, 0);
  }
  // Rows whose window lies inside the crop read it straight; only the `radius` rows at each edge clamp
  // their row indices (per tap and 16 floats, which cost a third as much again as the sums).
  for (let y = 0; y < size; y++) {
    const first = y - radius, dst = px + <usize>y * rowBytes;
    if (first >= 0 && first + taps <= size) blurRun(tmp + <usize>first * rowBytes, dst, rowLen, kernel, taps, rowBytes, false, 0, 0);
    else blurRun(tmp, dst, rowLen, kernel, taps, rowBytes, true, first, size - 1);
  }
}

/**
 * dst[j] = sum over k of kernel[k] * src[j] of line k, for j < n; line k starts at src + k * step, or, when
 * `clamped`, at src + clamp(first + k, 0, last) * step (the column pass's repeated border rows).
 */
@inline function blurRun(src: usize, dst: usize, n: i32, kernel: usize, taps: i32, step: usize, clamped: bool, first: i32, last: i32): void {
  let j = 0;
  const half = taps >> 1; // the kernel is symmetric: lines k and taps-1-k are added before their shared weight
  for (; j + 16 <= n; j += 16) {
    const at = <usize>j << 2;
    let p = src + <usize>(clamped ? min(last, max(0, first + half)) : half) * step + at;
    let wv = f32x4.splat(load<f32>(kernel + (<usize>half << 2)));
    let a0 = f32x4.mul(v128.load(p), wv), a1 = f32x4.mul(v128.load(p, 16), wv);
    let a2 = f32x4.mul(v128.load(p, 32), wv), a3 = f32x4.mul(v128.load(p, 48), wv);
    for (let k = 0; k < half; k++) {
      p = src + <usize>(clamped ? min(last, max(0, first + k)) : k) * step + at;
      const q = src + <usize>(clamped ? min(last, max(0, first + taps - 1 - k)) : taps - 1 - k) * step + at;
      wv = f32x4.splat(load<f32>(kernel + (<usize>k << 2)));
      a0 = f32x4.add(a0, f32x4.mul(f32x4.add(v128.load(p), v128.load(q)), wv));
      a1 = f32x4.add(a1, f32x4.mul(f32x4.add(v128.load(p, 16), v128.load(q, 16)), wv));
      a2 = f32x4.add(a2, f32x4.mul(f32x4.add(v128.load(p, 32), v128.load(q, 32)), wv));
      a3 = f32x4.add(a3, f32x4.mul(f32x4.add(v128.load(p, 48), v128.load(q, 48)), wv));
    }
    store4(dst + at, a0, a1, a2, a3);
  }
  for (; j < n; j++) {
    let acc: f32 = 0;
    for (let k = 0; k < taps; k++) {
      acc += load<f32>(src + <usize>(clamped ? min(last, max(0, first + k)) : k) * step + (<usize>j << 2)) * load<f32>(kernel + (<usize>k << 2));
    }
    store<f32>(dst + (<usize>j << 2), acc);
  }
}

/**
 * Bytes of `n` floats on the 0-1 scale (a crop coloured without normalisation): clamp to [0, 1], times 255,
 * rounded half up, i.e. trunc(x * 255 + 0.5) in f32 steps; NaN gives 0. Sixteen at a time: four f32x4 to
 * i32 lanes, narrowed to i16 then u8. The vectors clamp in the integer domain instead: the narrows saturate
 * (i32 to i16 signed, so a huge lane stays positive; i16 to u8 sends below 0 to 0, above 255 to 255) and
 * truncation toward zero sends (-1, 0) to 0, so every lane, NaN and infinities included, equals the clamped
 * formula the scalar tail computes, at half the cost of clamping the floats and converting with
 * trunc_sat_f32x4_u (which V8 lowers to a long sequence on x64). Reads and writes nothing past `n`.
 */
export function toBytes(src: usize, dst: usize, n: i32): void {
  const scale = f32x4.splat(255), half = f32x4.splat(0.5);
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const p = src + (<usize>i << 2);
    const q0 = i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p), scale), half));
    const q1 = i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 16), scale), half));
    const q2 = i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 32), scale), half));
    const q3 = i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 48), scale), half));
    v128.store(dst + <usize>i, i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
  }
  for (; i < n; i++) {
    const x = load<f32>(src + (<usize>i << 2));
    const c: f32 = x > 0 ? (x < 1 ? x : 1) : 0; // NaN fails both tests: 0, as in the vectors
    store<u8>(dst + <usize>i, <u32>(c * 255 + <f32>0.5));
  }
}
