// What a plain JavaScript caller of the augment stage may pass, and the lifecycle calls a user makes: each
// bad value a ConfigError naming it (not a TypeError from deep inside, or an uncaught one that kills the
// process), close() ending a loop in progress, and a loader's buffers reused when records are skipped.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { augmentConfig } from '../../src/augment/config.js';
import { MultiCropLoader, type LoaderOptions } from '../../src/augment/loader.js';
import { renderPreview } from '../../src/augment/preview.js';
import { DatasetStream, START } from '../../src/augment/stream.js';
import { ConfigError } from '../../src/errors.js';
import { photoJpeg } from '../../src/fixtures/images.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { writeDataset } from '../helpers/dataset.js';

let dir: string;
let store: Store;
/** 60 records of which only record 37 decodes. */
let mostlyBroken: Store;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-hostile-callers-'));
  store = await openStore(join(dir, 'ds'));
  const images = await Promise.all(Array.from({ length: 12 }, (_, i) => photoJpeg(i, { width: 48, height: 40 })));
  await writeDataset(store, { units: 2, perUnit: 6, batchRows: 3, image: (i) => images[i]! });
  mostlyBroken = await openStore(join(dir, 'broken'));
  const good = images[0]!;
  await writeDataset(mostlyBroken, {
    units: 2,
    perUnit: 30,
    image: (i) => (i === 37 ? good : new Uint8Array([0xff, 0xd8, 0xff, i & 0xff])),
  });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const options: LoaderOptions = { batchSize: 2, seed: 1, threads: 1, augment: { crops: '1x16@0.3-1,1x8@0.1-0.3' } };
const loader = (o: object) => () => new MultiCropLoader(store, { ...options, ...o } as LoaderOptions);

describe('options a plain JavaScript caller may get wrong', () => {
  it.each([
    ['a signal that is not an AbortSignal', { signal: 'stop' }, /^signal must be an AbortSignal, got "stop"$/],
    ['a signal of a plain object', { signal: {} }, /^signal must be an AbortSignal, got an object$/],
    ['follow as text', { follow: 'yes' }, /^follow must be true or false, got "yes"$/],
    ['onWait not a function', { onWait: 5 }, /^onWait must be a function, got 5$/],
    ['onSkip not a function', { onSkip: 'log' }, /^onSkip must be a function, got "log"$/],
    ['augment null', { augment: null }, /^augment options must be an object .* got null$/],
    ['augment as a crop spec', { augment: '2x32' }, /^augment options must be an object .* got string$/],
    ['a misspelt augment option', { augment: { flip: 0 } }, /^unknown augment option "flip": the options are crops, /],
    ['a NaN seed', { seed: NaN }, /^seed must be an integer from 0 to 4294967295, got NaN$/],
    ['a batch size as text', { batchSize: '4' }, /^batchSize must be an integer from 1 to 65536, got "4"$/],
  ])('refuses %s with a ConfigError before any thread starts', (_what, o, message) => {
    // The signal was a TypeError thrown inside a wait, uncaught: it ended the process. augment: null was a
    // TypeError, a string or a misspelt key was taken silently (the defaults used). NaN read "got null".
    expect(loader(o)).toThrow(ConfigError);
    expect(loader(o)).toThrow(message);
  });

  it('refuses a store that is not a Store, naming openStore', () => {
    const url = join(dir, 'ds');
    for (const make of [
      () => new MultiCropLoader(url as unknown as Store, options),
      () => new DatasetStream(url as unknown as Store),
    ]) {
      expect(make).toThrow(ConfigError);
      expect(make).toThrow(`must be a Store from openStore(url), got "${url}": open it with \`await openStore(`);
    }
    expect(() => new MultiCropLoader(null as unknown as Store, options)).toThrow(/got null$/);
  });

  it('refuses options that are not an object', () => {
    expect(() => new MultiCropLoader(store, undefined as unknown as LoaderOptions)).toThrow(ConfigError);
    expect(() => new DatasetStream(store, null as unknown as object)).toThrow(
      /^stream options must be an object, got null$/,
    );
    expect(() => augmentConfig(null as unknown as object)).toThrow(ConfigError);
  });

  it('keeps START, the cursor of every loader opened without one, from being changed through a loader', () => {
    const l = new MultiCropLoader(store, options);
    const cursor = l.cursor();
    void l.close();
    expect(cursor).toBe(START);
    // A caller editing the cursor it was handed changed where every later loader started.
    expect(() => Object.assign(cursor, { epoch: 3 })).toThrow(TypeError);
    expect(START.epoch).toBe(0);
  });

  it('refuses a preview record or epoch that is not an integer >= 0, rather than showing another record', async () => {
    for (const [o, message] of [
      [{ record: -1 }, 'record must be an integer >= 0, got -1'],
      [{ record: NaN }, 'record must be an integer >= 0, got NaN'],
      [{ record: 2.5 }, 'record must be an integer >= 0, got 2.5'],
      [{ epoch: -1 }, 'epoch must be an integer >= 0, got -1'],
    ] as const) {
      const shown = renderPreview(store, o);
      await expect(shown).rejects.toThrow(ConfigError);
      await expect(shown).rejects.toThrow(message);
    }
  });
});

describe('close() during a loop', () => {
  it('ends a pending next() as done, with the threads stopped', async () => {
    const l = new MultiCropLoader(store, options);
    const it = l[Symbol.asyncIterator]();
    const pending = it.next();
    await l.close();
    // It rejected with the pool's PoolClosedError, a class the library does not export.
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(l.threads).toBe(0);
  });

  it('yields no batch after close(), even one whose samples were already made', async () => {
    const l = new MultiCropLoader(store, options);
    const it = l[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    const cursor = l.cursor();
    await l.close();
    // It went on yielding the batches already augmented, moving the cursor past what the caller had saved.
    expect(await it.next()).toEqual({ done: true, value: undefined });
    expect(l.cursor()).toBe(cursor);
  });
});

it('reuses its buffers when most records are skipped, and says once that it skips them', async () => {
  const warnings: string[] = [];
  const l = new MultiCropLoader(mostlyBroken, { ...options, batchSize: 2, onSkip: (m) => warnings.push(m) });
  let n = 0;
  for await (const batch of l) {
    batch.release();
    if (++n === 5) break;
  }
  expect(l.stats.skipped.decode_error).toBeGreaterThan(200);
  expect(warnings).toEqual([expect.stringMatching(/^warning: skipping records that give no sample \(decode_error\)/)]);
  // A slab was allocated per 2 records dispatched and never returned when none of its samples made a batch:
  // 280 or so here, where a few serve the whole run.
  expect(l.stats.buffers).toBeLessThanOrEqual(8);
});

it('says why a rank has no record when the dataset has fewer shards than ranks', async () => {
  const read = async () => {
    for await (const item of new DatasetStream(store, { rank: 2, worldSize: 3 })) return item;
  };
  // It said only "(rank 2 of 3)" after a dataset that plainly holds records.
  await expect(read()).rejects.toThrow(
    /\(rank 2 of 3: shards are dealt to ranks whole, and the 2 shards went to ranks below 2, so this rank has none; use a worldSize of at most 2, or more units\)$/,
  );
});
