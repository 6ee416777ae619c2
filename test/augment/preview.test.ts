/**
 * `augment preview` shows any record training uses, of any shape, names the record it cannot show, and takes
 * the augmentation options train takes.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCrops } from '../../src/augment/config.js';
import { decodeRgb } from '../../src/augment/decode.js';
import { HEAD_BOX, headSize, labelLines, MIN_TILE, PreviewError, renderPreview } from '../../src/augment/preview.js';
import { CELL } from '../../src/svg-text.js';
import { PREVIEW_RUN_OPTIONS } from '../../src/cli/augment.js';
import { WildstreamError } from '../../src/errors.js';
import { photoJpeg } from '../../src/fixtures/images.js';
import { TRAIN_RUN_OPTIONS } from '../../src/jobs/training.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { augmentOf, defaultTrainConfig } from '../../src/train/config.js';
import { runCli } from '../helpers/cli.js';
import { writeDataset } from '../helpers/dataset.js';
import { svgBomb } from './hostile-images.js';

const CROPS = '2x64@0.14-1,2x32@0.05-0.14';
const augment = { crops: parseCrops(CROPS) };
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-preview-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A dataset of one record holding `image`. */
async function oneRecord(name: string, image: Uint8Array): Promise<Store> {
  const store = await openStore(join(dir, name));
  await writeDataset(store, { units: 1, perUnit: 1, image: () => image });
  return store;
}

const solid = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 3, background: '#3070b0' } });

describe('augment preview', () => {
  it('fits the original into its box whatever its shape', () => {
    expect(headSize(400, 300)).toEqual({ width: 347, height: 260 });
    expect(headSize(64, 64)).toEqual({ width: 260, height: 260 });
    expect(headSize(1, 3000)).toEqual({ width: 1, height: 260 });
    expect(headSize(3000, 1)).toEqual({ width: HEAD_BOX.width, height: 1 });
    expect(headSize(512, 1)).toEqual({ width: HEAD_BOX.width, height: 1 });
  });

  it("wraps each crop's label within its tile, down to the smallest tile", () => {
    const fits = Math.floor((MIN_TILE + 1) / (CELL.width * 2)); // characters at the labels' size 2
    const draw = { size: 96, box: { x: 0, y: 0, w: 10, h: 10 }, flip: false, jitter: null, grey: false, blur: null };
    const plain = labelLines(draw, 7, { width: 64, height: 64 }, MIN_TILE);
    expect(plain).toEqual(['8: 96 px', 'scale 0.02', 'no', 'distortion']);
    const all = labelLines(
      { ...draw, flip: true, jitter: [], grey: true, blur: 1 },
      63,
      { width: 64, height: 64 },
      MIN_TILE,
    );
    for (const line of [...plain, ...all]) expect(line.length, line).toBeLessThanOrEqual(fits);
    expect(labelLines(draw, 0, { width: 64, height: 64 }, 300)).toEqual(['1: 96 px', 'scale 0.02', 'no distortion']);
  });

  it('draws very thin and very wide records quickly, at the size of any other preview', async () => {
    const shapes: Array<[string, Buffer]> = [
      ['1x3000', await solid(1, 3000).png().toBuffer()],
      ['3000x1', await solid(3000, 1).jpeg().toBuffer()],
      ['512x1', await solid(512, 1).jpeg().toBuffer()],
    ];
    const normal = await renderPreview(await oneRecord('normal', await photoJpeg(1, { width: 160, height: 120 })), {
      augment,
    });
    const normalMeta = await sharp(normal.png).metadata();
    for (const [name, image] of shapes) {
      const t0 = performance.now();
      const { png } = await renderPreview(await oneRecord(name, image), { augment });
      expect(performance.now() - t0, name).toBeLessThan(5000);
      const meta = await sharp(png).metadata();
      expect(meta.width, name).toBeLessThanOrEqual(normalMeta.width! + HEAD_BOX.width);
      expect(meta.height, name).toBeLessThanOrEqual(normalMeta.height! + 3 * 24); // labels may wrap differently
    }
  }, 20_000);

  it('shows the records training uses: a truncated JPEG ended by EOI, a header larger than its data', async () => {
    const photo = await photoJpeg(2, { width: 160, height: 120 });
    const truncated = Buffer.concat([photo.subarray(0, photo.length >> 1), Buffer.from([0xff, 0xd9])]);
    const sof = photo.findIndex((v, i) => v === 0xff && photo[i + 1] === 0xc0);
    const faked = Buffer.from(photo);
    faked.writeUInt16BE(480, sof + 5);
    faked.writeUInt16BE(640, sof + 7);
    for (const [name, image] of [
      ['truncated', truncated],
      ['faked', faked],
    ] as const) {
      const decoded = await decodeRgb(image); // what the augment workers get
      expect('error' in decoded, name).toBe(false);
      const { png } = await renderPreview(await oneRecord(name, image), { augment });
      expect((await sharp(png).metadata()).format, name).toBe('png');
    }
  });

  it('names a record it cannot show, with the reason the loader skips it for', async () => {
    const store = await oneRecord('svg', svgBomb());
    const t0 = performance.now();
    const err = (await renderPreview(store, { augment }).catch((e: unknown) => e)) as PreviewError;
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(err).toBeInstanceOf(PreviewError);
    expect(err).toBeInstanceOf(WildstreamError);
    expect(err).toMatchObject({ code: 'WS_ERR_PREVIEW', record: 0, key: '000000-00000', reason: 'svg_refused' });
    expect(err.message).toMatch(/^record 0 \(key 000000-00000\) cannot be shown: .*svg_refused/);
  }, 10_000);

  it('takes the augmentation options train takes, declared once, and draws what train would use', async () => {
    for (const name of ['crops', 'jitterStrength', 'blur'] as const)
      expect(PREVIEW_RUN_OPTIONS[name], name).toBe(TRAIN_RUN_OPTIONS[name]);
    const images = await Promise.all(Array.from({ length: 3 }, (_, i) => photoJpeg(i, { width: 120, height: 90 })));
    const store = await openStore(join(dir, 'cli'));
    await writeDataset(store, { units: 1, perUnit: 3, image: (i) => images[i]! });
    const out = join(dir, 'cli.png');
    const flags = ['--crops', CROPS, '--jitter-strength', '2', '--blur', '0', '--seed', '4', '--record', '1'];
    const run = await runCli(['augment', 'preview', join(dir, 'cli'), '--out', out, ...flags]);
    expect(run.code, run.stderr).toBe(0);
    const asTrain = augmentOf(defaultTrainConfig({ crops: CROPS, jitterStrength: 2, blurP: 0 }));
    const expected = await renderPreview(store, { seed: 4, record: 1, augment: asTrain });
    expect((await readFile(out)).equals(expected.png)).toBe(true);
    const defaults = await renderPreview(store, { seed: 4, record: 1, augment });
    expect(defaults.png.equals(expected.png)).toBe(false); // the options changed what is drawn
  });
});
