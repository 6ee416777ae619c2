/**
 * 8-bit crops (augment's ByteCrop) to the normalised f32 the backbone reads, on the device: the stepper
 * uploads a quarter of the bytes of float crops and this kernel finishes them inside the step's submission.
 * Element i (NHWC, channel c = i % 3) becomes byte * scale[c] + shift[c] with cropAffine's f32 constants, as
 * cropFloats computes it on the CPU (a driver may fuse the multiply-add: 1 ULP apart at most).
 */
import { cropAffine, type CropNormalisation } from '../../../crop-tensor.js';
import type { Dispatch, GpuTensor, Kernel } from '../runner.js';
import { elementwiseEntry, elementwiseGroups } from './elementwise.js';

/** An f32 literal that parses to exactly Math.fround(x). */
const f32 = (x: number) => {
  const s = String(Math.fround(x));
  return /[.e]/.test(s) ? s : `${s}.0`;
};

/**
 * Bindings: bytes (`count` bytes packed little-endian into u32 words), dst (f32; elements from `dstOffset`).
 * One thread per word, four multiply-adds (two divisions each, (byte / 255 - mean) / std, cost lavapipe
 * more than the upload the bytes save); the word's first element decides the channels of all four.
 */
export function cropDecodeKernel(count: number, dstOffset: number, norm: CropNormalisation): Kernel {
  const { scale, shift } = cropAffine(norm);
  const vec = (v: number[]) => `vec3f(${v.map(f32).join(', ')})`;
  const words = Math.ceil(count / 4);
  const store = (k: number) =>
    `dst[o + ${k}u] = f32((w >> ${8 * k}u) & 0xffu) * a[(c + ${k}u) % 3u] + b[(c + ${k}u) % 3u];`;
  // The last word of a count that is not whole words stores only its own elements.
  const rest = count % 4;
  const last = rest
    ? `if (i == ${words - 1}u) { ${[1, 2]
        .filter((k) => k < rest)
        .map(store)
        .join(' ')} return; }`
    : '';
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> bytes: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
${elementwiseEntry(words)}
  let a = ${vec(scale)};
  let b = ${vec(shift)};
  let w = bytes[i];
  let c = (i * 4u) % 3u;
  let o = ${dstOffset}u + i * 4u;
  ${store(0)}
  ${last}
  ${[1, 2, 3].map(store).join('\n  ')}
}
`;
  const key = `crop-decode:${count}:${dstOffset}:${scale.map(f32).join(',')}:${shift.map(f32).join(',')}`;
  return { key, code, workgroups: elementwiseGroups(words) };
}

/** Elements a chunk of the decode covers: whole words, whole pixels, 256-byte aligned ranges of both buffers. */
const CHUNK_UNIT = 3 * 1024;

/**
 * Decodes `bytes` (a tensor of ceil(n / 4) u32 words) into `dst`, an f32 tensor of n elements or a view at a
 * 4-byte offset into a larger buffer, in chunks that each bind at most `maxBinding` bytes (a 224 px crop of a
 * batch of 256 is 154 MB of f32: above lavapipe's 128 MiB binding limit). WebGPU binds a range only from a
 * multiple of 256 bytes, so each chunk binds from the aligned byte at or before its first element.
 */
export function cropDecode(bytes: GpuTensor, dst: GpuTensor, norm: CropNormalisation, maxBinding: number): Dispatch[] {
  if (dst.dtype !== 'f32') throw new RangeError(`cropDecode: the destination must be f32, got ${dst.dtype}`);
  if (bytes.size * 4 < dst.size)
    throw new RangeError(`cropDecode: ${bytes.size * 4} bytes staged for ${dst.size} elements`);
  // 255 elements of alignment slack on the destination side.
  const chunk = Math.floor((maxBinding / 4 - 256) / CHUNK_UNIT) * CHUNK_UNIT;
  if (chunk < CHUNK_UNIT) throw new RangeError(`cropDecode: a binding of ${maxBinding} bytes is too small`);
  const out: Dispatch[] = [];
  for (let first = 0; first < dst.size; first += chunk) {
    const n = Math.min(chunk, dst.size - first);
    const at = (dst.offset ?? 0) + first * 4;
    const base = at - (at % 256);
    const lead = (at - base) / 4;
    const src: GpuTensor = {
      ...bytes,
      shape: [Math.ceil(n / 4)],
      size: Math.ceil(n / 4),
      offset: (bytes.offset ?? 0) + first,
    };
    const to: GpuTensor = { buffer: dst.buffer, shape: [lead + n], dtype: 'f32', size: lead + n, offset: base };
    out.push({ kernel: cropDecodeKernel(n, lead, norm), buffers: [src, to] });
  }
  return out;
}
