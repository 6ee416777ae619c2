/**
 * Runs a crop's pixel work in the WASM SIMD kernels (./wasm/crop.ts): resize, colour jitter, greyscale,
 * normalisation, blur, and for 8-bit output the conversion to bytes. Each thread instantiates the module once;
 * a call copies the decoded image into the module's memory, lays out every crop's tables and buffers after
 * it, and copies each finished crop out: into the caller's array (a worker passes views of the batch's shared
 * buffers) or a new one.
 */
import { readFileSync } from 'node:fs';
import type { AugmentConfig } from './config.js';
import { cachedTaps, FIXED_ONE, gaussianKernel, pairedWeights, type AxisTaps, type Box } from './taps.js';

export type JitterOp = 'brightness' | 'contrast' | 'saturation' | 'hue';

/** One crop's random draws (multicrop.ts makes them): what the kernels apply to the decoded image. */
export interface CropDraw {
  size: number;
  box: Box;
  flip: boolean;
  /** Colour jitter factors in the order applied, or null when jitter was not drawn. */
  jitter: Array<{ op: JitterOp; factor: number }> | null;
  grey: boolean;
  /** Blur sigma, or null for no blur. */
  blur: number | null;
}

/** Per channel (R, G, B) on the 0-1 scale: what the colour pass finishes with, (x - mean) / std. */
type Normalisation = Pick<AugmentConfig, 'mean' | 'std'>;

/** The WebAssembly API this file uses; lib ES2023 and @types/node 20 do not declare it. */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
const WASM = (
  globalThis as unknown as {
    WebAssembly: { Module: new (bytes: Uint8Array) => object; Instance: new (module: object) => { exports: unknown } };
  }
).WebAssembly;

interface CropWasm {
  memory: WasmMemory;
  columnPass(
    src: number,
    stride: number,
    rowLen: number,
    out: number,
    size: number,
    first: number,
    pairs: number,
    taps: number,
    scale: number,
  ): void;
  rowPass(cols: number, width: number, size: number, first: number, weights: number, taps: number, out: number): void;
  colour(
    px: number,
    pixels: number,
    codes: number,
    factors: number,
    nops: number,
    mean: number,
    finish: number,
    grey: number,
    m0: number,
    m1: number,
    m2: number,
    s0: number,
    s1: number,
    s2: number,
  ): number;
  blur(px: number, tmp: number, line: number, size: number, kernel: number, taps: number): void;
  toBytes(src: number, dst: number, n: number): void;
}

const wasmModule = new WASM.Module(readFileSync(new URL('./wasm/crop.wasm', import.meta.url)));
let instance: CropWasm | undefined;
const kernels = () => (instance ??= new WASM.Instance(wasmModule).exports as unknown as CropWasm);

/** Resampling table options (constant objects: the table cache is kept per options object). */
const ROWS = {}; // source rows, in rows (the column pass takes them in fixed point: see pairedWeights)
/** The column pass's fixed-point sums of u8 to [0, 1]. */
const ROW_SCALE = 1 / (255 * FIXED_ONE);
const PIXELS = { unit: 12 }; // byte offsets of RGB f32 pixels
const MIRRORED = { unit: 12, flip: true };

const CODE: Record<JitterOp, number> = { brightness: 0, contrast: 1, saturation: 2, hue: 3 };
/**
 * Slack after every buffer: the kernels read and write a pixel as 16 bytes (r, g, b and the next r) and
 * colour a crop eight pixels (96 bytes) at a time, a last partial step reaching up to 84 bytes past the end.
 */
const PAD = 96;

/** Bump allocation of 16-byte-aligned regions in the module's memory, grown before any view is made. */
class Arena {
  private top: number;
  constructor(start: number) {
    this.top = start;
  }
  alloc(bytes: number): number {
    const at = Math.ceil(this.top / 16) * 16;
    this.top = at + bytes + PAD;
    return at;
  }
  get end(): number {
    return this.top;
  }
  commit(memory: WasmMemory): void {
    const missing = this.top - memory.buffer.byteLength;
    if (missing > 0) memory.grow(Math.ceil(missing / 65536));
  }
}

