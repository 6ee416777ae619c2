/**
 * Data-parallel training benchmark: SwAV steps on one thread (SwavModel.step on the main thread) against
 * ParallelStepper with 1 and N worker threads, each on its own wasm backend, on the same random batch.
 * Rounds alternate the three so that load from other processes hits them alike; prints the median
 * images/s of each and images per CPU-second of the process (all threads).
 *
 *   npx tsx bench/train-parallel.ts [--model regnetx_200mf] [--batch 16] [--crops 2x64,4x32] [--steps 2]
 *                                   [--rounds 3] [--threads 2]
 */
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { parseCrops } from '../src/augment/config.js';
import { startBackend } from '../src/train/backend.js';
import { defaultTrainConfig } from '../src/train/config.js';
import { SwavModel } from '../src/train/model.js';
import { ParallelStepper } from '../src/train/parallel/stepper.js';
import { DEFAULT_SWAV } from '../src/train/swav.js';
import { timed, type Elapsed } from './timed.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'regnetx_200mf' },
    batch: { type: 'string', default: '16' },
    crops: { type: 'string', default: '2x64,4x32' },
    steps: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: String(availableParallelism()) },
  },
});
const [batch, steps, rounds, threads] = [values.batch, values.steps, values.rounds, values.threads].map(Number) as [
  number,
  number,
  number,
  number,
];
await startBackend('wasm');
const config = defaultTrainConfig({
  model: values.model!,
  batchSize: batch,
  crops: values.crops!,
  steps: 1000,
  swav: { ...DEFAULT_SWAV, prototypes: 256, freezePrototypesSteps: 0 },
});
const tensors = parseCrops(values.crops!).flatMap((g) =>
  Array.from({ length: g.count }, () => tf.randomNormal([batch, g.size, g.size, 3]) as tf.Tensor4D),
);
console.log(
  `parallel train bench: ${values.model}, batch ${batch}, crops ${values.crops}, ${steps} steps x ${rounds} rounds; ` +
    `${availableParallelism()} cores, load average ${loadavg()[0]!.toFixed(1)} at the start`,
);

const single = new SwavModel(config);
const steppers = new Map<number, ParallelStepper>();
for (const n of [1, threads])
  steppers.set(n, await ParallelStepper.start(new SwavModel(config), { threads: n, backend: 'wasm' }));
const runs: Array<[string, (s: number) => Promise<unknown>]> = [
  ['main thread', async (s) => single.step(tensors, s)],
  ...[...steppers].map(
    ([n, st]) =>
      [`${n} worker${n > 1 ? 's' : ''}`, (s: number) => st.step(tensors, s)] as [
        string,
        (s: number) => Promise<unknown>,
      ],
  ),
];
const results = new Map<string, Elapsed[]>(runs.map(([name]) => [name, []]));
let step = 0;
for (const [, run] of runs) await run(step++); // warm-up: kernels compile, buffers allocate
for (let r = 0; r < rounds; r++) {
  for (const [name, run] of runs) {
    const t = await timed(async () => {
      for (let s = 0; s < steps; s++) await run(step++);
    });
    results.get(name)!.push(t);
    console.log(`  round ${r + 1} ${name}: ${((steps * batch) / t.wall).toFixed(2)} images/s`);
  }
}
const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const [name, ts] of results) {
  const ips = median(ts.map((t) => (steps * batch) / t.wall));
  const perCpu = median(ts.map((t) => (steps * batch) / t.cpu));
  console.log(
    `${name.padEnd(12)} ${ips.toFixed(2).padStart(7)} images/s  ${perCpu.toFixed(2).padStart(6)} per CPU-second`,
  );
}
console.log(`load average ${loadavg()[0]!.toFixed(1)} at the end`);
for (const st of steppers.values()) {
  st.model.dispose();
  await st.close();
}
single.dispose();
tf.dispose(tensors);
