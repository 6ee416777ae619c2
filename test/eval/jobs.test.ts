// The stage functions that load an exported backbone (embedImages, evalKnn) and the command jobs over them
// (embedJob, knnJob): options checked at the boundary before the model loads, the backbone disposed, folders
// read as one folder per class (file:// URLs too), and the command's k-NN refusing as the library does.
import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, ExitCodeError, NoDataError } from '../../src/errors.js';
import { patternJpeg } from '../../src/fixtures/images.js';
import { embedImages, evalKnn, type KnnEvalOptions } from '../../src/jobs/eval.js';
import type { KnnValues } from '../../src/eval/options.js';
import { embedJob, knnJob } from '../../src/jobs/outputs.js';
import { FLAG_NAMES } from '../../src/options/declare.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { startBackend } from '../../src/train/backend.js';
import { exportBackbone } from '../../src/train/export.js';
import { ParamSet } from '../../src/train/params.js';
import { buildRegnet } from '../../src/train/regnet.js';
import { regnetSpec } from '../../src/train/regnet-spec.js';

let dir: string;
let model: Store;
const path = (...p: string[]) => join(dir, ...p);

async function images(folder: string, classes: Record<string, number>, first: number): Promise<void> {
  let seed = first;
  for (const [label, n] of Object.entries(classes)) {
    await mkdir(join(folder, label), { recursive: true });
    for (let i = 0; i < n; i++)
      await writeFile(join(folder, label, `${seed}.jpg`), await patternJpeg(seed++, { width: 32, height: 32 }));
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-eval-jobs-'));
  await startBackend('cpu');
  const name = 'custom:2,8,8,2,8';
  const ps = new ParamSet(1);
  buildRegnet(ps, regnetSpec(name));
  model = await openStore(path('model'));
  await exportBackbone(model, ps, regnetSpec(name), { model: name, step: 0, inputSize: 24 });
  ps.dispose();
  await images(path('train'), { c0: 3, c1: 3 }, 0);
  await images(path('test'), { c0: 2, c1: 2 }, 100);
  await images(path('test-extra'), { c0: 1, c2: 1 }, 200); // c2: a class no train image has
  await writeFile(path('test-extra', 'stray.jpg'), await patternJpeg(300, { width: 32, height: 32 }));
  await images(path('one-class'), { c0: 3 }, 400);
  await mkdir(path('flat'));
  for (const i of [0, 1])
    await writeFile(path('flat', `${i}.jpg`), await patternJpeg(500 + i, { width: 32, height: 32 }));
  await mkdir(path('empty'));
  await mkdir(path('outdir'));
}, 60_000);
afterAll(() => rm(dir, { recursive: true, force: true }));
afterEach(() => {
  vi.restoreAllMocks();
});

const knn = (o: Partial<KnnEvalOptions> = {}) =>
  evalKnn({ model, train: path('train'), test: path('test'), k: 3, backend: 'cpu', ...o });

