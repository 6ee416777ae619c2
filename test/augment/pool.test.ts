import { setTimeout as sleep } from 'node:timers/promises';
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
let pool: AugmentPool;
beforeAll(async () => {
  images = await Promise.all([1, 2, 3].map((i) => photoJpeg(i, { width: 40 + i * 8, height: 32 })));
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
  it('waits for the tasks in flight, then stops its threads', async () => {
    const own = new AugmentPool(config, { threads: 1 });
    expect(own.threads).toBe(1);
    const shared = slab(3);
    let settled = false;
    const inFlight = own
      .augment(
        images.map((image, slot) => ({
          image,
          at: { seed: 2, epoch: 0, record: slot },
          into: { crops: shared, slot },
        })),
      )
      .finally(() => (settled = true));
    await within(own.close(), 30_000);
    expect(settled).toBe(true);
    expect(own.threads).toBe(0);
    expect(await inFlight).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
    expect(crops(shared, 2)).toEqual(await reference(images[2]!, { seed: 2, epoch: 0, record: 2 }));
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