/** Where the image a call crops sits in the module's memory; every crop's buffers follow it. */
const IMAGE = 0;

/**
 * A view of `bytes` bytes of the module's memory where `cropImage` reads its image: a decoder writing an
 * image there saves the copy in (~0.1 ms a 512 px image). The view is valid until the next `cropImage` or
 * `imageMemory` call on this thread, so decode into it and crop at once.
 */
export function imageMemory(bytes: number): Uint8Array {
  const k = kernels();
  const arena = new Arena(IMAGE);
  arena.alloc(bytes);
  arena.commit(k.memory);
  return new Uint8Array(k.memory.buffer, IMAGE, bytes);
}

/** What a crop is written as: normalised floats, or the bytes before normalisation (see ../crop-tensor.ts). */
export type CropArray = Float32Array | Uint8Array;

/**
 * Crops an 8-bit RGB image (`width` pixels a row) once per draw: size x size x 3 (HWC) each, written into
 * `outputs[i]` when given (e.g. views of a shared batch buffer), else into new arrays. Float32 outputs (the
 * default) get normalised floats, (x - mean) / std per channel; Uint8 outputs get the crop before
 * normalisation as bytes, 0-255, which `cropFloats` (../crop-tensor.ts) turns into the floats within half a
 * level. The outputs' type picks the kind for every crop (a draw past their end gets a new array of it); an
 * empty or absent list gives floats. Throws a RangeError for an output of the wrong length, a TypeError for
 * outputs of both types.
 */
export function cropImage<T extends CropArray = Float32Array>(
  rgb: Uint8Array,
  width: number,
  draws: readonly CropDraw[],
  config: AugmentConfig,
  outputs?: T[],
): T[] {
  const bytes = outputs?.some((o) => o instanceof Uint8Array) ?? false;
  if (bytes && outputs!.some((o) => !(o instanceof Uint8Array)))
    throw new TypeError('crop outputs must all be Float32Array or all Uint8Array');
  const k = kernels();
  // Pixels decoded into imageMemory are already where the kernels read them (growing keeps them there).
  const inPlace = rgb.buffer === k.memory.buffer && rgb.byteOffset === IMAGE;
  const arena = new Arena(IMAGE);
  const image = arena.alloc(rgb.length);
  arena.commit(k.memory);
  if (!inPlace) new Uint8Array(k.memory.buffer, image, rgb.length).set(rgb);
  return draws.map((draw, i) => {
    const out = cropOne(k, image, width, arena.end, draw, config, bytes);
    const into = outputs?.[i];
    // The outputs' type chose `bytes`, so `out` is of T's kind.
    if (!into) return out.slice() as T;
    if (into.length !== out.length)
      throw new RangeError(
        `crop ${i} needs ${out.length} ${bytes ? 'bytes' : 'floats'}, its output has ${into.length}`,
      );
    into.set(out);
    return into;
  });
}

/**
 * One crop: resize (columns, then rows), colour and normalisation, blur. Blur runs after normalisation, not
 * before as torchvision orders it: a blur whose weights sum to 1 commutes with a per-channel affine map, and
 * this way the colour steps and normalisation share one pass. For `bytes` the normalisation is the identity
 * (mean 0, 1 / std 1: exact in f32, so the colour pass computes the same values before it) and the blurred
 * 0-1 floats become bytes. Returns a view of the crop in the module's memory, valid until the next call.
 */
