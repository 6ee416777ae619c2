// A shard damaged in its Arrow metadata (footer, schema, a record batch's message) is an InvalidShardError, for
// every single-byte damage there: before the bounds, one flipped footer byte made apache-arrow build 16,711,680
// child fields and run out of memory (inspect --verify, embed and training alike).
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidShardError } from '../../src/errors.js';
import { checkArrowFile } from '../../src/shards/arrow-bounds.js';
import { ShardReader } from '../../src/shards/reader.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { ShardWriter } from '../../src/shards/writer.js';
import { makeRecord } from '../helpers/records.js';

let dir: string;
let store: Store;
let clean: Buffer;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-arrow-bounds-'));
  store = await openStore(dir);
  const writer = new ShardWriter({ maxBatchRows: 4 });
  for (let i = 0; i < 10; i++) await writer.add(makeRecord(i, 64));
  await writer.finish(store, 'clean.arrow');
  clean = await readFile(join(dir, 'clean.arrow'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Every record of the shard at `key` through the reader the stream uses, or the error it ends in. */
async function readAll(key: string): Promise<number | unknown> {
  try {
    const reader = await ShardReader.open(store, key);
    let rows = 0;
    for await (const batch of reader.batches()) rows += batch.numRows;
    return rows;
  } catch (err) {
    return err;
  }
}

describe('Arrow metadata bounds', () => {
  it('read a clean shard whole', async () => {
    expect(await readAll('clean.arrow')).toBe(10);
    expect(() => checkArrowFile(clean, 'clean.arrow')).not.toThrow();
  });

  it('turn the footer flip that ran out of memory into an InvalidShardError naming it', async () => {
    // The tester's damage: the first column's children vector length, 0 -> 0xff0000 (found by offset here).
    const footerLength = clean.readInt32LE(clean.length - 10);
    const footerStart = clean.length - 10 - footerLength;
    const found: string[] = [];
    for (let at = footerStart; at < clean.length - 10; at++) {
      const bytes = Buffer.from(clean);
      bytes[at]! ^= 0xff;
      try {
        checkArrowFile(bytes, 'x');
      } catch (err) {
        if (/child fields in column \d/.test(String(err))) found.push(String(err));
      }
    }
    expect(found.length).toBeGreaterThan(0);
    expect(found[0]).toMatch(/^InvalidShardError: x: corrupt Arrow footer: it claims \d+ child fields in column \d/);
  });

  it('give every one-byte damage of the footer and of a batch message a result or an InvalidShardError', async () => {
    const footerLength = clean.readInt32LE(clean.length - 10);
    const metadata = clean.readInt32LE(12); // the first batch's message, after the schema message (8 + 4 + ...)
    const regions: Array<[number, number]> = [
      [clean.length - 10 - footerLength, clean.length],
      [0, Math.min(clean.length, 8 + 8 + metadata + 400)],
    ];
    const outcomes: Record<string, number> = {};
    for (const [from, to] of regions) {
      for (let at = from; at < to; at++) {
        const bytes = Buffer.from(clean);
        bytes[at]! ^= 0xff;
        await writeFile(join(dir, 'damaged.arrow'), bytes);
        const result = await readAll('damaged.arrow');
        const kind = typeof result === 'number' ? 'read' : result instanceof InvalidShardError ? 'refused' : 'other';
        if (kind === 'other') throw new Error(`byte ${at}: ${String(result)}`);
        outcomes[kind] = (outcomes[kind] ?? 0) + 1;
      }
    }
    expect(outcomes.refused).toBeGreaterThan(100);
  }, 120_000);
});
