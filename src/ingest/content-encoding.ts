/**
 * HTTP Content-Encoding (RFC 9110 section 8.4): the codings a response lists, undone last-applied first, as
 * streaming node:zlib decoders. `deflate` is the zlib format by the standard, but servers also send raw
 * DEFLATE, which browsers accept: the first two bytes tell them apart (RFC 1950 header check). gzip is read
 * member by member, ignoring bytes after the last member as browsers do (gzip-members.ts).
 */
import { Duplex, type Transform } from 'node:stream';
import { createBrotliDecompress, createInflate, createInflateRaw } from 'node:zlib';
import { GzipMembersDecoder } from './gzip-members.js';

/** What we can undo, sent as Accept-Encoding. */
export const ACCEPT_ENCODING = 'gzip, deflate, br';

/** More stacked codings than this is refused: each stage costs a decoder (curl and urllib3 cap at 5). */
export const MAX_CODINGS = 4;

/** Memory of one zlib inflate stage: 32 KiB window, ~7 KiB state, 16 KiB output buffer, rounded up. */
export const ZLIB_STAGE_BYTES = 64 * 1024;
/** The largest brotli window a stream may declare (RFC 7932; large windows are not enabled). */
export const MAX_BROTLI_WINDOW = 16 * 1024 * 1024;
/** The most decoder memory one response can cost: one brotli layer (a second is refused) and zlib stages. */
export const DECODER_ALLOWANCE = MAX_BROTLI_WINDOW + MAX_CODINGS * ZLIB_STAGE_BYTES;

export type Coding = 'gzip' | 'deflate' | 'br';
const CODINGS: Record<string, Coding> = { gzip: 'gzip', 'x-gzip': 'gzip', deflate: 'deflate', br: 'br' };

/**
 * The codings to undo, in decoding order (the reverse of the header's), `[]` for none or identity, or null
 * when one is unknown, there are too many, or brotli is stacked on brotli (never useful, and each layer may
 * claim a 16 MiB window).
 */
export function decodingOrder(header: string | null): Coding[] | null {
  if (!header) return [];
  const listed = header
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '' && t !== 'identity');
  if (listed.length > MAX_CODINGS) return null;
  const codings = listed.map((t) => CODINGS[t]);
  if (codings.some((c) => c === undefined) || codings.filter((c) => c === 'br').length > 1) return null;
  return (codings as Coding[]).reverse();
}

/** A fresh decoder for one coding. */
export function decoderFor(coding: Coding): Transform | Duplex {
  if (coding === 'gzip') return new GzipMembersDecoder();
  if (coding === 'br') return createBrotliDecompress();
  return new DeflateDecoder();
}

/**
 * The window a brotli stream declares in its first bits (RFC 7932 section 9.1, WBITS, read LSB first), in bytes;
 * null for the large-window signature, which the decoder refuses anyway.
 */
export function brotliWindow(firstByte: number): number | null {
  if ((firstByte & 1) === 0) return 1 << 16;
  const n = (firstByte >> 1) & 7;
  if (n !== 0) return 1 << (17 + n);
  const m = (firstByte >> 4) & 7;
  if (m === 1) return null;
  return 1 << (m !== 0 ? 8 + m : 17);
}

/** Bytes to reserve for a decoding stage, from the first byte of its input. */
export function stageBytes(coding: Coding, firstByte: number): number {
  return coding === 'br' ? (brotliWindow(firstByte) ?? 0) + ZLIB_STAGE_BYTES : ZLIB_STAGE_BYTES;
}

/** True when the two bytes open a zlib stream (RFC 1950: CM 8, window <= 32 KiB, FCHECK multiple of 31). */
export function isZlibHeader(b0: number, b1: number): boolean {
  return (b0 & 0x0f) === 8 && b0 >> 4 <= 7 && ((b0 << 8) | b1) % 31 === 0;
}

/** Inflates zlib-wrapped or raw DEFLATE, chosen from the first two bytes, passing backpressure both ways. */
class DeflateDecoder extends Duplex {
  private inner: Transform | null = null;
  private head: Buffer = Buffer.alloc(0);

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (!this.inner) {
      this.head = Buffer.concat([this.head, chunk]);
      if (this.head.length < 2) return callback();
      chunk = this.head;
      this.start();
    }
    if (this.inner!.write(chunk)) callback();
    else this.inner!.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.inner) {
      this.start();
      if (this.head.length > 0) this.inner!.write(this.head);
    }
    this.inner!.end();
    callback();
  }

  override _read(): void {
    this.inner?.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.inner?.destroy();
    callback(error);
  }

  private start(): void {
    const raw = !(this.head.length >= 2 && isZlibHeader(this.head[0]!, this.head[1]!));
    const inner = raw ? createInflateRaw() : createInflate();
    inner.on('data', (data: Buffer) => {
      if (!this.push(data)) inner.pause();
    });
    inner.once('end', () => this.push(null));
    inner.once('error', (err) => this.destroy(err));
    this.inner = inner;
  }
}