function cropOne(
  k: CropWasm,
  image: number,
  width: number,
  scratch: number,
  draw: CropDraw,
  config: AugmentConfig,
  bytes: boolean,
): CropArray {
  const { box, size } = draw;
  // The column pass takes source rows; the row pass byte offsets of RGB f32 pixels, mirrored for a flip.
  // Both count from the box's corner, where the column pass starts reading.
  const ys = cachedTaps(box.h, size, ROWS),
    xs = cachedTaps(box.w, size, draw.flip ? MIRRORED : PIXELS);
  const kernel = draw.blur === null ? null : gaussianKernel(draw.blur);
  const arena = new Arena(scratch);
  const pairs = pairedWeights(ys);
  const yt = { first: arena.alloc(ys.first.byteLength), weights: arena.alloc(pairs.byteLength) },
    xt = allocTaps(arena, xs);
  const cols = arena.alloc(size * box.w * 12),
    out = arena.alloc(size * size * 12);
  const ops = arena.alloc(32),
    factors = arena.alloc(32);
  const blur = kernel && {
    tmp: arena.alloc(size * size * 12),
    line: arena.alloc((size + kernel.length - 1) * 12),
    kernel: arena.alloc(kernel.length * 4),
  };
  const u8 = bytes ? arena.alloc(size * size * 3) : 0;
  arena.commit(k.memory);
  new Int32Array(k.memory.buffer, yt.first, ys.first.length).set(ys.first);
  new Int16Array(k.memory.buffer, yt.weights, pairs.length).set(pairs);
  writeTaps(k.memory, xt, xs);
  k.columnPass(
    image + (box.y * width + box.x) * 3,
    width * 3,
    box.w * 3,
    cols,
    size,
    yt.first,
    yt.weights,
    ys.taps,
    ROW_SCALE,
  );
  k.rowPass(cols, box.w, size, xt.first, xt.weights, xs.taps, out);
  colour(k, out, size * size, { ops, factors }, draw, bytes ? IDENTITY : config);
  if (blur && kernel) {
    new Float32Array(k.memory.buffer, blur.kernel, kernel.length).set(kernel);
    k.blur(out, blur.tmp, blur.line, size, blur.kernel, kernel.length);
  }
  if (!bytes) return new Float32Array(k.memory.buffer, out, size * size * 3);
  k.toBytes(out, u8, size * size * 3);
  return new Uint8Array(k.memory.buffer, u8, size * size * 3);
}

/** The normalisation that leaves the colour pass's 0-1 values as they are: bytes are made before it. */
const IDENTITY: Normalisation = { mean: [0, 0, 0], std: [1, 1, 1] };

interface TapsAt {
  first: number;
  weights: number;
}

function allocTaps(arena: Arena, t: AxisTaps): TapsAt {
  return { first: arena.alloc(t.first.byteLength), weights: arena.alloc(t.weights.byteLength) };
}

function writeTaps(memory: WasmMemory, at: TapsAt, t: AxisTaps): void {
  new Int32Array(memory.buffer, at.first, t.first.length).set(t.first);
  new Float32Array(memory.buffer, at.weights, t.weights.length).set(t.weights);
}

/**
 * Jitter in its drawn order, then greyscale and normalisation, fused per pixel. Contrast blends with the
 * mean grey of the crop as it stands at contrast's turn, so the ops before it run first and sum that grey.
 */
function colour(
  k: CropWasm,
  px: number,
  pixels: number,
  at: { ops: number; factors: number },
  draw: CropDraw,
  norm: Normalisation,
): void {
  const jitter = draw.jitter ?? [];
  const split = jitter.findIndex((j) => j.op === 'contrast');
  const pass = (ops: typeof jitter, mean: number, finish: boolean): number => {
    new Int32Array(k.memory.buffer, at.ops, ops.length).set(ops.map((j) => CODE[j.op]));
    new Float32Array(k.memory.buffer, at.factors, ops.length).set(ops.map((j) => j.factor));
    const [m0, m1, m2] = norm.mean,
      [s0, s1, s2] = norm.std;
    return k.colour(
      px,
      pixels,
      at.ops,
      at.factors,
      ops.length,
      mean,
      finish ? 1 : 0,
      draw.grey ? 1 : 0,
      m0,
      m1,
      m2,
      1 / s0,
      1 / s1,
      1 / s2,
    );
  };
  if (split < 0) return void pass(jitter, 0, true);
  const sum = pass(jitter.slice(0, split), 0, false);
  pass(jitter.slice(split), sum / pixels, true);
}
