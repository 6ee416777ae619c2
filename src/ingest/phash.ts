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
  for (let u = 0; u < K; u++) for (let x = 0; x < N; x++) table[u * N + x] = Math.cos(((2 * x + 1) * u * Math.PI) / (2 * N));
  return table;
})();

/** Area-averaged 32x32 luma of an interleaved 8-bit image with `channels` channels (RGB first). */
export function grey32(pixels: Uint8Array, width: number, height: number, channels: number): Float64Array {
  const out = new Float64Array(N * N);
  const counts = new Float64Array(N * N);
  const colCell = new Int32Array(width); // hoisted: the per-pixel division was most of the cost
  for (let x = 0; x < width; x++) colCell[x] = Math.min(N - 1, Math.floor((x * N) / width));
  for (let y = 0; y < height; y++) {
    const row = Math.min(N - 1, Math.floor((y * N) / height)) * N;
    let p = y * width * channels;
    for (let x = 0; x < width; x++, p += channels) {
      const cell = row + colCell[x]!;
      out[cell]! += 0.299 * pixels[p]! + 0.587 * pixels[p + 1]! + 0.114 * pixels[p + 2]!;
      counts[cell]! += 1;
    }
  }
  for (let i = 0; i < out.length; i++) out[i] = counts[i]! > 0 ? out[i]! / counts[i]! : 0;
  return out;
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
  const median = [...coeffs].sort((a, b) => a - b)[K * K / 2 - 1]!;
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
