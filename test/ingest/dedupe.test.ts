// Near and exact duplicates through the real pipeline; precision and recall on a labelled set.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DedupeIndex } from '../../src/ingest/dedupe.js';
import { grey32, hamming } from '../../src/ingest/phash.js';
import { prng } from '../../src/fixtures/images.js';
import { runIngest } from '../../src/ingest/local.js';
import { listUnits } from '../../src/shards/dataset.js';
import { ShardReader } from '../../src/shards/reader.js';
import { openStore } from '../../src/shards/store.js';
import { InvalidShardError } from '../../src/errors.js';
import { writeDataset } from '../helpers/dataset.js';
import { startFixture, type Fixture } from '../helpers/fixture-server.js';
import { VARIANTS, variant, type Variant } from '../helpers/variants.js';

let fixture: Fixture;
let dir: string;
beforeAll(async () => {
  fixture = await startFixture([
    [
      /^\/near\/(\d+)\/(\w+)$/,
      async (_q, res, m) => {
        const { body, type } = await variant(Number(m[1]), m[2] as Variant);
        res.writeHead(200, { 'content-type': type }).end(body);
      },
    ],
  ]);
  dir = await mkdtemp(join(tmpdir(), 'ws-dedupe-'));
});
afterAll(async () => {
  await fixture?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('dedupe', () => {
  it('drops exact and near copies, keeps distinct images; reports precision and recall', async () => {
    const distinct = Array.from({ length: 40 }, (_, i) => i + 100);
    const originals = distinct.slice(0, 8);
    const urls = [
      ...distinct.map((n) => `${fixture.base}/img/${n}.jpg`),
      ...originals.map((n) => `${fixture.base}/img/${n}.jpg?copy=1`), // exact copies
      ...originals.flatMap((n) => VARIANTS.map((v) => `${fixture.base}/near/${n}/${v}`)),
    ];
    const copies = urls.length - distinct.length;
    await writeFile(join(dir, 'list.txt'), urls.join('\n'));
    const out = join(dir, 'ds');
    const summary = await runIngest({
      lists: [join(dir, 'list.txt')],
      out,
      fetch: { allowAddresses: ['127.0.0.1'] },
      concurrency: 1, // originals come first in the list, so they are the copies kept
      unitSize: 1000,
    });
    expect(existsSync(join(out, '.staging')), 'a finished job leaves no staging folder').toBe(false);
    const store = await openStore(out);
    const kept = new Set<string>();
    for (const unit of await listUnits(store)) {
      for await (const r of (await ShardReader.open(store, unit.shard)).records())
        kept.add(new URL(r.url).pathname + new URL(r.url).search);
    }
    const droppedCopies = copies - [...kept].filter((u) => u.includes('near') || u.includes('copy')).length;
    const droppedDistinct = distinct.filter((n) => !kept.has(`/img/${n}.jpg`)).length;
    const recall = droppedCopies / copies;
    const precision = droppedCopies / (droppedCopies + droppedDistinct);
    console.log(
      `dedupe: ${copies} copies, ${droppedCopies} dropped (recall ${recall.toFixed(3)}); ${droppedDistinct} of ${distinct.length} distinct dropped (precision ${precision.toFixed(3)})`,
    );
    expect(summary.duplicates).toBe(droppedCopies + droppedDistinct);
    expect(droppedDistinct).toBe(0);
    expect(recall).toBeGreaterThanOrEqual(0.95); // default radius 8: some 4% crops (up to 10 bits) survive
  });

  it('names a committed shard damaged at its committed size, and how to redo its unit', async () => {
    const store = await openStore(join(dir, 'damaged'));
    await writeDataset(store, { units: 2, perUnit: 4 });
    const units = await listUnits(store);
    expect((await DedupeIndex.fromDataset(store, units, 8)).size).toBe(8);
    // Bytes changed in place (a disk or a copy gone wrong): inspect sees the right size, the reader does not.
    const path = join(dir, 'damaged', units[1]!.shard);
    const bytes = await readFile(path);
    bytes.fill(0xff, bytes.length - 210, bytes.length - 10);
    await writeFile(path, bytes);
    const err = await DedupeIndex.fromDataset(store, units, 8).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidShardError);
    expect((err as Error).message).toMatch(
      /shards\/000001\.arrow.*; delete units\/000001\.json and rerun the same command to redo unit 1$/,
    );
  });

  it('finds near neighbours through the band index exactly as a linear scan does', () => {
    let seed = 7n;
    const next = () => (seed = (seed * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn);
    const hashes = Array.from({ length: 3000 }, next);
    const index = new DedupeIndex(6);
    const kept: bigint[] = [];
    for (const [i, h] of hashes.entries()) {
      // Every third hash is a perturbed copy of an earlier one, within 0..8 bits.
      const flips = i % 9;
      const q =
        i % 3 === 0 && i > 0
          ? [...Array(flips)].reduce((acc: bigint, _, k) => acc ^ (1n << BigInt((k * 7 + i) % 64)), hashes[i - 1]!)
          : h;
      const linear = kept.some((k) => hamming(k, q) <= 6);
      const sha = Buffer.alloc(32);
      sha.writeBigUInt64LE(q);
      sha.writeUInt32LE(i, 8);
      const verdict = index.checkAndAdd(sha, q);
      expect(verdict === 'near', `hash ${i}`).toBe(linear);
      if (!verdict) kept.push(q);
    }
  });
});

describe('pHash grey image', () => {
  it('is the area-averaged luma of 32 x 32 cells, whatever the size (also below 32 px) and channel count', () => {
    const rand = prng(12);
    for (const [width, height, channels] of [
      [512, 384, 3],
      [37, 33, 3],
      [20, 45, 4],
      [31, 1, 3],
      [600, 7, 4],
    ] as const) {
      const pixels = Uint8Array.from({ length: width * height * channels }, () => Math.floor(rand() * 256));
      // the definition, pixel by pixel: cell = floor(i * 32 / length) on each axis
      const sum = new Float64Array(1024),
        count = new Float64Array(1024);
      for (let y = 0; y < height; y++)
        for (let x = 0; x < width; x++) {
          const cell = Math.floor((y * 32) / height) * 32 + Math.floor((x * 32) / width),
            p = (y * width + x) * channels;
          sum[cell]! += 0.299 * pixels[p]! + 0.587 * pixels[p + 1]! + 0.114 * pixels[p + 2]!;
          count[cell]! += 1;
        }
      const ours = grey32(pixels, width, height, channels);
      for (let c = 0; c < 1024; c++)
        expect(ours[c]!, `${width}x${height} cell ${c}`).toBeCloseTo(count[c] ? sum[c]! / count[c]! : 0, 9);
    }
  });
});
