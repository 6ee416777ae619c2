/**
 * k-NN benchmark: test queries/s per core of `knnAccuracy` (the weighted k-NN `eval knn` and the report run)
 * over random features of a backbone's width. Embedding the images is the backbone's forward pass, measured by
 * bench/train.ts; this is the part after it, which grows with train x test rows.
 *
 *   npx tsx bench/knn.ts [--train 2000] [--test 500] [--dim 440] [--k 20]
 */
import { parseArgs } from 'node:util';
import { knnAccuracy, type LabelledFeatures } from '../src/eval/knn.js';
import { prng } from '../src/rng.js';
import { timed } from './timed.js';

const { values } = parseArgs({
  options: {
    train: { type: 'string', default: '2000' },
    test: { type: 'string', default: '500' },
    dim: { type: 'string', default: '440' }, // RegNetY-400MF's feature width
    k: { type: 'string', default: '20' },
  },
});
const [train, test, dim, k] = [values.train, values.test, values.dim, values.k].map(Number) as [
  number,
  number,
  number,
  number,
];

/** `rows` random features in 10 classes. */
function features(rows: number, seed: number): LabelledFeatures {
  const next = prng(seed);
  return {
    features: Array.from({ length: rows }, () => Float32Array.from({ length: dim }, () => next() - 0.5)),
    labels: Array.from({ length: rows }, (_, i) => `class${i % 10}`),
  };
}

const sets = [features(train, 1), features(test, 2)] as const;
let top1 = 0;
const { cpu, wall } = await timed(async () => {
  top1 = knnAccuracy(sets[0], sets[1], k).top1;
});
console.log(
  `k-NN ${train} train x ${test} test, dim ${dim}, k ${k}: ${wall.toFixed(2)} s wall, ${(test / cpu).toFixed(0)} queries/s per core (top-1 ${top1.toFixed(3)}, chance 0.1)`,
);
