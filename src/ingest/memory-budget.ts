/**
 * Decode memory, bounded: an estimate of what libvips holds while it decodes one image, made from the header
 * alone, and a byte semaphore that admits decodes only while the sum of their estimates fits a budget.
 *
 * The estimates follow how each decoder works, and were checked against peak RSS (bytes above an idle process,
 * 10000x10000 unless named; see the ingest README section on memory):
 * - baseline JPEG and non-interlaced PNG stream rows through the resize: a band of rows (JPEG 100 MP: 12 MB,
 *   8-bit PNG: 58 MB, 16-bit PNG: 120 MB, 16-bit PNG 40000x2500: 220 MB);
 * - a progressive JPEG keeps every DCT coefficient of the full image (2 bytes per sample, per plane at its
 *   chroma subsampling) whatever the shrink-on-load (4:2:0, 100 MP: 310 MB; 40000x2500: 305 MB);
 * - an interlaced (Adam7) PNG is decoded whole, at its full depth (8-bit RGB: 340 MB, 16-bit RGB: 660 MB);
 * - WebP decodes a whole frame, but libwebp scales while decoding (10000x8000 to 512 wide: 12 MB);
 * - GIF keeps an RGBA frame (6000x6000: 170 MB); HEIF/AVIF decode whole via YUV planes (8000x8000: 1.1 GB);
 * - TIFF may hold a whole image in one strip or tile, so it is charged as decoded whole.
 */

/** The header fields an estimate needs (a subset of sharp's `Metadata`). */
export interface ImageHeader {
  format: string;
  width: number;
  /** Height of one page (the first page is all a decode reads). */
  height: number;
  channels: number;
  /** libvips band format: uchar, ushort, float, ... @default "uchar" */
  depth?: string;
  /** Progressive JPEG, or interlaced (Adam7) PNG: sharp reports both here. */
  isProgressive?: boolean;
  /** JPEG only, e.g. "4:2:0", "4:4:4:4" (CMYK). */
  chromaSubsampling?: string;
}

/** Rows a streaming decode and resize hold at once; above the measured bands, so estimates err high. */
const STREAM_ROWS = 2560;
/** Margin on a whole-image decode for the decoder's own row buffers and libvips' copy. */
const WHOLE_MARGIN = 1.25;
/** What any decode holds besides its pixels: libvips' thread buffers, sharp's baton (measured: ~5 MB). */
const OVERHEAD = 8 * 1024 * 1024;

const SAMPLE_BYTES: Record<string, number> = {
  uchar: 1,
  char: 1,
  ushort: 2,
  short: 2,
  uint: 4,
  int: 4,
  float: 4,
  complex: 8,
  double: 8,
  dpcomplex: 16,
};

/**
 * Peak bytes libvips holds while decoding `header` and resizing it by `shrink` (input side / output side,
 * >= 1) into an 8-bit RGB output of `outPixels` pixels that is then re-encoded.
 */
export function estimateDecodeBytes(header: ImageHeader, shrink: number, outPixels: number): number {
  const { width: w, height: h } = header;
  const channels = Math.max(1, header.channels);
  const sample = SAMPLE_BYTES[header.depth ?? 'uchar'] ?? 8;
  const whole = w * h * channels * sample * WHOLE_MARGIN;
  const band = (width: number, height: number) => width * channels * sample * Math.min(height, STREAM_ROWS);
  const output = outPixels * 3 * 3; // raw RGB, the encoder's input copy, and the encoded image (at most as big)
  let decoder: number;
  switch (header.format) {
    case 'jpeg': {
      const s = jpegShrinkOnLoad(shrink);
      decoder = band(Math.ceil(w / s), Math.ceil(h / s));
      if (header.isProgressive) decoder += w * h * 2 * jpegPlanes(header.chromaSubsampling, channels) * WHOLE_MARGIN;
      break;
    }
    case 'png':
      decoder = header.isProgressive ? whole : band(w, h);
      break;
    case 'webp':
      decoder = Math.ceil(w / shrink) * Math.ceil(h / shrink) * 4 * WHOLE_MARGIN;
      break;
    case 'gif':
      decoder = w * h * 6;
      break;
    case 'heif':
    case 'avif':
      decoder = w * h * 20 * sample;
      break;
    default: // tiff, svg and anything else: charged as decoded whole, with alpha
      decoder = w * h * Math.max(4, channels) * sample * WHOLE_MARGIN;
  }
  return Math.ceil(OVERHEAD + decoder + output);
}

/**
 * The JPEG scale sharp asks libjpeg for (1, 2, 4 or 8). sharp picks the largest that leaves a shrink above
 * it (pipeline.cc); this is never larger, so the band estimate never comes out smaller than the truth.
 */
export function jpegShrinkOnLoad(shrink: number): number {
  for (const s of [8, 4, 2]) if (shrink >= 2 * s) return s;
  return 1;
}

/** Coefficient planes relative to one full-resolution plane, from J:a:b[:alpha] subsampling notation. */
function jpegPlanes(subsampling: string | undefined, channels: number): number {
  const parts = subsampling?.split(':').map(Number);
  if (!parts || parts.length < 3 || parts.some((n) => !Number.isFinite(n))) return channels;
  const [j, a, b, k] = parts as [number, number, number, number | undefined];
  const chroma = (a / j) * (b === 0 ? 0.5 : 1);
  return 1 + 2 * chroma + (k === undefined ? 0 : 1);
}

/**
 * A weighted FIFO semaphore over bytes. The head of the queue waits until its bytes fit, and later requests
 * wait behind it, so a large decode is never starved by a stream of small ones. `inUse` never exceeds
 * `capacity`; `peak` records the most ever held, which tests and benchmarks read.
 */
export class ByteSemaphore {
  readonly capacity: number;
  #inUse = 0;
  #peak = 0;
  readonly #waiting: Array<{ bytes: number; grant: () => void }> = [];

  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity <= 0)
      throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
  }

  get inUse(): number {
    return this.#inUse;
  }

  get peak(): number {
    return this.#peak;
  }

  /** Waits until `bytes` fit, takes them and returns their release (calling it twice releases once). */
  async acquire(bytes: number): Promise<() => void> {
    const n = Math.ceil(bytes);
    if (!(n >= 0) || n > this.capacity)
      throw new RangeError(`cannot admit ${bytes} bytes into a budget of ${this.capacity}`);
    if (this.#waiting.length > 0 || this.#inUse + n > this.capacity) {
      await new Promise<void>((grant) => this.#waiting.push({ bytes: n, grant }));
    } else {
      this.#take(n);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inUse -= n;
      this.#drain();
    };
  }

  /** Runs `fn` holding `bytes`. */
  async use<T>(bytes: number, fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(bytes);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  #take(n: number): void {
    this.#inUse += n;
    this.#peak = Math.max(this.#peak, this.#inUse);
  }

  #drain(): void {
    while (this.#waiting.length > 0 && this.#inUse + this.#waiting[0]!.bytes <= this.capacity) {
      const next = this.#waiting.shift()!;
      this.#take(next.bytes);
      next.grant();
    }
  }
}
