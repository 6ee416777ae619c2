/**
 * Memory of SwAV training steps against the estimate printed before the first step (src/train/memory.ts):
 * per step the wall and CPU seconds, the wasm heap's high-water (its memory only grows), the tensors alive and
 * the process's peak RSS; random crops, so no dataset is needed.
 *
 *   npx tsx bench/train-memory.ts [--model regnety_400mf] [--batch 16] [--crops 2x224,6x96] [--steps 2]
 *                                 [--recompute auto|on|off] [--backend wasm]
 */
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { cropList, parseCrops } from '../src/augment/config.js';
import { startBackend, type BackendName } from '../src/train/backend.js';
import { defaultTrainConfig } from '../src/train/config.js';
import type { RecomputeMode } from '../src/train/memory.js';
import { SwavModel } from '../src/train/model.js';
import { prng } from '../src/rng.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'regnety_400mf' },
    batch: { type: 'string', default: '16' },
    crops: { type: 'string', default: '2x224,6x96' },
    steps: { type: 'string', default: '2' },
    recompute: { type: 'string', default: 'auto' },
    backend: { type: 'string', default: 'wasm' },
  },
});
const batch = Number(values.batch);
const backend = await startBackend(values.backend as BackendName);
const heap = () => (tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm?.HEAPU8.length;
const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
const model = new SwavModel(
  defaultTrainConfig({
    model: values.model,
    batchSize: batch,
    crops: values.crops,
    recompute: values.recompute as RecomputeMode,
    steps: 1000,
  }),
);
const e = model.memory.estimate;
console.log(
  `${backend.name}: ${model.memory.line}; tensors estimated ${gib(e.peak.on)} (on), ${gib(e.peak.off)} (off)`,
);
const rand = prng(3);
const sizes = cropList({ crops: parseCrops(values.crops) }).map((c) => c.size);
for (let s = 0; s < Number(values.steps); s++) {
  const crops = sizes.map((size) =>
    tf.tensor4d(
      Float32Array.from({ length: batch * size * size * 3 }, () => rand() - 0.5),
      [batch, size, size, 3],
    ),
  );
  const [t0, c0] = [performance.now(), process.cpuUsage()];
  const { loss } = model.step(crops, s);
  const cpu = process.cpuUsage(c0);
  tf.dispose(crops);
  const h = heap();
  console.log(
    `step ${s + 1}: loss ${loss.toFixed(3)}, ${((performance.now() - t0) / 1000).toFixed(1)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s CPU, ` +
      `${h === undefined ? '' : `wasm heap ${gib(h)}, `}${tf.memory().numTensors} tensors, peak RSS ${gib(process.resourceUsage().maxRSS * 1024)}`,
  );
}
model.dispose();
