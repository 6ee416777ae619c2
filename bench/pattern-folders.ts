/**
 * Writes the learning benchmark's pattern images as class folders for the PyTorch reference
 * (bench/torch_swav_learn.py): data/ (512 training images, 4 hidden classes), train/ and test/ (400 each, for
 * k-NN), the same seeds as test/helpers/learning.ts.
 *
 *   npx tsx bench/pattern-folders.ts [dir=/tmp/pat] [side=64]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { patternJpeg } from '../src/fixtures/images.js';
const out = process.argv[2] ?? '/tmp/pat';
const side = Number(process.argv[3] ?? 64);
for (const [split, first, count] of [['data', 0, 512], ['train', 100_000, 400], ['test', 200_000, 400]] as const) {
  for (let i = first; i < first + count; i++) {
    await mkdir(join(out, split, `c${i % 4}`), { recursive: true });
    await writeFile(join(out, split, `c${i % 4}`, `${i}.jpg`), await patternJpeg(i, { width: side, height: side }));
  }
}
