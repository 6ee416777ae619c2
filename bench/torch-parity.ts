/**
 * Parity with PyTorch (Debian python3-torch + torchvision): one SwAV forward/backward of a tiny RegNetY +
 * head on the cpu backend, dumped to JSON (inputs, weights, loss, gradients), then bench/torch_parity.py
 * loads the same weights into torchvision's RegNet and facebookresearch/swav's loss (float64, TensorFlow's
 * 'same' padding emulated) and prints the relative error of the loss and of every gradient.
 *
 *   npx tsx bench/torch-parity.ts
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { startBackend } from '../src/train/backend.js';
import { defaultTrainConfig } from '../src/train/config.js';
import { SwavModel } from '../src/train/model.js';
import { DEFAULT_SWAV, swavLoss } from '../src/train/swav.js';

await startBackend('cpu');
const config = defaultTrainConfig({
  model: 'custom:4,16,8,2,16',
  batchSize: 8,
  crops: '2x32@0.3-1,2x16@0.1-0.3',
  steps: 10,
  swav: { ...DEFAULT_SWAV, prototypes: 32, hidden: 64, dim: 32, freezePrototypesSteps: 0 },
});
const model = new SwavModel(config);
const crops = [32, 32, 16, 16].map((s, i) => tf.randomNormal([8, s, s, 3], 0, 1, 'float32', i + 1) as tf.Tensor4D);
const vars = [...model.ps.trainable().entries()];
const { value, grads } = tf.variableGrads(
  () => swavLoss(model.forward(crops, true).scores, config.swav),
  vars.map(([, v]) => v),
);
const nameOf = new Map(vars.map(([n, v]) => [v.name, n]));
const file = join(tmpdir(), 'wildstream-torch-parity.json');
writeFileSync(
  file,
  JSON.stringify({
    crops: crops.map((c) => ({ shape: c.shape, data: Array.from(c.dataSync()) })),
    params: Object.fromEntries(vars.map(([n, v]) => [n, { shape: v.shape, data: Array.from(v.dataSync()) }])),
    loss: value.dataSync()[0],
    grads: Object.fromEntries(Object.entries(grads).map(([k, g]) => [nameOf.get(k) ?? k, Array.from(g.dataSync())])),
  }),
);
const py = spawnSync('/usr/bin/python3', [new URL('./torch_parity.py', import.meta.url).pathname, file], {
  stdio: 'inherit',
});
if (py.status !== 0) console.log('PyTorch comparison did not run (apt-get install python3-torch python3-torchvision)');
