/**
 * A gzip body (RFC 1952) as browsers read it: members one after another, each checked (CRC-32 and length), and
 * bytes after the last member that do not open another one ignored. Servers append such bytes (a newline, a
 * padding block) to whole responses; Chromium's gzip stream skips them, while node:zlib's gunzip takes any
 * non-zero byte after a member for a new member and fails ("unexpected end of file"), losing a whole image.
 * `gzip -d` reads files the same way, warning of such bytes ("trailing garbage ignored") unless they are zeros:
 * `junk` says it would have warned.
 *
 * Each member's header is parsed here and its DEFLATE data inflated by node:zlib's raw inflater, which stops at
 * the data's end: its `bytesWritten` (the input it consumed) says where the member's trailer starts.
 *
 * Damage (a member cut short, a bad checksum, corrupt DEFLATE data) either destroys the stream (an HTTP body is
 * lost whole) or, with `onDamage: 'end'`, ends its output after every byte decoded before it, as `gzip -d`
 * writes out what it decoded before it reports the damage. For that, nothing decoded may be lost on the way:
 * the inflater is ended with Z_SYNC_FLUSH (a cut member gives all its output, then the missing trailer is the
 * error, not zlib's "unexpected end of file", which drops the output of the call that raised it), and what the
 * inflater holds when it fails is read out of it before the error is handled. One loss stays, node:zlib's:
 * corrupt DEFLATE data costs the output of the inflate call that meets it (at most its `chunkSize`, 16 KiB by
 * default), bytes that precede a detected fault and that no checksum can vouch for.
 */
import { Duplex } from 'node:stream';
import { constants, createInflateRaw, crc32, type InflateRaw } from 'node:zlib';

/** A member header larger than this (its optional name, comment and extra field) is refused. */
const MAX_HEADER_BYTES = 64 * 1024;

const FHCRC = 2,
  FEXTRA = 4,
  FNAME = 8,
  FCOMMENT = 16;

/**
 * The length of the member header at the start of `b`: a number, `0` when more bytes are needed, or an Error
 * when the bytes are not a gzip header (magic 1f 8b, method 8 deflate, no reserved flag).
 */
export function gzipHeaderLength(b: Buffer): number | Error {
  if (b.length < 10) return b.length >= 1 && b[0] !== 0x1f ? notGzip() : 0;
  if (b[0] !== 0x1f || b[1] !== 0x8b || b[2] !== 8 || (b[3]! & 0xe0) !== 0) return notGzip();
  const flags = b[3]!;
  let at = 10;
  if (flags & FEXTRA) {
    if (b.length < at + 2) return 0;
    at += 2 + b.readUInt16LE(at);
  }
  for (const field of [FNAME, FCOMMENT]) {
    if (!(flags & field)) continue;
    const end = b.indexOf(0, at);
    if (end < 0) return b.length > MAX_HEADER_BYTES ? new Error('gzip header too large') : 0;
    at = end + 1;
  }
  if (flags & FHCRC) at += 2;
  return b.length >= at ? at : 0;
}

/** Errors carry node:zlib's codes for the same faults, so callers tell them from a failed read (EIO). */
const zlibError = (message: string, code: 'Z_DATA_ERROR' | 'Z_BUF_ERROR') =>
  Object.assign(new Error(message), { code });
const NOT_GZIP = 'incorrect header check (not a gzip member)';
const notGzip = () => zlibError(NOT_GZIP, 'Z_DATA_ERROR');

export interface GzipMembersOptions {
  /**
   * What damage does (the module comment): `'error'` destroys the stream with it; `'end'` ends the output after
   * every byte decoded before it and keeps it in `damage`, for readers that keep those bytes (URL lists).
   * @default 'error'
   */
  onDamage?: 'error' | 'end';
  /**
   * Output bytes per inflate call (node:zlib's `chunkSize`): at most this much decoded output is lost when
   * corrupt DEFLATE data stops a member (the module comment). Smaller loses less and costs more calls.
   * @default 16384 (zlib.constants.Z_DEFAULT_CHUNK)
   */
  chunkSize?: number;
}

