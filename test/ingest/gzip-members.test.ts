/**
 * gzip bodies as browsers read them (src/ingest/gzip-members.ts): every member, each checked, bytes after the
 * last member ignored, a cut or damaged member an error; any chunking of the input gives the same result.
 */
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { gzipHeaderLength, GzipMembersDecoder } from '../../src/ingest/gzip-members.js';
import { prng } from '../../src/rng.js';

/** Random bytes (incompressible enough to span many inflate outputs). */
function noise(n: number, seed: number): Buffer {
  const next = prng(seed);
  return Buffer.from(Array.from({ length: n }, () => Math.floor(next() * 256)));
}

/** Decodes `body` fed in chunks of `size`, or the error's message. */
async function decode(body: Buffer, size: number): Promise<Buffer | string> {
  const chunks: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) chunks.push(body.subarray(i, i + size));
  const out: Buffer[] = [];
  try {
    for await (const data of Readable.from(chunks).pipe(new GzipMembersDecoder())) out.push(data as Buffer);
  } catch (err) {
    return (err as Error).message;
  }
  return Buffer.concat(out);
}

const SIZES = [1, 7, 1000, 1 << 20];
const image = noise(5000, 1);
const gz = gzipSync(image);

describe('GzipMembersDecoder', () => {
  it('ignores bytes after the last member that open no other (a newline, padding, junk), as browsers do', async () => {
    for (const extra of ['', '\n', '\r\n', '\0\0\0\0', 'junk after the body', '\x1f', '\x1f\x8c']) {
      for (const size of SIZES) {
        const got = await decode(Buffer.concat([gz, Buffer.from(extra, 'latin1')]), size);
        expect(Buffer.isBuffer(got) && got.equals(image), `${JSON.stringify(extra)} in chunks of ${size}`).toBe(true);
      }
    }
  });

  it('streams a large member through in any chunking, with its trailer split across chunks', async () => {
    const large = noise(300_000, 3);
    const body = Buffer.concat([gzipSync(large), Buffer.from('\n')]);
    for (const size of [999, 4096, 65_536, 1 << 20]) {
      const got = await decode(body, size);
      expect(Buffer.isBuffer(got) && got.equals(large), `chunks of ${size}`).toBe(true);
    }
  });

  it('reads every member of a multi-member body, each with a name, comment and extra field or none', async () => {
    const second = noise(3000, 2);
    const named = Buffer.from(gzipSync(second));
    // FNAME + FCOMMENT + FEXTRA set by hand: header, extra (2 + 3 bytes), name, comment, then the original rest.
    const flags = Buffer.from([0x1f, 0x8b, 8, 4 | 8 | 16, 0, 0, 0, 0, 0, 3]);
    const fields = Buffer.concat([Buffer.from([3, 0, 1, 2, 3]), Buffer.from('a.jpg\0a comment\0')]);
    const withFields = Buffer.concat([flags, fields, named.subarray(10)]);
    expect(gzipHeaderLength(withFields)).toBe(10 + fields.length);
    for (const size of SIZES) {
      const got = await decode(Buffer.concat([gz, withFields, gzipSync(Buffer.alloc(0)), Buffer.from('\n')]), size);
      expect(Buffer.isBuffer(got) && got.equals(Buffer.concat([image, second])), `chunks of ${size}`).toBe(true);
    }
  });

  it('refuses a body that is not gzip, a cut member, and a damaged checksum or length', async () => {
    const crc = Buffer.from(gz);
    crc[crc.length - 8]! ^= 1;
    const length = Buffer.from(gz);
    length[length.length - 1]! ^= 1;
    for (const size of SIZES) {
      expect(await decode(Buffer.from('not gzip at all'), size)).toMatch(/incorrect header check/);
      expect(await decode(gz.subarray(0, gz.length - 20), size)).toMatch(/unexpected end of file/);
      expect(await decode(gz.subarray(0, gz.length - 3), size)).toMatch(/unexpected end of file/);
      expect(await decode(gz.subarray(0, 6), size)).toMatch(/unexpected end of file/);
      expect(await decode(crc, size)).toMatch(/checksum mismatch/);
      expect(await decode(length, size)).toMatch(/checksum mismatch/);
    }
  });
});
