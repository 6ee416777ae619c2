/**
 * Per-kernel profile of SwAV training steps (the step bench/train.ts times) on one tfjs backend. Every kernel
 * registered for the backend is wrapped to count its calls and measure the process CPU time and wall time
 * spent inside it, exclusive of kernels it runs through the registry; a table sorted by CPU time follows.
 * CPU time is the figure to compare: on a loaded machine wall time mostly measures waiting for a core.
 *
 *   npx tsx bench/profile-step.ts [--model regnety_200mf] [--batch 8] [--crops 2x224,6x96] [--steps 1]
 *                                 [--backend wasm] [--by-shape] [--top 30]
 *
 * --by-shape splits each kernel by its input shapes (which conv or matMul is the costly one).
 */
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { parseCrops } from '../src/augment/config.js';
import { startBackend, type BackendName } from '../src/train/backend.js';
import { defaultTrainConfig } from '../src/train/config.js';
import { SwavModel } from '../src/train/model.js';
import { clock } from './timed.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'regnety_200mf' },
    batch: { type: 'string', default: '8' },
    crops: { type: 'string', default: '2x224,6x96' },
    steps: { type: 'string', default: '1' },
    backend: { type: 'string', default: 'wasm' },
    'by-shape': { type: 'boolean', default: false },
    top: { type: 'string', default: '30' },
  },
});

interface Row {
  count: number;
  cpu: number;
  wall: number;
}

const rows = new Map<string, Row>();
/** With --by-shape: the same, per kernel and input shapes. */
const shapeRows = new Map<string, Row>();
let recording = false;
/** Time spent in the kernels that the running kernel called, per nesting level, to make each exclusive. */
const childTime: Array<{ cpu: number; wall: number }> = [];

const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

function shapeKey(name: string, inputs: tf.NamedTensorInfoMap): string {
  const shapes = Object.values(inputs).map((t) => (t ? `[${t.shape.join(',')}]` : '-'));
  return `${name} ${shapes.length > 3 ? `${shapes[0]} x${shapes.length}` : shapes.join(' ')}`;
}

/** Replaces every kernel of `backend` with one that books its exclusive CPU and wall time. */
function instrument(backend: string): void {
  for (const config of tf.getKernelsForBackend(backend)) {
    const inner = config.kernelFunc;
    tf.unregisterKernel(config.kernelName, backend);
    tf.registerKernel({
      ...config,
      kernelFunc: (args) => {
        if (!recording) return inner(args);
        childTime.push({ cpu: 0, wall: 0 });
        const [c0, w0] = [cpuNow(), performance.now()];
        const out = inner(args);
        const [cpu, wall] = [cpuNow() - c0, performance.now() - w0];
        const children = childTime.pop()!;
        const parent = childTime[childTime.length - 1];
        if (parent) [parent.cpu, parent.wall] = [parent.cpu + cpu, parent.wall + wall];
        book(rows, config.kernelName, cpu - children.cpu, wall - children.wall);
        if (values['by-shape'])
          book(shapeRows, shapeKey(config.kernelName, args.inputs), cpu - children.cpu, wall - children.wall);
        return out;
      },
    });
  }
}

function book(table: Map<string, Row>, key: string, cpu: number, wall: number): void {
  const row = table.get(key) ?? { count: 0, cpu: 0, wall: 0 };
  table.set(key, { count: row.count + 1, cpu: row.cpu + cpu, wall: row.wall + wall });
}

function print(rows: Map<string, Row>, total: { cpu: number; wall: number }, steps: number): void {
  const sorted = [...rows].sort((a, b) => b[1].cpu - a[1].cpu);
  const inKernels = sorted.reduce((s, [, r]) => s + r.cpu, 0);
  const width = Math.max(24, ...sorted.slice(0, Number(values.top)).map(([k]) => k.length));
  console.log(
    `${'kernel'.padEnd(width)} ${'calls'.padStart(7)} ${'CPU ms'.padStart(10)} ${'share'.padStart(6)} ${'wall ms'.padStart(10)}   (per step)`,
  );
  for (const [key, r] of sorted.slice(0, Number(values.top))) {
    console.log(
      `${key.padEnd(width)} ${(r.count / steps).toFixed(0).padStart(7)} ${(r.cpu / steps).toFixed(0).padStart(10)} ` +
        `${((100 * r.cpu) / inKernels).toFixed(1).padStart(5)}% ${(r.wall / steps).toFixed(0).padStart(10)}`,
    );
  }
  console.log(
    `${'all kernels'.padEnd(width)} ${(sorted.reduce((s, [, r]) => s + r.count, 0) / steps).toFixed(0).padStart(7)} ` +
      `${(inKernels / steps).toFixed(0).padStart(10)}        ${(sorted.reduce((s, [, r]) => s + r.wall, 0) / steps).toFixed(0).padStart(10)}`,
  );
  console.log(
    `step total: ${((total.cpu * 1000) / steps).toFixed(0)} CPU ms, ${((total.wall * 1000) / steps).toFixed(0)} wall ms per step ` +
      `(${((steps * Number(values.batch)) / total.cpu).toFixed(2)} images per CPU-second; ${(total.wall / total.cpu).toFixed(1)} wall/CPU: machine load)`,
  );
}

const steps = Number(values.steps);
const crops = parseCrops(values.crops);
await startBackend(values.backend as BackendName);
instrument(tf.getBackend());
const model = new SwavModel(
  defaultTrainConfig({ model: values.model!, batchSize: Number(values.batch), crops: values.crops! }),
);
const batch = crops.flatMap((g) =>
  Array.from({ length: g.count }, () => tf.randomNormal([Number(values.batch), g.size, g.size, 3]) as tf.Tensor4D),
);
model.step(batch, 0); // warm-up: buffers allocate, wasm grows its heap
console.log(
  `profile: ${values.model} on ${tf.getBackend()}, batch ${values.batch}, crops ${values.crops}, ${steps} step(s); ` +
    `recompute ${model.memory.recompute}; load average ${(await import('node:os')).loadavg()[0]!.toFixed(1)}`,
);
recording = true;
const elapsed = clock();
for (let s = 1; s <= steps; s++) model.step(batch, s);
const total = elapsed();
recording = false;
print(rows, total, steps);
if (values['by-shape']) print(shapeRows, total, steps);
tf.dispose(batch);
model.dispose();
