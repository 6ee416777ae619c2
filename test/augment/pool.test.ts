import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { augmentConfig, cropList } from '../../src/augment/config.js';
import { decodeRgb } from '../../src/augment/decode.js';
import { multiCrop, type DrawSeed } from '../../src/augment/multicrop.js';
import { AugmentPool, PoolClosedError } from '../../src/augment/pool.js';
import type { SampleSlot } from '../../src/augment/worker.js';
import { ConfigError } from '../../src/errors.js';
import { photoJpeg } from '../../src/fixtures/images.js';

const config = augmentConfig({ crops: '1x16@0.3-1,1x8@0.1-0.3' });
const lengths = cropList(config).map(({ size }) => size * size * 3);

/** Shared crop buffers for `slots` samples, as the loader allocates them. */
const slab = (slots: number) => lengths.map((n) => new SharedArrayBuffer(slots * n * 4));
const crops = (shared: SharedArrayBuffer[], slot: number) =>
  shared.map((buffer, c) => Array.from(new Float32Array(buffer, slot * lengths[c]! * 4, lengths[c]!)));

/** The crops the main thread computes for an image and a draw seed: what a worker must write. */
async function reference(image: Uint8Array, at: DrawSeed): Promise<number[][]> {
  const decoded = await decodeRgb(image);
  if ('error' in decoded) throw new Error(decoded.error);
  return multiCrop(decoded.rgb, decoded.width, decoded.height, config, at).map((c) => Array.from(c));
}

/** Rejects if `p` takes longer than `ms`: a hang shows as this error rather than as the test's timeout. */
const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`still pending after ${ms} ms`)))]);

let images: Uint8Array[];
/** A PNG of 16 MP: a few hundred ms to decode, the slow sample of the close() tests. */
let slow: Uint8Array;
let pool: AugmentPool;
beforeAll(async () => {
  images = await Promise.all([1, 2, 3].map((i) => photoJpeg(i, { width: 40 + i * 8, height: 32 })));
  slow = await sharp({ create: { width: 4000, height: 4000, channels: 3, background: '#808080' } })
    .png({ compressionLevel: 1 })
    .toBuffer();
  pool = new AugmentPool(config, { threads: 2 });
});
afterAll(async () => {
  await pool.close();
});

describe('AugmentPool', () => {
  it('returns one result per sample in sample order, writing each sample at its slot', async () => {
    const shared = slab(4);
    const into = (slot: number): SampleSlot => ({ crops: shared, slot });
    const at = (record: number): DrawSeed => ({ seed: 5, epoch: 1, record });
    const samples = [
      { image: images[0]!, at: at(10), into: into(3) },
      { image: new Uint8Array([0xff, 0xd8, 0xff, 0, 1, 2]), at: at(11), into: into(2) },
      { image: images[1]!, at: at(12), into: into(0) },
      { image: images[2]!, at: at(13), into: into(1) },
    ];
    const results = await within(pool.augment(samples), 30_000);
    expect(results).toEqual([{ ok: true }, { error: 'decode_error' }, { ok: true }, { ok: true }]);
    expect(crops(shared, 3)).toEqual(await reference(images[0]!, at(10)));
    expect(crops(shared, 0)).toEqual(await reference(images[1]!, at(12)));
    expect(crops(shared, 1)).toEqual(await reference(images[2]!, at(13)));
    expect(
      crops(shared, 2)
        .flat()
        .every((v) => v === 0),
    ).toBe(true); // the bad sample's slot is left alone
  });

  it('keeps the order of results across concurrent tasks on every thread', async () => {
    const shared = slab(12);
    const tasks = Array.from({ length: 6 }, (_, t) =>
      pool.augment(
        [0, 1].map((j) => ({
          image: images[(t + j) % 3]!,
          at: { seed: 1, epoch: 0, record: t * 2 + j },
          into: { crops: shared, slot: t * 2 + j },
        })),
      ),
    );
    const results = await within(Promise.all(tasks), 60_000);
    expect(results.flat()).toEqual(Array.from({ length: 12 }, () => ({ ok: true })));
    for (const slot of [0, 5, 11]) {
      const t = Math.floor(slot / 2);
      const image = images[(t + (slot % 2)) % 3]!;
      expect(crops(shared, slot), `slot ${slot}`).toEqual(await reference(image, { seed: 1, epoch: 0, record: slot }));
    }
  });

  it("copies an image that is a view of an ordinary buffer: the caller's buffer stays whole", async () => {
    const whole = new Uint8Array(images[0]!.length + 8);
    whole.set(images[0]!, 4);
    const view = whole.subarray(4, 4 + images[0]!.length);
    const results = await pool.augment([
      { image: view, at: { seed: 0, epoch: 0, record: 0 }, into: { crops: slab(1), slot: 0 } },
    ]);
    expect(results).toEqual([{ ok: true }]);
    expect(whole.byteLength).toBe(images[0]!.length + 8);
    expect(Buffer.from(view).equals(Buffer.from(images[0]!))).toBe(true);
  });

  it('rejects a task whose worker throws, instead of hanging, and goes on serving later tasks', async () => {
    const tooSmall = slab(1);
    const bad = pool.augment([
      { image: images[0]!, at: { seed: 0, epoch: 0, record: 0 }, into: { crops: tooSmall, slot: 5 } },
    ]);
    await expect(within(bad, 30_000)).rejects.toThrow(RangeError);
    const shared = slab(1);
    const good = pool.augment([
      { image: images[1]!, at: { seed: 0, epoch: 0, record: 1 }, into: { crops: shared, slot: 0 } },
    ]);
    expect(await within(good, 30_000)).toEqual([{ ok: true }]);
  });

  it('refuses a thread count out of range, and a crop dtype it does not write', () => {
    expect(() => new AugmentPool(config, { threads: 0 })).toThrow(ConfigError);
    expect(() => new AugmentPool(config, { threads: 1.5 })).toThrow(/augment threads must be 1-256, got 1.5/);
    expect(() => new AugmentPool(config, { threads: 1, cropDtype: 'int8' as never })).toThrow(
      "cropDtype must be 'float32' or 'uint8', got 'int8'",
    );
  });
});

