/**
 * A gzip body (RFC 1952) as browsers read it: members one after another, each checked (CRC-32 and length), and
 * bytes after the last member that do not open another one ignored. Servers append such bytes (a newline, a
 * padding block) to whole responses; Chromium's gzip stream skips them, while node:zlib's gunzip takes any
 * non-zero byte after a member for a new member and fails ("unexpected end of file"), losing a whole image.
 *
 * Each member's header is parsed here and its DEFLATE data inflated by node:zlib's raw inflater, which stops at
 * the data's end: its `bytesWritten` (the input it consumed) says where the member's trailer starts.
 */
import { Duplex } from 'node:stream';
import { createInflateRaw, crc32, type InflateRaw } from 'node:zlib';

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

const notGzip = () => new Error('incorrect header check (not a gzip member)');

type State = 'header' | 'body' | 'trailer' | 'ignoring';

/** Undoes the gzip coding of a body, member by member (see the module comment), with backpressure. */
export class GzipMembersDecoder extends Duplex {
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

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
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
      if (this.state === 'ignoring') this.pending = Buffer.alloc(0);
      if (this.state === 'body') return this.feed();
      const step = this.state === 'header' ? this.header() : this.state === 'trailer' ? this.trailer() : 'wait';
      if (step instanceof Error) return void this.destroy(step);
      if (step === 'wait') break;
    }
    if (this.ending) return this.finish();
    this.release();
  }

  /** Parses a member header: 'next' when the body starts, 'wait' for more input, or the error. */
  private header(): 'next' | 'wait' | Error {
    if (this.members > 0 && this.pending.length > 0 && this.pending[0] !== 0x1f) return this.ignore();
    if (this.members > 0 && this.pending.length > 1 && this.pending[1] !== 0x8b) return this.ignore();
    const length = gzipHeaderLength(this.pending);
    if (length instanceof Error) return this.members > 0 ? this.ignore() : length;
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
    if (crc !== this.crc >>> 0 || size !== this.size % 2 ** 32) return new Error('gzip member checksum mismatch');
    this.pending = this.pending.subarray(8);
    this.members++;
    this.state = 'header';
    return 'next';
  }

  private startMember(): void {
    const inflater = createInflateRaw();
    [this.inflater, this.fed, this.feedTail, this.tailBytes] = [inflater, 0, [], 0];
    [this.crc, this.size, this.state] = [0, 0, 'body'];
    inflater.on('data', (data: Buffer) => {
      this.crc = crc32(data, this.crc);
      this.size += data.length;
      if (!this.push(data)) inflater.pause();
    });
    inflater.once('end', () => this.memberEnded(inflater));
    inflater.once('error', (err) => this.destroy(err));
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

  /** The input ended: whole when it ended after a member (a part of a header there is ignored too). */
  private finish(): void {
    if (this.state === 'ignoring' || (this.state === 'header' && this.members > 0)) {
      this.push(null);
      return this.release();
    }
    this.destroy(new Error('unexpected end of file'));
  }

  private release(): void {
    const resume = this.resumeWrite;
    this.resumeWrite = null;
    resume?.();
  }
}
