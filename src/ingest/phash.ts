/**
 * 64-bit DCT perceptual hash: 32x32 greyscale (area average), 2-D DCT-II, the 8x8 lowest frequencies,
 * each bit = coefficient > median of those 64. Robust to resizing, re-encoding and small brightness shifts;
 * computed from pixels we already hold, so it costs no extra decode.
 */
const N = 32;
const K = 8;

/** cos((2x+1) u pi / 2N) for u < K, x < N: the only DCT terms the low 8x8 needs. */
const COS = (() => {
  const table = new Float64Array(K * N);
  for (let u = 0; u < K; u++)
    for (let x = 0; x < N; x++) table[u * N + x] = Math.cos(((2 * x + 1) * u * Math.PI) / (2 * N));
  return table;
})();

/**
 * Area-averaged 32x32 luma of an interleaved 8-bit image with `channels` channels (RGB first). Luma is
 * linear, so each cell sums R, G and B as integers (exact in float64) and takes 0.299/0.587/0.114 of the
 * sums once: three additions per pixel, in registers along each cell's run of a row. Updating a float sum
 * and count in memory for every pixel costs several times as much.
 */
export function grey32(pixels: Uint8Array, width: number, height: number, channels: number): Float64Array {
  const xs = cellEdges(width),
    ys = cellEdges(height);
  const sums = new Float64Array(N * N * 3);
  for (let y = 0; y < height; y++) {
    const cy = cellOf(y, height);
    const row = y * width * channels;
    for (let cx = 0; cx < N; cx++) {
      let r = 0,
        g = 0,
        b = 0;
      const end = row + xs[cx + 1]! * channels;
      for (let p = row + xs[cx]! * channels; p < end; p += channels) {
        r += pixels[p]!;
        g += pixels[p + 1]!;
        b += pixels[p + 2]!;
      }
      const cell = (cy * N + cx) * 3;
      sums[cell]! += r;
      sums[cell + 1]! += g;
      sums[cell + 2]! += b;
    }
  }
  const out = new Float64Array(N * N);
  for (let cy = 0; cy < N; cy++) {
    for (let cx = 0; cx < N; cx++) {
      const count = (ys[cy + 1]! - ys[cy]!) * (xs[cx + 1]! - xs[cx]!);
      const cell = (cy * N + cx) * 3;
      out[cy * N + cx] =
        count > 0 ? (0.299 * sums[cell]! + 0.587 * sums[cell + 1]! + 0.114 * sums[cell + 2]!) / count : 0;
    }
  }
  return out;
}

/** Cell of pixel `i` of `length` along one axis: floor(i * 32 / length), as the cells have always been cut. */
const cellOf = (i: number, length: number) => Math.min(N - 1, Math.floor((i * N) / length));

/** First pixel of each of the 32 cells along an axis of `length` pixels, then `length`. */
function cellEdges(length: number): Int32Array {
  const edges = new Int32Array(N + 1).fill(length);
  for (let i = length - 1; i >= 0; i--) edges[cellOf(i, length)] = i;
  for (let c = N - 1; c >= 0; c--) if (edges[c]! > edges[c + 1]!) edges[c] = edges[c + 1]!; // empty cells (length < 32)
  return edges;
}

/** The pHash of a 32x32 grey image. */
export function phash32(grey: Float64Array): bigint {
  // Separable DCT: rows first (32 rows x 8 frequencies), then columns (8 x 8).
  const rows = new Float64Array(N * K);
  for (let y = 0; y < N; y++) {
    for (let u = 0; u < K; u++) {
      let sum = 0;
      for (let x = 0; x < N; x++) sum += grey[y * N + x]! * COS[u * N + x]!;
      rows[y * K + u] = sum;
    }
  }
  const coeffs = new Float64Array(K * K);
  for (let v = 0; v < K; v++) {
    for (let u = 0; u < K; u++) {
      let sum = 0;
      for (let y = 0; y < N; y++) sum += rows[y * K + u]! * COS[v * N + y]!;
      coeffs[v * K + u] = sum;
    }
  }
  const median = [...coeffs].sort((a, b) => a - b)[(K * K) / 2 - 1]!;
  let hash = 0n;
  for (let i = 0; i < K * K; i++) if (coeffs[i]! > median) hash |= 1n << BigInt(i);
  return hash;
}

export function phash(pixels: Uint8Array, width: number, height: number, channels: number): bigint {
  return phash32(grey32(pixels, width, height, channels));
}

export function hamming(a: bigint, b: bigint): number {
  let x = a ^ b;
  let count = 0;
  while (x) {
    x &= x - 1n;
    count++;
  }
  return count;
}