describe('AugmentPool.close', () => {
  // close() waited for every task queued (up to `inflight` records, 26 s of 63 MP PNGs) before stopping.
  it('drops the tasks not yet sent, stops a running one at the sample it is on, then stops its threads', async () => {
    const own = new AugmentPool(config, { threads: 1 });
    expect(own.threads).toBe(1);
    const shared = slab(8);
    const at = (record: number): DrawSeed => ({ seed: 2, epoch: 0, record });
    const sample = (image: Uint8Array, slot: number) => ({ image, at: at(slot), into: { crops: shared, slot } });
    expect(await within(own.augment([sample(images[0]!, 0)]), 30_000)).toEqual([{ ok: true }]); // the worker is up
    shared.forEach((buffer) => new Float32Array(buffer).fill(0));
    // A thread runs two tasks at once: one of a slow image and two more, one of a slow image; four wait.
    const running = [
      own.augment([sample(slow, 0), sample(images[1]!, 1), sample(images[2]!, 2)]),
      own.augment([sample(slow, 3)]),
    ];
    const waiting = [4, 5, 6, 7].map((slot) => own.augment([sample(images[slot % 3]!, slot)]));
    const all = [...running, ...waiting];
    all.forEach((p) => p.catch(() => {}));
    await sleep(30);
    const t0 = performance.now();
    await within(own.close(), 30_000);
    const closing = performance.now() - t0;
    expect(own.threads).toBe(0);
    for (const p of all) await expect(p).rejects.toBeInstanceOf(PoolClosedError);
    for (const slot of [1, 2, 4, 5, 6, 7])
      expect(
        crops(shared, slot)
          .flat()
          .every((v) => v === 0),
        `slot ${slot}`,
      ).toBe(true);
    // At most the slow decodes under way (about 0.3 s each here) and no crop: far below the 8 samples queued.
    expect(closing).toBeLessThan(5000);
  });

  it('keeps the results of a task that finished before close()', async () => {
    const own = new AugmentPool(config, { threads: 1 });
    const shared = slab(3);
    const done = await within(
      own.augment(
        images.map((image, slot) => ({
          image,
          at: { seed: 2, epoch: 0, record: slot },
          into: { crops: shared, slot },
        })),
      ),
      30_000,
    );
    await within(own.close(), 10_000);
    expect(done).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
    expect(crops(shared, 2)).toEqual(await reference(images[2]!, { seed: 2, epoch: 0, record: 2 }));
    expect(own.threads).toBe(0);
  });

  it('ends promptly when idle, and after a task that failed', async () => {
    const own = new AugmentPool(config, { threads: 1 });
    await expect(
      own.augment([{ image: images[0]!, at: { seed: 0, epoch: 0, record: 0 }, into: { crops: slab(1), slot: 9 } }]),
    ).rejects.toThrow();
    await within(own.close(), 10_000);
    const idle = new AugmentPool(config, { threads: 1 });
    await within(idle.close(), 10_000);
  });

  it('two close() calls at once stop every thread and start none after', async () => {
    const own = new AugmentPool(config, { threads: 2 });
    await within(Promise.all([own.close(), own.close()]), 10_000);
    // A second piscina.destroy() beside the first made piscina take the workers' exits for crashes and start
    // replacements: the loader's close() and its loop's own close() met that way (1 thread left after both).
    await new Promise((r) => setTimeout(r, 300));
    expect(own.threads).toBe(0);
  });

  it('refuses tasks once closed and starts no thread for them', async () => {
    const own = new AugmentPool(config, { threads: 1 });
    await within(own.close(), 10_000);
    const late = own.augment([
      { image: images[0]!, at: { seed: 0, epoch: 0, record: 0 }, into: { crops: slab(1), slot: 0 } },
    ]);
    await expect(late).rejects.toBeInstanceOf(PoolClosedError);
    expect(own.threads).toBe(0);
  });
});
