/**
 * Training benchmark: SwAV steps (RegNet backbone + 2048-128 head, 3000 prototypes, LARS) on random
 * multi-crop batches, per available tfjs backend, and PyTorch (Debian python3-torch + torchvision) on the
 * same model, crops and batch in the same run when it is installed. Prints images/s, images/s per core
 * (images / CPU-second of the process) and achieved GFLOP/s (3 x 2 x backbone MACs: forward + backward).
 *
 *   npx tsx bench/train.ts [--models regnety_200mf,regnety_400mf] [--batch 8] [--steps 3]
 *                          [--crops 2x224,6x96] [--backends wasm,webgpu,tensorflow] [--threads 2]
 *                          [--precisions f32,mixed] [--torch cpu|cuda|none] [--python /usr/bin/python3]
 *
 * `--threads` is PyTorch's intra-op thread count and the data-parallel wasm row's worker count (wasm runs one
 * thread in Node, so `train --train-threads N` is how it uses N cores): the `wasm/Nt` row is the fair match.
 * `webgpu` rows run the WebGPU engine (bench/webgpu-engine.ts) once per `--precisions` entry, fed as train feeds it
 * (8-bit crops in shared memory, uploaded and normalised on the device every step); `tfjs-webgpu` is
 * tfjs's own WebGPU backend. `--torch cuda` runs PyTorch bf16 on the GPU (scripts/gpu/h200.sh) instead of the CPU.
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { parseCrops } from '../src/augment/config.js';
import type { ByteCrop } from '../src/crop-tensor.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../src/crops.js';
import { startBackend, type BackendName } from '../src/train/backend.js';
import { defaultTrainConfig } from '../src/train/config.js';
import { SwavModel } from '../src/train/model.js';
import { ParallelStepper } from '../src/train/parallel/stepper.js';
import { regnetMacs, regnetSpec } from '../src/train/regnet-spec.js';
import { prng } from '../src/rng.js';
import { timed } from './timed.js';
import { ENGINE_MISSING, loadEngine, type EnginePrecision } from './webgpu-engine.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'regnety_200mf,regnety_400mf' },
    batch: { type: 'string', default: '8' },
    steps: { type: 'string', default: '3' },
    crops: { type: 'string', default: '2x224,6x96' },
    backends: { type: 'string', default: 'wasm,webgpu,tensorflow' },
    threads: { type: 'string', default: String(availableParallelism()) },
    precisions: { type: 'string', default: 'f32,mixed' },
    torch: { type: 'string', default: 'cpu' },
    python: { type: 'string', default: '/usr/bin/python3' },
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

/** The WebGPU engine's rows, one per precision; none (and a line saying why) while the engine is missing. */
async function engineRun(model: string): Promise<Map<string, number>> {
  const rows = new Map<string, number>();
  const open = await loadEngine();
  if (!open) {
    console.log(`webgpu     no figure: ${ENGINE_MISSING}`);
    return rows;
  }
  // What train feeds the engine: 8-bit crops in the loader's shared memory, uploaded and normalised each step.
  const rand = prng(1);
  const data = crops.flatMap((g) =>
    Array.from({ length: g.count }, (): ByteCrop => {
      const d = new Uint8Array(new SharedArrayBuffer(batch * g.size * g.size * 3));
      for (let i = 0; i < d.length; i++) d[i] = Math.floor(rand() * 256);
      return { size: g.size, dtype: 'uint8', data: d, mean: IMAGENET_MEAN, std: IMAGENET_STD };
    }),
  );
  for (const precision of values.precisions!.split(',') as EnginePrecision[]) {
    const stepper = await open({ model, batch, crops: values.crops!, precision }).catch((err: unknown) => {
      console.log(`webgpu/${precision} unavailable: ${(err as Error).message.split('\n')[0]}`);
      return null;
    });
    if (!stepper) continue;
    try {
      console.log(`webgpu     ${stepper.description}`);
      await stepper.step(data, 0, { readLoss: true }); // warm-up: pipelines compile, buffers allocate
      let loss = NaN;
      const t = await timed(async () => {
        // The last step reads the loss back, which waits for every step submitted before it.
        for (let s = 1; s <= steps; s++) loss = (await stepper.step(data, s, { readLoss: s === steps })).loss;
      });
      const who = `webgpu/${stepper.precision}`;
      rows.set(who, report(who, model, { images: steps * batch, ...t }));
      console.log(`${who.padEnd(10)} mean loss of the timed steps ${loss.toFixed(4)}`);
    } finally {
      await stepper.close();
    }
  }
  return rows;
}

function torchRun(model: string): number | null {
  if (values.torch === 'none') return null;
  const cuda = values.torch === 'cuda';
  const py = spawnSync(
    values.python!,
    [
      'bench/torch_swav_train.py',
      model,
      String(batch),
      String(steps),
      values.threads!,
      values.crops!,
      ...(cuda ? ['--device', 'cuda', '--dtype', 'bf16'] : []),
    ],
    { encoding: 'utf8' },
  );
  if (py.status !== 0) {
    console.log(`pytorch    unavailable (${(py.stderr || py.error?.message || '').trim().split('\n').pop()})`);
    return null;
  }
  const result = JSON.parse(py.stdout) as {
    images: number;
    cpu: number;
    wall: number;
    device?: string;
    peak_gib?: number;
  };
  const ips = report(cuda ? 'pytorch/cuda-bf16' : `pytorch/${values.threads}t`, model, result);
  if (result.device) console.log(`pytorch    on ${result.device}, peak ${result.peak_gib?.toFixed(2)} GiB`);
  return ips;
}

for (const model of values.models!.split(',')) {
  const torch = torchRun(model);
  for (const backend of values.backends!.split(',')) {
    const rows = backend === 'webgpu' ? await engineRun(model) : await tfjsRun(backend.replace(/^tfjs-/, ''), model);
    for (const [who, ips] of rows)
      if (torch) console.log(`${who.padEnd(10)} ${model.padEnd(14)} ${(ips / torch).toFixed(3)}x PyTorch`);
  }
}