describe('evalKnn and embedImages', () => {
  it('dispose the backbone they load', async () => {
    // Each call left the model's weights behind (105 tensors for the default model).
    const before = tf.memory().numTensors;
    expect((await knn()).test).toBe(4);
    expect(tf.memory().numTensors).toBe(before);
    expect((await embedImages({ model, input: path('train'), backend: 'cpu' })).embeddings.keys).toHaveLength(6);
    expect(tf.memory().numTensors).toBe(before);
    // and when they fail after loading it
    await expect(knn({ test: path('empty') })).rejects.toThrow(NoDataError);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('check their options as the flags do, before the model loads', async () => {
    const nowhere = await openStore(path('no-model')); // loading it would be another ConfigError
    for (const [o, message] of [
      [{ k: 0 }, 'k must be an integer from 1 to 10000, got 0'],
      [{ k: 1.5 }, 'k must be an integer from 1 to 10000, got 1.5'],
      [{ k: NaN }, 'k must be an integer from 1 to 10000, got NaN'],
      [{ temperature: 0 }, 'temperature must be a finite number > 0, got 0'],
      [{ size: 0 }, 'size must be an integer from 8 to 4096, got 0'],
      [{ batch: -1 }, 'batch must be an integer from 1 to 4096, got -1'],
    ] as const) {
      const err = await knn({ model: nowhere, ...o }).catch((e: unknown) => e);
      expect(err, message).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toBe(message);
    }
    await expect(embedImages({ model: nowhere, input: path('train'), size: 0 })).rejects.toThrow(
      new ConfigError('size must be an integer from 8 to 4096, got 0'),
    );
    await expect(embedImages({ model: nowhere, input: path('train'), batch: 0 })).rejects.toThrow(
      new ConfigError('batch must be an integer from 1 to 4096, got 0'),
    );
  });

  it('refuse a k-NN folder without class folders, and a train folder of one class', async () => {
    // Images at the root got label '' and scored 1 (or 0) without a word.
    const flat = await knn({ model: await openStore(path('no-model')), train: path('flat') }).catch((e: unknown) => e);
    expect(flat).toBeInstanceOf(ConfigError);
    expect((flat as Error).message).toMatch(
      new RegExp(`^the train folder ${path('flat')} has 2 images but no class folder: k-NN reads one folder per class`),
    );
    await expect(knn({ test: path('flat') })).rejects.toThrow(/^the test folder .* has 2 images but no class folder/);
    const one = await knn({ train: path('one-class') }).catch((e: unknown) => e);
    expect(one).toBeInstanceOf(ConfigError);
    expect((one as Error).message).toMatch(
      new RegExp(`at least 2 classes .* the train folder ${path('one-class')} has images of 1 \\(c0\\)`),
    );
  });

  it('warn of images left out at a folder root and of test classes no train image has', async () => {
    const said: string[] = [];
    const r = await knn({ test: path('test-extra'), onWarning: (m) => said.push(m) });
    expect(r.test).toBe(2); // stray.jpg left out
    expect(said).toEqual([
      `warning: ignoring 1 image at the root of the test folder ${path('test-extra')}, outside every class folder (k-NN labels an image by its class folder): stray.jpg`,
      `warning: 1 test class has no train image, so its images are never classified right: c2 (the train folder ${path('train')} has c0, c1)`,
    ]);
  });

  it('take folders as file:// URLs', async () => {
    // ENOENT: the URL string went to readdir.
    const url = (p: string) => pathToFileURL(p).href;
    expect(await knn({ train: url(path('train')), test: url(path('test')) })).toMatchObject({ train: 6, test: 4 });
    const e = await embedImages({ model, input: url(path('test')), backend: 'cpu' });
    expect(e.embeddings.keys).toHaveLength(4);
  });
});

describe('the commands: knnJob and embedJob', () => {
  const out = () => {
    const lines: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => lines.push(String(s)) > 0);
    const err: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => err.push(String(s)) > 0);
    return { lines, err };
  };
  const knnValues = () =>
    ({ model: path('model'), train: path('train'), test: path('test'), k: 3, batch: 32, backend: 'cpu' }) as const;

  it('knnJob refuses an empty folder with the typed error evalKnn gives, naming the folder', async () => {
    // The command said "k-NN needs at least one train and one test sample" (a plain Error, no code).
    out();
    const err = await knnJob({ ...knnValues(), train: path('empty') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoDataError);
    expect((err as NoDataError).code).toBe('WS_ERR_NO_DATA');
    expect((err as Error).message).toBe(
      `k-NN needs images in the train folder ${path('empty')}: it has none that decode (0 failed)`,
    );
  });

  it('knnJob prints the k-NN line and its warnings on stderr', async () => {
    const { lines, err } = out();
    const r = await knnJob({ ...knnValues(), test: path('test-extra') });
    vi.restoreAllMocks();
    expect(r).toEqual({ top1: expect.any(Number), k: 3, train: 6, test: 2 });
    expect(JSON.parse(lines.join(''))).toEqual({ event: 'knn', model: 'custom:2,8,8,2,8', step: 0, ...r, failed: 0 });
    expect(err.join('')).toMatch(
      /^wildstream: warning: ignoring 1 image at the root .*\nwildstream: warning: 1 test class/,
    );
  });

  it('knnJob warns when the test images are the train images (the same folder, or one inside the other)', async () => {
    // top1 1.0 came out without a word: every test image found itself among the train images.
    await symlink(path('train'), path('train-link'));
    await images(path('nested'), { c0: 2, c1: 2 }, 600);
    await images(path('nested', 'held'), { c0: 1, c1: 1 }, 700);
    const said = (o: Partial<KnnValues>) => {
      const { err } = out();
      return knnJob({ ...knnValues(), ...o }).then((r) => {
        vi.restoreAllMocks();
        return { r, err: err.join('') };
      });
    };
    const same = await said({ test: pathToFileURL(path('train-link')).href });
    expect(same.r).toMatchObject({ train: 6, test: 6 }); // warned, not refused
    expect(same.err).toContain(
      `wildstream: warning: the test folder ${pathToFileURL(path('train-link')).href} is the train folder ${path('train')}: test images that are train images vote for themselves, so top1 measures nothing about the features; test on images the train folder does not hold\n`,
    );
    const inside = await said({ train: path('nested'), test: path('nested', 'held') });
    expect(inside.err).toContain(`the test folder ${path('nested', 'held')} lies inside the train folder`);
    const apart = await said({});
    expect(apart.err).not.toContain('vote for themselves');
  });

  it('embedJob ends with exit 3 when no image was embedded, as ingest ends a job that keeps none', async () => {
    // An empty folder, or one of no image, printed "images: 0" and exited 0, where eval knn refused it.
    await mkdir(path('no-images'));
    await writeFile(path('no-images', 'notes.txt'), 'not an image');
    await mkdir(path('all-bad', 'c0'), { recursive: true });
    await writeFile(path('all-bad', 'c0', 'x.jpg'), 'not a jpeg');
    const values = { model: path('model'), batch: 32, backend: 'cpu' } as const;
    const extensions = '.jpg, .jpeg, .png, .webp, .gif, .tif, .tiff, .avif';
    for (const [input, why] of [
      ['empty', `it holds no committed record of a dataset and no image file (${extensions})`],
      ['no-images', `it holds no committed record of a dataset and no image file (${extensions})`],
      ['all-bad', 'none of its 1 image could be read (the warnings above say why)'],
    ] as const) {
      const { lines } = out();
      const err = await embedJob(path(input), { ...values, out: path(`${input}.arrow`) }, FLAG_NAMES).catch(
        (e: unknown) => e,
      );
      vi.restoreAllMocks();
      expect(err, input).toBeInstanceOf(ExitCodeError);
      expect((err as ExitCodeError).exitCode, input).toBe(3);
      expect((err as Error).message).toBe(
        `no image to embed in ${path(input)}: ${why}; ${path(`${input}.arrow`)} has no row`,
      );
      expect(JSON.parse(lines.join(''))).toMatchObject({ event: 'embed', images: 0 });
    }
  });

  it('embedJob refuses an --out that is a folder, before embedding, saying --out names the file', async () => {
    // It said "no such object: outdir" after embedding every image.
    out();
    const values = { model: path('no-model'), out: path('outdir'), batch: 32, backend: 'cpu' } as const;
    await expect(embedJob(path('train'), values, FLAG_NAMES)).rejects.toThrow(
      new ConfigError(
        `--out ${path('outdir')} is a directory: --out names the Arrow IPC file to write, such as ${path('outdir', 'embeddings.arrow')}`,
      ),
    );
    expect(await stat(path('outdir', 'embeddings.arrow')).catch(() => null)).toBeNull();
  });
});