type State = 'header' | 'body' | 'trailer' | 'ignoring' | 'damaged';

/** Undoes the gzip coding of a body, member by member (see the module comment), with backpressure. */
export class GzipMembersDecoder extends Duplex {
  /** With `onDamage: 'end'`: why the output ended early (a Z_DATA_ERROR or Z_BUF_ERROR), else null. */
  damage: Error | null = null;
  /** Bytes after the last member were ignored and not all zeros: what `gzip -d` warns of as trailing garbage. */
  junk = false;
  /** With `onDamage: 'end'`: the input does not open with a gzip member header, so it is no gzip at all. */
  notGzip = false;
  /** Input bytes written so far. */
  bytesIn = 0;
  private readonly onDamage: 'error' | 'end';
  private readonly chunkSize: number;
  private state: State = 'header';
  /** Input not yet given to a member's inflater or parsed as a header or trailer. */
  private pending: Buffer = Buffer.alloc(0);
  private inflater: InflateRaw | null = null;
  /** Bytes given to the current inflater, and those of them it may not have consumed (the latest chunks). */
  private fed = 0;
  private feedTail: Buffer[] = [];
  private tailBytes = 0;
  private crc = 0;
  private size = 0;
  private members = 0;
  private ending = false;
  private resumeWrite: (() => void) | null = null;

  constructor(options: GzipMembersOptions = {}) {
    super();
    this.onDamage = options.onDamage ?? 'error';
    this.chunkSize = options.chunkSize ?? constants.Z_DEFAULT_CHUNK;
    if (!Number.isSafeInteger(this.chunkSize) || this.chunkSize < constants.Z_MIN_CHUNK)
      throw new RangeError(
        `chunkSize: expected an integer of at least ${constants.Z_MIN_CHUNK}, got ${options.chunkSize}`,
      );
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.bytesIn += chunk.length;
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    this.resumeWrite = () => callback();
    this.advance();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.ending = true;
    this.resumeWrite = () => callback();
    this.advance();
  }

  override _read(): void {
    this.inflater?.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.inflater?.destroy();
    callback(error);
  }

  /** Moves through the states as far as the input allows, then lets the next write come. */
  private advance(): void {
    for (;;) {
      if (this.state === 'ignoring' || this.state === 'damaged') this.discard();
      if (this.state === 'body') return this.feed();
      const step = this.state === 'header' ? this.header() : this.state === 'trailer' ? this.trailer() : 'wait';
      if (step instanceof Error) return this.fail(step);
      if (step === 'wait') break;
    }
    if (this.ending) return this.finish();
    this.release();
  }

  /** Drops input that is no member's; bytes after the last member that are not zeros are `junk`. */
  private discard(): void {
    if (this.state === 'ignoring' && !this.junk) this.junk = this.pending.some((b) => b !== 0);
    this.pending = Buffer.alloc(0);
  }

  /** Parses a member header: 'next' when the body starts, 'wait' for more input, or the error. */
  private header(): 'next' | 'wait' | Error {
    if (this.members > 0 && this.pending.length > 0 && this.pending[0] !== 0x1f) return this.ignore();
    if (this.members > 0 && this.pending.length > 1 && this.pending[1] !== 0x8b) return this.ignore();
    const length = gzipHeaderLength(this.pending);
    if (length instanceof Error) {
      if (this.members > 0) return this.ignore();
      this.notGzip = length.message === NOT_GZIP; // else a header too large: gzip, damaged
      return length;
    }
    if (length === 0) return 'wait';
    this.pending = this.pending.subarray(length);
    this.startMember();
    return 'next';
  }

  /** Bytes after a member that open no other member: ignored, as browsers ignore them. */
  private ignore(): 'next' {
    this.state = 'ignoring';
    return 'next';
  }

