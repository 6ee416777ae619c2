/** Deterministic ImageRecords for shard tests (bytes are arbitrary, not real images). */
import { createHash } from 'node:crypto';
import type { ImageRecord } from '../../src/shards/schema.js';

export function makeRecord(i: number, imageBytes = 1000 + (i % 7) * 100): ImageRecord {
  const image = Buffer.alloc(imageBytes);
  for (let j = 0; j < image.length; j++) image[j] = (i * 31 + j * 7) & 0xff;
  return {
    key: `000000-${String(i).padStart(5, '0')}`,
    url: `https://example.com/img/${i}.jpg`,
    sha256: createHash('sha256').update(image).digest(),
    phash: (BigInt(i) * 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn,
    width: 100 + i,
    height: 50 + i,
    mime: 'image/jpeg',
    image,
    caption: i % 3 === 0 ? null : `caption ${i} ünïcode`,
    sourcePage: i % 2 === 0 ? null : `https://example.com/page/${i}`,
  };
}

/** A record as plain data (Buffers for byte fields) so `toEqual` compares values, not view types. */
export function plain(record: ImageRecord) {
  return { ...record, sha256: Buffer.from(record.sha256), image: Buffer.from(record.image) };
}
