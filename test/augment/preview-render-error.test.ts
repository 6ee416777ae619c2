/** A sharp failure while `augment preview` draws a record is a PreviewError naming the record (sharp mocked). */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SharpOptions } from 'sharp';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { parseCrops } from '../../src/augment/config.js';
import { PreviewError, renderPreview } from '../../src/augment/preview.js';
import { photoJpeg } from '../../src/fixtures/images.js';
import { openStore } from '../../src/shards/store.js';
import { writeDataset } from '../helpers/dataset.js';

const mock = vi.hoisted(() => ({ failing: false }));

/** sharp, except that, while `mock.failing`, reading an image made from raw pixels fails. */
vi.mock('sharp', async (importOriginal) => {
  const actual = await importOriginal<typeof import('sharp')>();
  const real = actual.default;
  const failing = (input?: unknown, options?: SharpOptions) => {
    const image = real(input as Buffer, options);
    if (options?.raw && mock.failing)
      image.toBuffer = (() => Promise.reject(new Error('vips_image_new: out of memory'))) as never;
    return image;
  };
  return { ...actual, default: Object.assign(failing, real) };
});

const dir = await mkdtemp(join(tmpdir(), 'ws-preview-error-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('augment preview', () => {
  it('names the record whose drawing failed, with the cause', async () => {
    const store = await openStore(join(dir, 'ds'));
    const photos = await Promise.all([0, 1].map((i) => photoJpeg(i, { width: 96, height: 80 })));
    await writeDataset(store, { units: 1, perUnit: 2, image: (i) => photos[i]! });
    mock.failing = true;
    const err = (await renderPreview(store, { record: 1, augment: { crops: parseCrops('2x32') } })
      .catch((e: unknown) => e)
      .finally(() => (mock.failing = false))) as PreviewError;
    expect(err).toBeInstanceOf(PreviewError);
    expect(err).toMatchObject({ code: 'WS_ERR_PREVIEW', record: 1, reason: 'render_error' });
    expect(err.key).toMatch(/^000000-0000[01]$/);
    expect(err.message).toBe(`drawing record 1 (key ${err.key}) failed: vips_image_new: out of memory`);
    expect((err.cause as Error).message).toBe('vips_image_new: out of memory');
  });
});
