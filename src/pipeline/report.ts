/**
 * The report stage: what a person looks at after a run, in one folder: a contact sheet of kept images, one
 * record's multi-crop preview, the loss/LR curves, and k-NN top-1 of the exported backbone against its
 * random initialisation (labels used only here). With the demo site, the labelled evaluation folders are
 * generated from the fixture's hidden classes (images the site never served).
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { parseCrops, SWAV_CROPS } from '../augment/config.js';
import { renderPreview } from '../augment/preview.js';
import { embed } from '../eval/embed.js';
import { knnAccuracy } from '../eval/knn.js';
import { patternJpeg, PATTERNS } from '../fixtures/images.js';
import { listUnits } from '../shards/dataset.js';
import { ShardReader } from '../shards/reader.js';
import { fileIn, putFile } from '../shards/output.js';
import { openStore, type Store } from '../shards/store.js';
import { startBackend, type BackendName } from '../train/backend.js';
import { loadBackbone } from '../train/export.js';
import { datasetOf, type Pipeline } from './schema.js';

export async function writeReport(p: Pipeline, stage: (argv: string[]) => Promise<void>): Promise<void> {
  const r = p.report!;
  const data = await openStore(datasetOf(p));
  await putFile(fileIn(r.out, 'contact-sheet.png'), await contactSheet(data));
  const { png } = await renderPreview(data, { seed: 0, epoch: 0, record: 0, augment: { crops: parseCrops(p.train?.crops ?? SWAV_CROPS) } });
  await putFile(fileIn(r.out, 'multicrop-preview.png'), png);
  if (p.train) await stage(['plot', p.train.out, '--out', fileIn(r.out, 'curves.png')]);
  const folders = r.knn ?? (p.site === 'demo' ? await evalFolders(await evalRoot(r.out), r.eval_images ?? 200) : null);
  if (!folders) return;
  await startBackend((p.train?.backend ?? 'auto') as BackendName);
  const result: Record<string, unknown> = {};
  for (const [name, dir] of [['trained', p.export!.out], ['random_init', p.export!.baseline]] as const) {
    if (!dir) continue;
    const backbone = await loadBackbone(await openStore(dir));
    const [train, test] = [await embed(backbone, folders.train), await embed(backbone, folders.test)];
    result[name] = knnAccuracy(train, test, r.knn?.k ?? 20);
  }
  await putFile(fileIn(r.out, 'knn.json'), Buffer.from(`${JSON.stringify(result, null, 2)}\n`));
  const top1 = (k: string) => ((result[k] as { top1: number } | undefined)?.top1 ?? NaN).toFixed(3);
  process.stdout.write(`k-NN top-1: trained ${top1('trained')}, random init ${top1('random_init')} (report in ${r.out})\n`);
}

/** The first 48 kept images as a grid of 96 px thumbnails. */
async function contactSheet(data: Store, count = 48, cols = 8, side = 96): Promise<Buffer> {
  const tiles: Buffer[] = [];
  for (const unit of await listUnits(data)) {
    const reader = await ShardReader.open(data, unit.shard, { size: unit.bytes });
    for await (const record of reader.records()) {
      if (tiles.length >= count) break;
      tiles.push(await sharp(record.image).resize(side, side, { fit: 'cover' }).png().toBuffer());
    }
    if (tiles.length >= count) break;
  }
  const rows = Math.max(1, Math.ceil(tiles.length / cols));
  return sharp({ create: { width: cols * (side + 4), height: rows * (side + 4), channels: 3, background: '#ffffff' } })
    .composite(tiles.map((input, i) => ({ input, left: (i % cols) * (side + 4) + 2, top: Math.floor(i / cols) * (side + 4) + 2 })))
    .png().toBuffer();
}

/** Where the generated evaluation images go: beside the report when it is local, else a temporary folder. */
async function evalRoot(out: string): Promise<string> {
  if (/^file:/i.test(out)) return join(fileURLToPath(out), 'eval');
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(out)) return join(out, 'eval');
  return mkdtemp(join(tmpdir(), 'wildstream-eval-'));
}

/** Labelled folders of fixture images (seeds the demo site never serves), half for training k-NN, half for testing. */
async function evalFolders(root: string, count: number): Promise<{ train: string; test: string }> {
  for (const [split, first] of [['train', 1_000_000], ['test', 2_000_000]] as const) {
    for (let i = first; i < first + count / 2; i++) {
      const dir = join(root, split, PATTERNS[i % PATTERNS.length]!);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, `${i}.jpg`), await patternJpeg(i, { width: 96, height: 96 }));
    }
  }
  return { train: join(root, 'train'), test: join(root, 'test') };
}
