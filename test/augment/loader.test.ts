import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { augmentConfig, parseCrops } from '../../src/augment/config.js';
import { cropFloats } from '../../src/crop-tensor.js';
import {
  LoaderClosedError,
  MAX_BATCH_BYTES,
  MultiCropLoader,
  type ByteCrop,
  type LoaderOptions,
  type MultiCropBatch,
} from '../../src/augment/loader.js';
import { decodeRgb } from '../../src/augment/decode.js';
import { multiCrop } from '../../src/augment/multicrop.js';
import { CursorError, DatasetStream } from '../../src/augment/stream.js';
import { ConfigError, NoDataError } from '../../src/errors.js';
import { photoJpeg } from '../../src/fixtures/images.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { writeDataset } from '../helpers/dataset.js';
import { runCli } from '../helpers/cli.js';
import { faultyStore } from '../helpers/faulty-store.js';
import sharp from 'sharp';
import { expectBytesMatchFloats } from './byte-crops.js';

let dir: string;
let store: Store;
const CORRUPT = 7;
const SWAV = '2x224@0.14-1,6x96@0.05-0.14';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-loader-'));
  store = await openStore(join(dir, 'ds'));
  const images = await Promise.all(
    Array.from({ length: 36 }, (_, i) => photoJpeg(i, { width: 120 + (i % 5) * 10, height: 90 })),
  );
  images[CORRUPT] = images[CORRUPT]!.subarray(0, 300); // truncated JPEG
  await writeDataset(store, { units: 3, perUnit: 12, batchRows: 4, image: (i) => images[i]! });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const options: LoaderOptions = {
  batchSize: 5,
  seed: 3,
  epochs: 2,
  threads: 2,
  windowShards: 2,
  groupBatches: 2,
  augment: { crops: parseCrops('1x32@0.3-1,2x16@0.05-0.3') },
};

async function batches(
  over: Partial<LoaderOptions> = {},
  limit = Infinity,
): Promise<{ out: MultiCropBatch[]; loader: MultiCropLoader }> {
  const loader = new MultiCropLoader(store, { ...options, ...over });
  const out: MultiCropBatch[] = [];
  for await (const batch of loader) {
    out.push(batch);
    if (out.length >= limit) break;
  }
  return { out, loader };
}

/**
 * The default options' whole run (2 epochs), made once: the tests below that only need it as a reference read it
 * instead of each iterating a loader of their own (a loader's two pool threads cost ~1 CPU s to start). Nothing
 * mutates its batches, which are never released. The test of determinism runs a second loader of its own.
 */
let fullRun: Promise<{ out: MultiCropBatch[]; loader: MultiCropLoader }> | undefined;
const full = () => (fullRun ??= batches());

const digest = (b: MultiCropBatch) => ({
  keys: b.keys,
  sums: b.crops.map((c) => cropFloats(c).reduce((a, v) => a + v, 0)),
});

