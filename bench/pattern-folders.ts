/**
 * Writes the learning benchmark's pattern images as class folders for the PyTorch reference
 * (bench/torch_swav_learn.py): data/ (512 training images, 4 hidden classes), train/ and test/ (400 each, for
 * k-NN), the same seeds as test/helpers/learning.ts.
 *
 *   npx tsx bench/pattern-folders.ts [dir=/tmp/pat] [side=64]
 */
import { writePatternFolders } from '../test/helpers/learning.js';

const side = Number(process.argv[3] ?? 64);
await writePatternFolders(
  process.argv[2] ?? '/tmp/pat',
  [
    ['data', 0, 512],
    ['train', 100_000, 400],
    ['test', 200_000, 400],
  ],
  side,
);
