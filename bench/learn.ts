/**
 * Learning benchmark (issue 5's learning criterion, the run test/train/learning.test.ts checks): a tiny
 * RegNet trained with SwAV on procedural pattern images, k-NN top-1 of the trained backbone vs the same
 * network at initialisation, and the final loss against the ln(K) plateau. See test/helpers/learning.ts.
 *
 *   npx tsx bench/learn.ts [--steps 600] [--model custom:4,16,8,2,16] [--batch 32] [--crops 2x32@0.3-1,2x16@0.1-0.3]
 *                          [--images 512] [--prototypes 32] [--extra="--lr 1 --final-lr 1 --epsilon 0.02 ..."]
 */
import { parseArgs } from 'node:util';
import { LEARNING_DEFAULTS as D, learningRun } from '../test/helpers/learning.js';

const { values: o } = parseArgs({
  options: {
    steps: { type: 'string', default: String(D.steps) },
    model: { type: 'string', default: D.model },
    batch: { type: 'string', default: String(D.batch) },
    crops: { type: 'string', default: D.crops },
    images: { type: 'string', default: String(D.images) },
    prototypes: { type: 'string', default: String(D.prototypes) },
    extra: { type: 'string', default: D.extra.join(' ') },
    'eval-size': { type: 'string' },
  },
});
const t0 = performance.now();
const r = await learningRun({
  steps: Number(o.steps),
  model: o.model!,
  batch: Number(o.batch),
  crops: o.crops!,
  images: Number(o.images),
  prototypes: Number(o.prototypes),
  extra: o.extra!.split(' ').filter(Boolean),
  ...(o['eval-size'] ? { evalSize: Number(o['eval-size']) } : {}),
});
console.log(r.lines.join('\n'));
console.log(
  `final loss ${r.finalLoss.toFixed(4)} (mean of the last 3 intervals) vs ln(K) = ${r.lnK.toFixed(4)}; ` +
    `k-NN top-1 (4 classes, 400 train / 400 test): trained ${r.knnTrained.toFixed(3)}, random init ${r.knnInit.toFixed(3)}; ` +
    `${((performance.now() - t0) / 1000).toFixed(0)} s`,
);