describe('MultiCropLoader', () => {
  it('yields normalised NHWC crop batches, skipping a corrupt image with a counted reason', async () => {
    const { out, loader } = await full();
    expect(out[0]!.crops.map((c) => [c.size, c.data.length])).toEqual([
      [32, 5 * 32 * 32 * 3],
      [16, 5 * 16 * 16 * 3],
      [16, 5 * 16 * 16 * 3],
    ]);
    expect(loader.stats.samples).toBe(2 * 35);
    expect(loader.stats.skipped).toEqual({ decode_error: 2 });
    const keys = out.flatMap((b) => b.keys);
    expect(keys.filter((k) => k === '000000-00007')).toHaveLength(0);
    expect(out[0]!.crops.every((c) => c.dtype === undefined)).toBe(true); // floats unless asked otherwise
    const values = cropFloats(out[0]!.crops[0]!);
    const mean = values.reduce((a, v) => a + v, 0) / values.length;
    expect(Math.abs(mean)).toBeLessThan(1.5); // normalised around 0, not raw [0, 255] or [0, 1]
    expect(values.every(Number.isFinite)).toBe(true);
    expect(loader.threads).toBe(0); // the pool is stopped when the iteration ends
  });

  it('is deterministic for a seed and resumes from a batch cursor exactly', async () => {
    const { out: a } = await full();
    const { out: b } = await batches(); // a second loader of its own: same seed, same batches
    expect(a.map(digest)).toEqual(b.map(digest));
    const { out: other } = await batches({ seed: 4 });
    expect(other.map(digest)).not.toEqual(a.map(digest));
    for (const k of [1, 7, 9]) {
      const { out: resumed } = await batches({ cursor: JSON.parse(JSON.stringify(a[k - 1]!.cursor)) });
      expect(resumed.map(digest), `after batch ${k}`).toEqual(a.slice(k).map(digest));
    }
  });

  it('gives the same batches whatever the records in flight (tasks of one to four records, partial last tasks)', async () => {
    const { out } = await full();
    for (const inflight of [1, 3, 6]) {
      const { out: other } = await batches({ inflight });
      expect(other.map(digest), `inflight ${inflight}`).toEqual(out.map(digest));
    }
  });

  it('puts every sample at its place in the batch, across skipped records and batch boundaries', async () => {
    const { out } = await full();
    const config = augmentConfig(options.augment);
    const expected: Float32Array[][] = [];
    for await (const { record, epoch, position } of new DatasetStream(store, options)) {
      const decoded = await decodeRgb(record.image);
      if (!('error' in decoded))
        expected.push(
          multiCrop(decoded.rgb, decoded.width, decoded.height, config, {
            seed: options.seed!,
            epoch,
            record: position,
          }),
        );
    }
    const got = out.flatMap((b) =>
      b.keys.map((_, i) =>
        b.crops.map(({ data }, c) => data.subarray(i * expected[0]![c]!.length, (i + 1) * expected[0]![c]!.length)),
      ),
    );
    expect(got).toHaveLength(expected.length);
    got.forEach((crops, i) =>
      crops.forEach((crop, c) => expect(crop, `sample ${i} crop ${c}`).toEqual(expected[i]![c])),
    );
  });

  it('reuses released batch buffers without changing a single sample', async () => {
    const { out: kept, loader: keeping } = await full();
    const loader = new MultiCropLoader(store, options);
    const copies: Array<{ keys: string[]; crops: Float32Array[] }> = [];
    for await (const batch of loader) {
      copies.push({ keys: batch.keys, crops: batch.crops.map((c) => cropFloats(c).slice()) });
      batch.release();
      batch.release(); // a second release is ignored, not a second spare
    }
    expect(copies.map((b) => b.keys)).toEqual(kept.map((b) => b.keys));
    copies.forEach((b, i) =>
      b.crops.forEach((data, c) => expect(data, `batch ${i} crop ${c}`).toEqual(kept[i]!.crops[c]!.data)),
    );
    const records = keeping.stats.samples + Object.values(keeping.stats.skipped).reduce((a, b) => a + b, 0);
    expect(keeping.stats.buffers).toBe(Math.ceil(records / options.batchSize)); // unreleased: a slab per batch's worth of records
    expect(loader.stats.buffers).toBeLessThan(keeping.stats.buffers / 2);
  });

  it("with cropDtype 'uint8' yields the float batches' samples as bytes before normalisation, mean and std attached", async () => {
    const { out: floats } = await full();
    const config = augmentConfig(options.augment);
    // Released as they are read, so later batches reuse byte slabs; the corrupt record moves samples a slot.
    const loader = new MultiCropLoader(store, { ...options, cropDtype: 'uint8' });
    expect(loader.cropDtype).toBe('uint8'); // what a trainer reads to stage bytes before the first batch
    const bytes: Array<{ keys: string[]; crops: ByteCrop[] }> = [];
    for await (const batch of loader) {
      const crops = batch.crops.map((c) => {
        if (c.dtype !== 'uint8') throw new Error(`a ${c.dtype ?? 'float32'} crop from a uint8 loader`);
        // A full batch is its slab's buffer, a byte a value (not a float's four)
        expect(c.data.buffer).toBeInstanceOf(SharedArrayBuffer);
        expect(c.data.buffer.byteLength).toBe(options.batchSize * c.size * c.size * 3);
        return { ...c, data: c.data.slice() };
      });
      bytes.push({ keys: batch.keys, crops });
      batch.release();
    }
    expect(bytes.map((b) => b.keys)).toEqual(floats.map((b) => b.keys));
    expect(loader.stats.skipped).toEqual({ decode_error: 2 });
    expect(loader.stats.buffers).toBeLessThan(bytes.length / 2);
    let near = 0,
      values = 0;
    bytes.forEach((b, i) =>
      b.crops.forEach((crop, c) => {
        const float = floats[i]!.crops[c]!;
        expect(crop.size).toBe(float.size);
        expect([crop.mean, crop.std]).toEqual([config.mean, config.std]);
        near += expectBytesMatchFloats(cropFloats(float), crop.data, crop, `batch ${i} crop ${c}`);
        values += crop.data.length;
      }),
    );
    expect(values).toBe(70 * (32 * 32 + 2 * 16 * 16) * 3);
    expect(near).toBeLessThan(values / 1000);
  });

  it('refuses a cropDtype other than float32 or uint8, before starting any thread', () => {
    for (const bad of ['float64', 'UINT8', 'u8', '', 8, null, {}])
      expect(() => new MultiCropLoader(store, { ...options, cropDtype: bad as never }), String(bad)).toThrow(
        ConfigError,
      );
    expect(() => new MultiCropLoader(store, { ...options, cropDtype: 'float16' as never })).toThrow(
      "cropDtype must be 'float32' or 'uint8', got 'float16'",
    );
  });

  it('stops its workers when the consumer breaks out early', async () => {
    const { out, loader } = await batches({}, 2);
    expect(out).toHaveLength(2);
    expect(loader.threads).toBe(0);
  });
});

