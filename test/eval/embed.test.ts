import { cp, mkdir, mkdtemp, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type { GraphModel } from '@tensorflow/tfjs-converter';
import { tableFromIPC } from 'apache-arrow';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { embed, NAMED_FAILURES, writeEmbeddings, type Embeddings } from '../../src/eval/embed.js';
import { evalPixels } from '../../src/eval/images.js';
import { patternJpeg, photoJpeg } from '../../src/fixtures/images.js';
import { ShardReader } from '../../src/shards/reader.js';
import { listUnits } from '../../src/shards/dataset.js';
import { openStore } from '../../src/shards/store.js';
import { startBackend } from '../../src/train/backend.js';
import type { Backbone, BackboneMetadata } from '../../src/train/model-folder.js';
import { writePhotoDataset } from '../helpers/dataset.js';

let dir: string;
const path = (...p: string[]) => join(dir, ...p);

const META: BackboneMetadata = {
  model: 'channel-means',
  step: 0,
  featureDim: 3,
  inputSize: 16,
  mean: [0.5, 0.4, 0.3],
  std: [0.2, 0.25, 0.3],
};

/** A stand-in backbone whose features are each image's per-channel mean; it records the shape of every batch. */
function channelMeans(): Backbone & { batches: number[][] } {
  const batches: number[][] = [];
  return {
    model: null as unknown as GraphModel,
    metadata: META,
    batches,
    embed: (images) => {
      batches.push(images.shape);
      return tf.mean(images, [1, 2]) as tf.Tensor2D;
    },
  };
}

/** What the features of `bytes` must be: the channel means of the eval transform's pixels. */
async function expected(bytes: Uint8Array, size = META.inputSize): Promise<number[]> {
  const pixels = await evalPixels(bytes, size, META.mean, META.std);
  if ('error' in pixels) throw new Error(pixels.error);
  const sums = [0, 0, 0];
  pixels.forEach((v, i) => (sums[i % 3]! += v));
  return sums.map((s) => s / (size * size));
}

/** Images of the folder by key: five that decode, one that does not, and a file that is not an image. */
const files: Record<string, () => Promise<Buffer>> = {
  'cat/1.jpg': () => photoJpeg(1, { width: 40, height: 30 }),
  'cat/2.png': () =>
    sharp(Buffer.alloc(24 * 24 * 3, 200), { raw: { width: 24, height: 24, channels: 3 } })
      .png()
      .toBuffer(),
  'dog/3.jpg': () => patternJpeg(3, { width: 32, height: 48 }),
  'dog/4.webp': async () =>
    sharp(await photoJpeg(4, { width: 50, height: 50 }))
      .webp()
      .toBuffer(),
  'top.jpg': () => photoJpeg(5, { width: 20, height: 20 }),
  'dog/broken.jpg': async () => Buffer.from('not a jpeg'),
  'dog/notes.txt': async () => Buffer.from('ignored'),
};
const bytes: Record<string, Buffer> = {};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-embed-'));
  for (const [key, make] of Object.entries(files)) {
    bytes[key] = await make();
    await mkdir(path('folder', key, '..'), { recursive: true });
    await writeFile(path('folder', key), bytes[key]!);
  }
  await writePhotoDataset(await openStore(path('data')), { units: 2, perUnit: 3, width: 30, height: 20 });
  await startBackend('cpu');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('embed', () => {
  it('embeds a folder in key order with class-folder labels, counting images that do not decode', async () => {
    const backbone = channelMeans();
    const e = await embed(backbone, path('folder'), { batch: 2 });
    expect(e.keys).toEqual(['cat/1.jpg', 'cat/2.png', 'dog/3.jpg', 'dog/4.webp', 'top.jpg']);
    expect(e.labels).toEqual(['cat', 'cat', 'dog', 'dog', '']);
    expect(e.failed).toBe(1);
    // Batches of two and a last partial one, at the backbone's input size.
    expect(backbone.batches).toEqual([
      [2, 16, 16, 3],
      [2, 16, 16, 3],
      [1, 16, 16, 3],
    ]);
    for (const [i, key] of e.keys.entries()) {
      const want = await expected(bytes[key]!);
      expect(
        Array.from(e.features[i]!).map((v, c) => Math.abs(v - want[c]!)),
        key,
      ).toEqual([expect.closeTo(0, 5), expect.closeTo(0, 5), expect.closeTo(0, 5)]);
    }
    // The plain grey PNG has equal channels before normalisation: (200/255 - mean) / std per channel.
    expect(e.features[1]![0]).toBeCloseTo((200 / 255 - 0.5) / 0.2, 4);
  });

  it('gives the same features whatever the batch size, and takes the input size asked for', async () => {
    const one = await embed(channelMeans(), path('folder'), { batch: 1 });
    const all = await embed(channelMeans(), path('folder'), { batch: 32 });
    expect(all.keys).toEqual(one.keys);
    all.features.forEach((f, i) => expect(Array.from(f)).toEqual(Array.from(one.features[i]!)));

    const small = channelMeans();
    const e = await embed(small, path('folder'), { size: 8 });
    expect(small.batches).toEqual([[5, 8, 8, 3]]);
    const want = await expected(bytes['dog/3.jpg']!, 8);
    expect(e.features[2]![1]).toBeCloseTo(want[1]!, 5);
  });

  it('embeds the committed units of a dataset in unit order, without labels', async () => {
    const store = await openStore(path('data'));
    const records: Array<{ key: string; image: Uint8Array }> = [];
    for (const unit of await listUnits(store)) {
      for await (const r of (await ShardReader.open(store, unit.shard, { size: unit.bytes })).records())
        records.push(r);
    }
    const e = await embed(channelMeans(), path('data'), { batch: 4 });
    expect(e.keys).toEqual(records.map((r) => r.key));
    expect(e.keys).toHaveLength(6);
    expect(e.labels).toEqual(['', '', '', '', '', '']);
    expect(e.failed).toBe(0);
    const want = await expected(records[5]!.image);
    expect(e.features[5]![2]).toBeCloseTo(want[2]!, 5);
  });

  it('writes embeddings as an Arrow IPC file of key and fixed-size float32 lists that reads back the same', async () => {
    const e = await embed(channelMeans(), path('folder'));
    const url = await writeEmbeddings(path('out', 'emb.arrow'), e);
    expect(url).toMatch(/^file:\/\/.*\/out\/emb\.arrow$/);
    const table = tableFromIPC(await readFile(path('out', 'emb.arrow')));
    expect(table.numRows).toBe(5);
    expect(table.schema.fields.map((f) => [f.name, String(f.type)])).toEqual([
      ['key', 'Utf8'],
      ['embedding', 'FixedSizeList[3]<Float32>'],
    ]);
    expect(table.getChild('key')!.toArray()).toEqual(e.keys);
    e.features.forEach((f, i) => expect(Array.from(table.getChild('embedding')!.get(i)!)).toEqual(Array.from(f)));
  });
});

describe('embed: empty datasets and unreadable shards', () => {
  /** A copy of the 2-unit dataset at `name`, with `damage` done to the shard file of unit `unit`. */
  async function damaged(name: string, damage: (file: string) => Promise<void>, units = [0]): Promise<string> {
    await cp(path('data'), path(name), { recursive: true });
    const all = await listUnits(await openStore(path(name)));
    for (const u of units) await damage(path(name, all[u]!.shard));
    return path(name);
  }

  const schemaOf = async (file: string) =>
    tableFromIPC(await readFile(file)).schema.fields.map((f) => [f.name, String(f.type)]);

  it('skips a missing shard and counts it, its records as failed, as train does', async () => {
    const said: string[] = [];
    const e = await embed(channelMeans(), await damaged('missing', (f) => rm(f)), { onSkip: (m) => said.push(m) });
    expect(e.keys).toHaveLength(3); // the other unit's records
    expect(e.failed).toBe(3);
    expect(e.skipped).toEqual({ bad_shard: 1 });
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/^warning: skipping unreadable data \(bad_shard\): .*missing or shorter/);
  });

  it('skips a truncated shard too', async () => {
    const e = await embed(channelMeans(), await damaged('short', (f) => truncate(f, 100)));
    expect([e.keys.length, e.failed, e.skipped]).toEqual([3, 3, { bad_shard: 1 }]);
  });

  it('writes a column of the backbone featureDim when there is no row', async () => {
    const e = await embed(channelMeans(), await damaged('gone', (f) => rm(f), [0, 1]));
    expect([e.keys.length, e.failed, e.dim, e.skipped]).toEqual([0, 6, 3, { bad_shard: 2 }]);
    await writeEmbeddings(path('out', 'none.arrow'), e);
    expect(await schemaOf(path('out', 'none.arrow'))).toEqual([
      ['key', 'Utf8'],
      ['embedding', 'FixedSizeList[3]<Float32>'],
    ]);
  });
});