  /** Checks a member's trailer (CRC-32 and length of its data, mod 2^32). */
  private trailer(): 'next' | 'wait' | Error {
    if (this.pending.length < 8) return 'wait';
    const crc = this.pending.readUInt32LE(0),
      size = this.pending.readUInt32LE(4);
    if (crc !== this.crc >>> 0 || size !== this.size % 2 ** 32)
      return zlibError('gzip member checksum mismatch', 'Z_DATA_ERROR');
    this.pending = this.pending.subarray(8);
    this.members++;
    this.state = 'header';
    return 'next';
  }

  private startMember(): void {
    // Z_SYNC_FLUSH at the end: a cut member ends with all its output (the module comment).
    const inflater = createInflateRaw({ finishFlush: constants.Z_SYNC_FLUSH, chunkSize: this.chunkSize });
    [this.inflater, this.fed, this.feedTail, this.tailBytes] = [inflater, 0, [], 0];
    [this.crc, this.size, this.state] = [0, 0, 'body'];
    inflater.on('data', (data: Buffer) => this.output(inflater, data));
    inflater.once('end', () => this.memberEnded(inflater));
    inflater.once('error', (err) => {
      // Output the inflater decoded but still holds (we paused it) is readable until now; 'data' is not emitted.
      for (let data = inflater.read() as Buffer | null; data !== null; data = inflater.read() as Buffer | null)
        this.output(inflater, data);
      this.fail(err);
    });
  }

  private output(inflater: InflateRaw, data: Buffer): void {
    this.crc = crc32(data, this.crc);
    this.size += data.length;
    if (!this.push(data)) inflater.pause();
  }

  /** Gives the pending input to the member's inflater; the write is released when it drains. */
  private feed(): void {
    const inflater = this.inflater!;
    const chunk = this.pending;
    this.pending = Buffer.alloc(0);
    if (chunk.length > 0) {
      this.fed += chunk.length;
      this.feedTail.push(chunk);
      this.tailBytes += chunk.length;
      this.trimFeedTail(inflater.bytesWritten);
      // Released on drain only while this member is the current one: if its data ends first, memberEnded does.
      if (!inflater.write(chunk))
        return void inflater.once('drain', () => this.inflater === inflater && this.release());
    }
    if (this.ending) inflater.end();
    else this.release();
  }

  /** Drops the fed chunks the inflater has consumed whole: what stays may hold the member's trailer. */
  private trimFeedTail(consumed: number): void {
    while (this.feedTail.length > 1 && this.fed - this.tailBytes + this.feedTail[0]!.length <= consumed) {
      this.tailBytes -= this.feedTail.shift()!.length;
    }
  }

  /** The member's data ended: the input it did not consume is the trailer and what follows. */
  private memberEnded(inflater: InflateRaw): void {
    const tail = Buffer.concat(this.feedTail);
    const unconsumed = tail.subarray(tail.length - (this.fed - inflater.bytesWritten));
    this.pending = Buffer.concat([unconsumed, this.pending]);
    this.inflater = null;
    this.state = 'trailer';
    this.advance();
  }

  /** The input ended: whole when it ended after a member (a part of a header there is ignored too, as junk). */
  private finish(): void {
    if (this.state === 'damaged') return this.release();
    if (this.state === 'ignoring' || (this.state === 'header' && this.members > 0)) {
      if (this.pending.length > 0) this.junk = true;
      this.push(null);
      return this.release();
    }
    this.fail(zlibError('unexpected end of file', 'Z_BUF_ERROR'));
  }

  /** Damage: the stream is destroyed, or (`onDamage: 'end'`) its output ends here and the rest is discarded. */
  private fail(error: Error): void {
    if (this.onDamage === 'error') return void this.destroy(error);
    if (this.state === 'damaged') return;
    this.damage = error;
    this.state = 'damaged';
    this.inflater?.destroy();
    this.inflater = null;
    this.push(null);
    this.advance();
  }

  private release(): void {
    const resume = this.resumeWrite;
    this.resumeWrite = null;
    resume?.();
  }
}
