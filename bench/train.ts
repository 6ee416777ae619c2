/**
 * Training benchmark: SwAV steps (RegNet backbone + 2048-128 head, 3000 prototypes, LARS) on random
 * multi-crop batches, per available tfjs backend, and PyTorch (Debian python3-torch + torchvision) on the
 * same model, crops and batch in the same run when it is installed. Prints images/s, images/s per core
 * (images / CPU-second of the process) and achieved GFLOP/s (3 x 2 x backbone MACs: forward + backward).
 *
 *   npx tsx bench/train.ts [--models regnety_200mf,regnety_400mf] [--batch 8] [--steps 3]
 *                          [--crops 2x224,6x96] [--backends wasm,webgpu,tensorflow] [--threads 2]
 *
 * `--threads` is PyTorch's intra-op thread count and the data-parallel wasm row's worker count (wasm runs one
 * thread in Node, so `train --train-threads N` is how it uses N cores): the `wasm/Nt` row is the fair match.
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { parseCrops } from '../src/augment/config.js';
import { startBackend, type BackendName } from '../src/train/backend.js';
import { defaultTrainConfig } from '../src/train/config.js';
import { SwavModel } from '../src/train/model.js';
import { ParallelStepper } from '../src/train/parallel/stepper.js';
import { regnetMacs, regnetSpec } from '../src/train/regnet-spec.js';
import { timed } from './timed.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'regnety_200mf,regnety_400mf' },
    batch: { type: 'string', default: '8' },
    steps: { type: 'string', default: '3' },
    crops: { type: 'string', default: '2x224,6x96' },
    backends: { type: 'string', default: 'wasm,webgpu,tensorflow' },
    threads: { type: 'string', default: String(availableParallelism()) },
  },
});
const [batch, steps] = [Number(values.batch), Number(values.steps)];
const crops = parseCrops(values.crops);
console.log(
  `train bench: batch ${batch}, crops ${values.crops}, ${steps} timed steps; ${availableParallelism()} cores, ${cpus()[0]?.model}`,
);

/** Backbone FLOPs of one training image (all its crops), forward + backward. */
const flopsPerImage = (model: string) =>
  6 * crops.reduce((n, g) => n + g.count * regnetMacs(regnetSpec(model), g.size), 0);

function report(who: string, model: string, t: { images: number; cpu: number; wall: number }): number {
  const ips = t.images / t.wall;
  console.log(
    `${who.padEnd(10)} ${model.padEnd(14)} ${ips.toFixed(2).padStart(8)} images/s  ${(t.images / t.cpu).toFixed(2).padStart(7)} per core  ` +
      `${((ips * flopsPerImage(model)) / 1e9).toFixed(1).padStart(7)} GFLOP/s`,
  );
  return ips;
}

/** Images/s of each row (`backend`, and `wasm/Nt` where it runs), by row name. */
async function tfjsRun(backend: string, model: string): Promise<Map<string, number>> {
  try {
    await startBackend(backend as BackendName);
  } catch (err) {
    console.log(`${backend.padEnd(10)} unavailable: ${(err as Error).message.slice(0, 160)}`);
    return new Map();
  }
  const m = new SwavModel(defaultTrainConfig({ model, batchSize: batch, crops: values.crops }));
  const tensors = crops.flatMap((g) =>
    Array.from({ length: g.count }, () => tf.randomNormal([batch, g.size, g.size, 3]) as tf.Tensor4D),
  );
  m.step(tensors, 0); // warm-up: kernels compile, buffers allocate
  const t = await timed(async () => {
    for (let s = 1; s <= steps; s++) m.step(tensors, s);
  });
  const rows = new Map([[backend, report(backend, model, { images: steps * batch, ...t })]]);
  const threads = Number(values.threads);
  if (backend === 'wasm' && threads > 1) rows.set(`wasm/${threads}t`, await parallelRun(m, tensors, threads, model));
  tf.dispose(tensors);
  m.dispose();
  return rows;
}

/** The same steps through `ParallelStepper` (what `train --train-threads N` runs): N wasm worker threads. */
async function parallelRun(m: SwavModel, tensors: tf.Tensor4D[], threads: number, model: string): Promise<number> {
  const stepper = await ParallelStepper.start(m, { threads, backend: 'wasm' });
  try {
    await stepper.step(tensors, steps + 1); // warm-up in every worker
    const t = await timed(async () => {
      for (let s = steps + 2; s <= 2 * steps + 1; s++) await stepper.step(tensors, s);
    });
    return report(`wasm/${threads}t`, model, { images: steps * batch, ...t });
  } finally {
    await stepper.close();
  }
}

function torchRun(model: string): number | null {
  const py = spawnSync(
    '/usr/bin/python3',
    ['bench/torch_swav_train.py', model, String(batch), String(steps), values.threads!, values.crops!],
    { encoding: 'utf8' },
  );
  if (py.status !== 0) {
    console.log(`pytorch    unavailable (${(py.stderr || py.error?.message || '').trim().split('\n').pop()})`);
    return null;
  }
  return report(`pytorch/${values.threads}t`, model, JSON.parse(py.stdout));
}

for (const model of values.models!.split(',')) {
  const torch = torchRun(model);
  for (const backend of values.backends!.split(',')) {
    for (const [who, ips] of await tfjsRun(backend, model))
      if (torch) console.log(`${who.padEnd(10)} ${model.padEnd(14)} ${(ips / torch).toFixed(3)}x PyTorch`);
  }
}