describe('embed: options, URLs and symbolic links', () => {
  it('refuses a size or batch out of range with a ConfigError naming it, before any image is read', async () => {
    // size 0 gave 0 rows; batch 0 or -1 embedded everything in one pass, past the memory check.
    for (const [option, value, range] of [
      ['size', 0, '8 to 4096'],
      ['size', 7.5, '8 to 4096'],
      ['batch', 0, '1 to 4096'],
      ['batch', -1, '1 to 4096'],
      ['batch', NaN, '1 to 4096'],
    ] as const) {
      const backbone = channelMeans();
      const err = await embed(backbone, path('folder'), { [option]: value }).catch((e: unknown) => e);
      expect(err, `${option} ${value}`).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toBe(`${option} must be an integer from ${range}, got ${value}`);
      expect(backbone.batches).toEqual([]);
    }
    // A command's refusal names its flag.
    await expect(
      embed(channelMeans(), path('folder'), { batch: 0, names: { of: (k) => `--${k}`, set: (k, v) => `--${k} ${v}` } }),
    ).rejects.toThrow(/^--batch must be an integer from 1 to 4096, got 0$/);
  });

  it('reads a folder given as a file:// URL', async () => {
    // The URL went to readdir as it was: ENOENT.
    const e = await embed(channelMeans(), pathToFileURL(path('folder')).href);
    expect([e.keys, e.failed]).toEqual([['cat/1.jpg', 'cat/2.png', 'dog/3.jpg', 'dog/4.webp', 'top.jpg'], 1]);
  });

  it('follows symbolic links to images and class folders; one to a missing image counts as failed', async () => {
    // A folder of links embedded 0 images.
    await mkdir(path('linked', 'cat'), { recursive: true });
    await symlink(path('folder', 'cat', '1.jpg'), path('linked', 'cat', '1.jpg'));
    await symlink(path('folder', 'dog'), path('linked', 'dog'));
    await symlink(path('folder', 'missing.jpg'), path('linked', 'cat', 'missing.jpg'));
    await symlink(path('linked'), path('linked', 'cat', 'up'));
    const said: string[] = [];
    const e = await embed(channelMeans(), path('linked'), { onSkip: (m) => said.push(m) });
    expect(e.keys).toEqual(['cat/1.jpg', 'dog/3.jpg', 'dog/4.webp']);
    expect(e.failed).toBe(2); // dog/broken.jpg does not decode; cat/missing.jpg links to nothing
    expect(said).toEqual([
      'warning: image cat/missing.jpg failed (broken_link: a symbolic link to a missing file), counted in "failed"',
      'warning: not following 1 symbolic link back into a folder above it: cat/up',
      'warning: image dog/broken.jpg failed (decode_error: not a JPEG, PNG, WebP, GIF, TIFF or AVIF image, or a damaged one), counted in "failed"',
    ]);
  });
});

