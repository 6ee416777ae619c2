/**
 * Learning benchmark (issue 5's learning criterion): a tiny RegNet trained with SwAV on procedural pattern
 * images (hidden class = pattern structure; every region has its own random colour) ingested as shards,
 * then k-NN top-1 of the trained backbone vs the same network at initialisation on held-out images, and the
 * final loss against the ln(K) plateau. All through the CLI code paths (train, export, eval knn).
 *
 *   npx tsx bench/learn.ts [--steps 200] [--model custom:4,16,8,2,16] [--batch 32] [--crops 2x32@0.3-1,2x16@0.1-0.3]
 *                          [--images 512] [--extra="--lr 1 --lars-all --jitter-strength 0.5"]
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { main } from '../src/cli.js';
import { patternJpeg } from '../src/fixtures/images.js';
import { openStore } from '../src/shards/store.js';
import { writeDataset } from '../test/helpers/dataset.js';

const { values: o } = parseArgs({
  options: {
    steps: { type: 'string', default: '200' },
    model: { type: 'string', default: 'custom:4,16,8,2,16' },
    batch: { type: 'string', default: '32' },
    crops: { type: 'string', default: '2x32@0.3-1,2x16@0.1-0.3' },
    images: { type: 'string', default: '512' },
    prototypes: { type: 'string', default: '32' },
    extra: { type: 'string', default: '--lr 1 --warmup-steps 10 --lars-all --jitter-strength 0.5' },
  },
});
const dir = await mkdtemp(join(tmpdir(), 'ws-bench-learn-'));
const capture = async (argv: string[]) => {
  const write = process.stdout.write.bind(process.stdout);
  let out = '';
  process.stdout.write = ((chunk: string) => ((out += chunk), true)) as typeof process.stdout.write;
  try {
    if ((await main(['node', 'wildstream', ...argv])) !== 0) throw new Error(`wildstream ${argv[0]} failed`);
  } finally {
    process.stdout.write = write;
  }
  return out;
};
try {
  const n = Number(o.images);
  const images = await Promise.all(Array.from({ length: n }, (_, i) => patternJpeg(i, { width: 64, height: 64 })));
  await writeDataset(await openStore(join(dir, 'data')), { units: 4, perUnit: n / 4, batchRows: 16, image: (i) => images[i]! });
  for (const [split, first, count] of [['train', 100_000, 400], ['test', 200_000, 400]] as const) {
    for (let i = first; i < first + count; i++) {
      await mkdir(join(dir, split, `c${i % 4}`), { recursive: true });
      await writeFile(join(dir, split, `c${i % 4}`, `${i}.jpg`), await patternJpeg(i, { width: 64, height: 64 }));
    }
  }
  const log = await capture(['train', '--data', join(dir, 'data'), '--out', join(dir, 'ck'), '--model', o.model!, '--batch', o.batch!,
    '--crops', o.crops!, '--steps', o.steps!, '--prototypes', o.prototypes!, '--hidden', '64', '--dim', '32', '--backend', 'wasm',
    '--freeze-prototypes', '20', '--log-every', '25', '--checkpoint-every', '100000', ...o.extra!.split(' ').filter(Boolean)]);
  const lines = log.split('\n').filter((l) => l.startsWith('step '));
  console.log(lines.join('\n'));
  const knn: Record<string, number> = {};
  for (const which of ['trained', 'init']) {
    await capture(['export', join(dir, 'ck'), '--out', join(dir, which), ...(which === 'init' ? ['--init'] : [])]);
    const r = JSON.parse(await capture(['eval', 'knn', '--model', join(dir, which), '--train', join(dir, 'train'), '--test', join(dir, 'test'), '--backend', 'wasm']));
    knn[which] = r.top1;
  }
  const last = Number(/loss ([\d.]+)/.exec(lines[lines.length - 1] ?? '')?.[1]);
  console.log(`final loss ${last.toFixed(4)} vs ln(K) = ${Math.log(Number(o.prototypes)).toFixed(4)}; ` +
    `k-NN top-1 (4 classes, 400 train / 400 test): trained ${knn.trained!.toFixed(2)}, random init ${knn.init!.toFixed(2)}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