describe('MultiCropLoader: no progress, and stops', () => {
  /** Consumes `loader` to its end, failing the test if that takes longer than `ms`. */
  async function drain(loader: MultiCropLoader, ms: number): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>(
      (_, reject) => (timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms)),
    );
    const run = (async () => {
      let n = 0;
      for await (const batch of loader) n += batch.keys.length;
      return n;
    })();
    try {
      return await Promise.race([run, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  it('refuses records of which none decodes, naming the dataset and the reasons', async () => {
    const junk = await openStore(join(dir, 'junk'));
    await writeDataset(junk, { units: 2, perUnit: 6 }); // arbitrary bytes, not images
    const loader = new MultiCropLoader(junk, { ...options, epochs: undefined });
    const run = drain(loader, 20_000);
    await expect(run).rejects.toThrow(NoDataError);
    await expect(run).rejects.toThrow(
      /holds 2 committed units with 12 records; a whole epoch of 12 records gave no sample \(decode_error 12\)/,
    );
    expect(loader.threads).toBe(0);
  });

  it('keeps going when one image in many decodes, wherever it falls in two epochs', async () => {
    // 1 good record of 12: between two of its draws lie up to 22 failures, more than an epoch's worth.
    const sparse = await openStore(join(dir, 'sparse'));
    const good = await photoJpeg(0, { width: 64, height: 48 });
    await writeDataset(sparse, { units: 2, perUnit: 6, image: (i) => (i === 5 ? good : Buffer.alloc(200, i)) });
    expect(await drain(new MultiCropLoader(sparse, { ...options, batchSize: 2, epochs: 6 }), 20_000)).toBe(6);
  });

  it('following, waits for new units instead of decoding the same bad records again', async () => {
    const junk = await openStore(join(dir, 'junk-follow'));
    await writeDataset(junk, { units: 1, perUnit: 6 });
    const said: string[] = [];
    const controller = new AbortController();
    const loader = new MultiCropLoader(junk, {
      ...options,
      epochs: undefined,
      follow: true,
      pollMs: 20,
      onWait: (m) => said.push(m),
      signal: controller.signal,
    });
    const run = drain(loader, 20_000);
    run.catch(() => {});
    for (let i = 0; i < 400 && said.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(
      /^following: no sample could be made: a whole epoch of 6 records gave no sample \(decode_error 6\); waiting for new units/,
    );
    const attempts = loader.stats.skipped.decode_error!;
    await new Promise((r) => setTimeout(r, 300));
    expect(loader.stats.skipped.decode_error).toBe(attempts); // waiting, not spinning through the same records
    controller.abort();
    await expect(run).rejects.toThrow(/aborted/);
    expect(loader.threads).toBe(0);
  });

  it('ends on the signal while a read stalls, and stops its workers', async () => {
    let reads = 0;
    const stalled = faultyStore(store, (method) => (method === 'getRange' && ++reads > 4 ? 'stall' : undefined));
    const controller = new AbortController();
    const loader = new MultiCropLoader(stalled, { ...options, signal: controller.signal });
    const run = drain(loader, 10_000);
    run.catch(() => {});
    for (let i = 0; i < 400 && reads <= 4; i++) await new Promise((r) => setTimeout(r, 25));
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    controller.abort();
    await expect(run).rejects.toThrow(/aborted/);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(loader.threads).toBe(0);
  });
});

describe('MultiCropLoader: single-pass', () => {
  // Each of these hung before: the second loop dispatched to the closed pool and waited forever.
  const reused = /single-pass; to go on from where it stopped, open a new one with `cursor: loader.cursor\(\)`/;

  it('refuses a second loop after a break, at once, and a new loader at cursor() goes on', async () => {
    const { out, loader } = await batches({}, 2);
    await expect(loop(loader)).rejects.toThrow(LoaderClosedError);
    await expect(loop(loader)).rejects.toThrow(/was already iterated/);
    await expect(loop(loader)).rejects.toThrow(reused);
    const next = await batches({ cursor: loader.cursor() }, 1);
    const whole = await full(); // the uninterrupted loader's third batch
    expect(digest(next.out[0]!)).toEqual(digest(whole.out[2]!));
    expect(out).toHaveLength(2);
  });

  it('refuses a loop after close(), and a second loop alongside the first', async () => {
    const closed = new MultiCropLoader(store, options);
    await closed.close();
    await expect(loop(closed)).rejects.toThrow(/this MultiCropLoader is closed/);
    const shared = new MultiCropLoader(store, options);
    const [first, second] = await Promise.allSettled([loop(shared, 2), loop(shared, 2)]);
    expect(first).toMatchObject({ status: 'fulfilled', value: 2 });
    expect(second).toMatchObject({ status: 'rejected', reason: expect.any(LoaderClosedError) });
    expect(shared.threads).toBe(0);
  });

  /** Batches taken from `loader` (at most `limit`), breaking out early as a user would. */
  async function loop(loader: MultiCropLoader, limit = 1): Promise<number> {
    let n = 0;
    for await (const batch of loader) {
      batch.release();
      if (++n >= limit) break;
    }
    return n;
  }
});

describe('MultiCropLoader: inflight', () => {
  it.each([0, -1, 2.5, Number.NaN, 2 ** 21])('refuses inflight %s with a ConfigError naming its range', (inflight) => {
    expect(() => new MultiCropLoader(store, { ...options, inflight })).toThrow(ConfigError);
    expect(() => new MultiCropLoader(store, { ...options, inflight })).toThrow(
      /^inflight must be an integer from 1 to 1048576, got /,
    );
  });

  it('takes inflight 1 (below a pool task of 4 records)', async () => {
    const { out } = await batches({ inflight: 1 }, 2);
    expect(out.map((b) => b.keys.length)).toEqual([5, 5]);
  });
});

// Stopping waited for every record queued: a break after the first batch of 63 MP PNGs took 8.5 s, an abort 26 s.
describe('MultiCropLoader: stopping does not wait for the records queued', () => {
  let slowStore: Store;
  beforeAll(async () => {
    // PNGs of 16 MP, a few hundred ms each to decode: 256 records in flight were ~25 s of work to wait for.
    const png = await sharp({ create: { width: 4000, height: 4000, channels: 3, background: '#808080' } })
      .png({ compressionLevel: 1 })
      .toBuffer();
    slowStore = await openStore(join(dir, 'slow'));
    await writeDataset(slowStore, { units: 1, perUnit: 4, batchRows: 2, image: () => png });
  });
  const slowOptions: LoaderOptions = { batchSize: 2, seed: 1, threads: 1, inflight: 256, augment: { crops: '1x16' } };

  // Stopping takes 0.05-0.35 s here (the decodes under way); the bound is generous for a loaded machine, far
  // below the 250 records still queued.
  it('leaves the loop soon after a break, with its threads stopped', async () => {
    const loader = new MultiCropLoader(slowStore, slowOptions);
    let broke = 0;
    for await (const batch of loader) {
      expect(batch.keys).toHaveLength(2);
      broke = performance.now();
      break;
    }
    expect(performance.now() - broke).toBeLessThan(5000);
    expect(loader.threads).toBe(0);
  });

  it('ends on the signal while samples are being decoded, with its threads stopped', async () => {
    const controller = new AbortController();
    const loader = new MultiCropLoader(slowStore, { ...slowOptions, signal: controller.signal });
    let aborted = 0;
    const run = (async () => {
      for await (const batch of loader) {
        batch.release();
        if (!aborted) {
          aborted = performance.now();
          setTimeout(() => controller.abort(new Error('stop now')), 50);
        }
      }
    })();
    await expect(run).rejects.toThrow('stop now');
    expect(performance.now() - aborted).toBeLessThan(5000);
    expect(loader.threads).toBe(0);
  });
});

describe('MultiCropLoader: batch buffers', () => {
  // A batch of 65536 1024 px crops (768 GiB) failed at the first batch with an untyped RangeError.
  it('refuses a batch whose crop buffers exceed MAX_BATCH_BYTES, naming batch, crops and what fits', () => {
    const huge = () => new MultiCropLoader(store, { batchSize: 65536, threads: 1, augment: { crops: '1x1024' } });
    expect(huge).toThrow(ConfigError);
    expect(huge).toThrow(
      "batch 65536 of crops 1x1024 as float32 needs 768 GiB of crop buffers, more than the 4 GiB a batch may take: batch 341 fits (1365 with cropDtype 'uint8')",
    );
    const bytes = () =>
      new MultiCropLoader(store, { batchSize: 9199, threads: 1, cropDtype: 'uint8', augment: { crops: SWAV } });
    expect(bytes).toThrow(/^batch 9199 of crops 2x224,6x96 as uint8 needs 4 GiB .*: batch 9198 fits$/);
    expect(MAX_BATCH_BYTES).toBe(4 * 2 ** 30);
  });

  it('takes a batch right at the limit (SwAV crops, 2299 float samples), allocating nothing until iterated', async () => {
    const loader = new MultiCropLoader(store, { batchSize: 2299, threads: 1, augment: { crops: SWAV } });
    expect(loader.stats.buffers).toBe(0);
    await loader.close();
  });
});

describe('MultiCropLoader: resume cursors', () => {
  // A cursor taken with seed 5 and resumed with seed 6 repeated and skipped records without a word.
  it('refuses a cursor taken with another seed, before starting a thread', async () => {
    const { out } = await batches({ seed: 5 }, 2);
    const cursor = JSON.parse(JSON.stringify(out[1]!.cursor)) as MultiCropBatch['cursor'];
    expect(cursor.order).toMatchObject({ seed: 5 });
    expect(() => new MultiCropLoader(store, { ...options, seed: 6, cursor })).toThrow(CursorError);
    expect(() => new MultiCropLoader(store, { ...options, seed: 6, cursor })).toThrow(
      /^the stream cursor was taken with seed 5, but this stream has seed 6/,
    );
    const { order: _order, ...old } = cursor; // as the previous version wrote them: taken as they are
    const [resumed, whole] = [await batches({ seed: 5, cursor: old }, 1), await batches({ seed: 5 }, 3)];
    expect(digest(resumed.out[0]!)).toEqual(digest(whole.out[2]!));
  });

  it('refuses a cursor past the end of its epoch at the first batch', async () => {
    const run = batches({ cursor: { epoch: 0, group: 999, offset: 0, position: 0, units: null } }, 1);
    await expect(run).rejects.toThrow(/^the stream cursor's group 999 is past the end of epoch 0/);
  });
});

describe('wildstream augment preview', () => {
  it('writes a PNG of the original and its crops, and refuses a bad crop spec', async () => {
    const out = join(dir, 'crops.png');
    const ok = await runCli([
      'augment',
      'preview',
      join(dir, 'ds'),
      '--out',
      out,
      '--record',
      '2',
      '--crops',
      '2x64@0.14-1,3x32@0.05-0.14',
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ event: 'preview', out });
    const meta = await sharp(out).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBeGreaterThanOrEqual(800); // readable: every crop enlarged and labelled
    const bad = await runCli(['augment', 'preview', join(dir, 'ds'), '--out', out, '--crops', '2x224@0.9-0.1']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/crop scale/);
  });
});