describe('embed: the images that failed', () => {
  it(`names each by its key and reason, the first ${NAMED_FAILURES}, then counts the rest on one line`, async () => {
    // It said only "failed: 23": which 23 of a folder of thousands was left to find.
    await mkdir(path('many-bad', 'c'), { recursive: true });
    await writeFile(path('many-bad', 'c', 'a.svg.png'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
    for (let i = 0; i < 22; i++) await writeFile(path('many-bad', 'c', `bad-${String(i).padStart(2, '0')}.jpg`), 'x');
    await writeFile(path('many-bad', 'good.jpg'), bytes['top.jpg']!);
    const said: string[] = [];
    const e = await embed(channelMeans(), path('many-bad'), { onSkip: (m) => said.push(m) });
    expect([e.keys, e.failed]).toEqual([['good.jpg'], 23]);
    expect(said).toHaveLength(NAMED_FAILURES + 1);
    expect(said[0]).toBe(
      'warning: image c/a.svg.png failed (svg_refused: an SVG, which no stage decodes), counted in "failed"',
    );
    expect(said[1]).toMatch(/^warning: image c\/bad-00\.jpg failed \(decode_error: /);
    expect(said[NAMED_FAILURES - 1]).toMatch(/^warning: image c\/bad-18\.jpg failed/);
    expect(said[NAMED_FAILURES]).toBe(
      `warning: 3 more images failed, not named (the first ${NAMED_FAILURES} are above), counted in "failed"`,
    );
  });
});

describe('writeEmbeddings: malformed embeddings and folders', () => {
  const f = (...v: number[]) => Float32Array.from(v);
  const rows = (keys: string[], features: Float32Array[], dim?: number): Embeddings => ({
    keys,
    features,
    labels: [],
    failed: 0,
    dim,
  });

  it('refuses keys and rows of different counts, ragged rows and a width it cannot know, writing nothing', async () => {
    // 3 keys with 2 rows wrote a null embedding in a non-null column; ragged rows were zero-padded or threw a bare RangeError.
    for (const [name, e, message] of [
      ['count', rows(['a', 'b', 'c'], [f(1, 2), f(3, 4)]), /^embeddings have 3 keys but 2 feature rows/],
      ['wider', rows(['a', 'b'], [f(1, 2, 3), f(3, 4)]), /^embeddings row 1 \(key "b"\) has 2 features, not 3/],
      ['narrower', rows(['a', 'b'], [f(1, 2), f(3, 4, 5)]), /^embeddings row 1 \(key "b"\) has 3 features, not 2/],
      ['dim', rows(['a'], [f(1, 2)], 3), /^embeddings row 0 \(key "a"\) has 2 features, not 3 \(dim\)/],
      ['width', rows([], []), /^embeddings have no row and no dim/],
    ] as const) {
      const err = await writeEmbeddings(path('out', `bad-${name}.arrow`), e).catch((x: unknown) => x);
      expect(err, name).toBeInstanceOf(ConfigError);
      expect((err as Error).message, name).toMatch(message);
      expect(await stat(path('out', `bad-${name}.arrow`)).catch(() => null), name).toBeNull();
    }
    await writeEmbeddings(path('out', 'good.arrow'), rows([], [], 2));
    expect(tableFromIPC(await readFile(path('out', 'good.arrow'))).schema.fields.map((x) => String(x.type))).toEqual([
      'Utf8',
      'FixedSizeList[2]<Float32>',
    ]);
  });

  it('refuses an output that is an existing folder, saying the option names the file', async () => {
    // It said "no such object: outdir".
    await mkdir(path('outdir'), { recursive: true });
    await expect(writeEmbeddings(path('outdir'), rows(['a'], [f(1)]))).rejects.toThrow(
      new ConfigError(
        `out ${path('outdir')} is a directory: out names the Arrow IPC file to write, such as ${path('outdir', 'embeddings.arrow')}`,
      ),
    );
    const url = pathToFileURL(path('outdir')).href;
    await expect(writeEmbeddings(url, rows(['a'], [f(1)]))).rejects.toThrow(`such as ${url}/embeddings.arrow`);
  });
});
