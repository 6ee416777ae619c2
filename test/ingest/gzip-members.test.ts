/**
 * gzip bodies as browsers read them (src/ingest/gzip-members.ts): every member, each checked, bytes after the
 * last member ignored, a cut or damaged member an error; any chunking of the input gives the same result.
 */
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { constants, deflateRawSync, gzipSync, inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { gzipHeaderLength, GzipMembersDecoder, type GzipMembersOptions } from '../../src/ingest/gzip-members.js';
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

/** What `onDamage: 'end'` decodes from `body` fed in chunks of `size`: the output, `damage` and `junk`. */
async function keep(body: Buffer, size: number, slow = false) {
  const chunks: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) chunks.push(body.subarray(i, i + size));
  const decoder = new GzipMembersDecoder({ onDamage: 'end' } satisfies GzipMembersOptions);
  const out: Buffer[] = [];
  for await (const data of Readable.from(chunks).pipe(decoder)) {
    out.push(data as Buffer);
    if (slow) await sleep(0); // the inflater is paused and holds output when the damage comes
  }
  return { out: Buffer.concat(out), damage: decoder.damage?.message ?? null, junk: decoder.junk };
}

/** Text lines, as URL lists hold them: far more compressible than noise, so one inflate call yields much. */
const lines = (n: number, tag = 'a') =>
  Buffer.from(Array.from({ length: n }, (_, i) => `http://${tag}.test/${i}.jpg\n`).join(''));

describe("GzipMembersDecoder with onDamage: 'end' (gzip -d: what was decoded before damage is kept)", () => {
  const text = lines(200_000);
  const member = gzipSync(text);
  const secondMember = gzipSync(lines(50_000, 'b'));

  it('keeps every byte of a member whose trailer is cut or whose CRC-32 or length is wrong, then ends', async () => {
    const crc = Buffer.from(member);
    crc[crc.length - 8]! ^= 1;
    const length = Buffer.from(member);
    length[length.length - 1]! ^= 1;
    for (const [name, body, damage] of [
      ['trailer cut', member.subarray(0, member.length - 3), /unexpected end of file/],
      ['no trailer', member.subarray(0, member.length - 8), /unexpected end of file/],
      ['bad CRC', crc, /checksum mismatch/],
      ['bad length', length, /checksum mismatch/],
    ] as const) {
      for (const [size, slow] of [
        [1000, true],
        [65_536, false],
        [1 << 22, false],
      ] as const) {
        const got = await keep(body, size, slow);
        expect(got.out.equals(text), `${name}, chunks of ${size}, slow ${slow}: ${got.out.length}`).toBe(true);
        expect(got.damage).toMatch(damage);
      }
    }
  });

  it('keeps all a cut member decodes, as inflating its data with Z_SYNC_FLUSH does, after every whole member', async () => {
    const cutAt = secondMember.length >> 1;
    const decodable = inflateRawSync(secondMember.subarray(10, cutAt), { finishFlush: constants.Z_SYNC_FLUSH });
    expect(decodable.length).toBeGreaterThan(0);
    for (const size of [999, 65_536, 1 << 22]) {
      const got = await keep(Buffer.concat([member, secondMember.subarray(0, cutAt)]), size);
      expect(got.out.equals(Buffer.concat([text, decodable])), `chunks of ${size}`).toBe(true);
      expect(got.damage).toMatch(/unexpected end of file/);
    }
  });

  it('reads out what the paused inflater holds when corrupt DEFLATE data stops it: a slow reader gets as much', async () => {
    const raw = deflateRawSync(text);
    let at = raw.length >> 1;
    let bad = raw;
    for (; ; at++) {
      bad = Buffer.from(raw);
      bad[at]! ^= 0xff;
      try {
        inflateRawSync(bad);
      } catch {
        break; // a flip zlib detects (most flips only change the text, which the CRC catches at the end)
      }
    }
    const body = Buffer.concat([member.subarray(0, 10), bad]);
    for (const size of [1000, 65_536]) {
      const fast = await keep(body, size);
      const slow = await keep(body, size, true);
      expect(fast.damage).not.toBeNull();
      expect(slow.out.equals(fast.out), `chunks of ${size}: ${slow.out.length} of ${fast.out.length}`).toBe(true);
      expect(fast.out.length).toBeGreaterThan(text.length / 3);
    }
  });

  it('loses at most chunkSize bytes of output to corrupt DEFLATE data (node:zlib drops its failing call’s)', async () => {
    // Lines of varied length (less repetitive than lines()), so that zlib detects the damage early.
    const varied = Array.from({ length: 3000 }, (_, i) => `http://h/a/${i}/${'x'.repeat(i % 30)}\n`).join('');
    const raw = deflateRawSync(varied);
    const bad = Buffer.from(raw);
    const at = Math.floor(raw.length / 10);
    bad[at]! ^= 0xff;
    bad[at + 1]! ^= 0x55;
    const body = Buffer.concat([member.subarray(0, 10), bad]);
    const run = async (chunkSize?: number) => {
      const decoder = new GzipMembersDecoder({ onDamage: 'end', chunkSize });
      const out = Buffer.concat(await Readable.from([body]).pipe(decoder).toArray());
      expect(decoder.damage).not.toBeNull();
      return out;
    };
    // The most a decoder keeps: one whose calls each give out at most zlib's least chunk, 64 bytes. (Its last
    // bytes may be garbage: corrupt data decodes for a while before zlib detects it; no checksum vouches for them.)
    const most = await run(64);
    const small = await run(1024);
    expect(most.subarray(0, small.length).equals(small)).toBe(true);
    expect(most.length - small.length).toBeLessThan(1024);
    expect(most.length - (await run()).length).toBeGreaterThan(1024); // the default 16 KiB loses more
  });

  it('refuses a chunkSize zlib cannot use, naming the option', () => {
    for (const chunkSize of [0, 10, 1.5, Number.NaN])
      expect(() => new GzipMembersDecoder({ chunkSize }), String(chunkSize)).toThrow(/chunkSize: expected an integer/);
  });

  it('ignores bytes after the last member, and says they are junk unless all zeros (gzip warns of the rest)', async () => {
    for (const [extra, junk] of [
      ['', false],
      ['\0', false],
      ['\0\0\0\0', false],
      ['\n', true],
      ['garbage trailing bytes', true],
      ['\0\0x', true],
      ['\x1f', true],
      ['\x1f\x8b\x08', true], // a member header cut short
    ] as const) {
      for (const size of [7, 65_536]) {
        const got = await keep(Buffer.concat([gzipSync(image), Buffer.from(extra, 'latin1')]), size);
        expect(got, `${JSON.stringify(extra)} in chunks of ${size}`).toEqual({ out: image, damage: null, junk });
      }
    }
  });

  it('gives no output and the damage for a body that is not gzip, and keeps erroring by default', async () => {
    expect(await keep(Buffer.from('not gzip at all'), 7)).toEqual({
      out: Buffer.alloc(0),
      damage: 'incorrect header check (not a gzip member)',
      junk: false,
    });
    expect(await decode(member.subarray(0, member.length - 3), 65_536)).toBe('unexpected end of file');
  });
});
