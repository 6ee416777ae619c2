/**
 * What uploading one step's crops costs (batch 256, crops 2x224 + 6x96 by default: ~480 MB of f32), on the
 * CPU of the machine running it, by route:
 *   copy          the loader's SharedArrayBuffer view copied into an ordinary Float32Array (the CPU copy
 *                 Dawn for Node 0.6.2 needs before queue.writeBuffer, which crashes on a shared view)
 *   writeBuffer   that copy then queue.writeBuffer into the crop buffers, waited to completion; and the same
 *                 for the 8-bit crops the loader makes for webgpu (a quarter of the bytes)
 *   ring          mapAsync(WRITE) staging buffers filled straight from the shared view, unmapped, then
 *                 copyBufferToBuffer into the crop buffers in one command buffer, waited to completion
 * then WebGpuStepper.step itself (the copy + writeBuffer route, at most two steps in flight) with a
 * do-nothing gradient program (the tests' FixedGradients), on f32 crops and on 8-bit crops, which a kernel in
 * the step normalises: the time per step, the CPU time inside step() and the time it waited for the device.
 * Measured on lavapipe (2 shared cores) the ring was slower both alone and inside the stepper (~105-120 ms
 * per step against ~55-75 ms), so the stepper writes. On lavapipe the device is those same cores: the 8-bit
 * step's decode (120 M elements at batch 256) runs there too, and its step time says nothing of a GPU's.
 *
 *   npx tsx bench/webgpu-upload.ts [batch] [repeats]
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import type { ByteCrop, CropTensor } from '../src/crop-tensor.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../src/crops.js';
import { defaultTrainConfig } from '../src/train/config.js';
import { SwavModel } from '../src/train/model.js';
import { DEFAULT_SWAV } from '../src/train/swav.js';
import { openDevice } from '../src/train/webgpu/device.js';
import { WebGpuStepper } from '../src/train/webgpu/stepper.js';
import { FixedGradients } from '../test/train/webgpu/fixed-gradients.js';

const batch = Number(process.argv[2] ?? 256);
const repeats = Number(process.argv[3] ?? 5);
const sizes = [224, 224, 96, 96, 96, 96, 96, 96];
const ctx = await openDevice();
const { device } = ctx;
const crops = sizes.map((s) => {
  const data = new Float32Array(new SharedArrayBuffer(batch * s * s * 3 * 4));
  for (let i = 0; i < data.length; i += 1024) data[i] = i % 7;
  return data;
});
const bytes = crops.reduce((n, c) => n + c.byteLength, 0);
const STORAGE = 0x80 | 0x4 | 0x8;
const targets = crops.map((c) => device.createBuffer({ size: c.byteLength, usage: STORAGE }));
const plain = crops.map((c) => new Float32Array(c.length));
const ring = crops.map((c) => device.createBuffer({ size: c.byteLength, usage: 0x2 | 0x4, mappedAtCreation: true })); // MAP_WRITE|COPY_SRC

const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
async function time(name: string, f: () => Promise<void> | void, mib = bytes / 2 ** 20): Promise<void> {
  const ms: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    await f();
    ms.push(performance.now() - t0);
  }
  console.log(`${name}: ${median(ms).toFixed(1)} ms per step (median of ${repeats}; ${mib.toFixed(0)} MiB)`);
}

await time('copy (shared view -> Float32Array)', () => crops.forEach((c, i) => plain[i]!.set(c)));
await copyAndWrite('copy + writeBuffer, to completion', crops, plain);
// The same for the 8-bit crops the loader makes for webgpu (their decode on the device is not in this figure).
const shared8 = crops.map((c) => new Uint8Array(new SharedArrayBuffer(c.length)).fill(7));
await copyAndWrite(
  '8-bit: copy + writeBuffer, to completion',
  shared8,
  crops.map((c) => new Uint8Array(c.length)),
);

/** Each shared crop copied into its ordinary array and written to its target, waited to completion. */
async function copyAndWrite(
  name: string,
  from: Array<Float32Array | Uint8Array>,
  into: Array<Float32Array | Uint8Array>,
): Promise<void> {
  const issue: number[] = [];
  const size = from.reduce((n, c) => n + c.byteLength, 0);
  const write = async () => {
    const t0 = performance.now();
    from.forEach((c, i) => {
      into[i]!.set(c);
      device.queue.writeBuffer(targets[i]!, 0, into[i]!.buffer, 0, c.byteLength);
    });
    issue.push(performance.now() - t0);
    await device.queue.onSubmittedWorkDone();
  };
  await time(name, write, size / 2 ** 20);
  console.log(`  of which the copy and writeBuffer calls (CPU time in step): ${median(issue).toFixed(1)} ms`);
}
let mapped = true;
const fill: number[] = [];
const remap: number[] = [];
await time('ring: mapped fill + copyBufferToBuffer, to completion', async () => {
  const m0 = performance.now();
  if (!mapped) await Promise.all(ring.map((b) => b.mapAsync(0x2)));
  remap.push(performance.now() - m0);
  const t0 = performance.now();
  crops.forEach((c, i) => {
    new Float32Array(ring[i]!.getMappedRange()).set(c);
    ring[i]!.unmap();
  });
  fill.push(performance.now() - t0);
  const enc = device.createCommandEncoder();
  crops.forEach((c, i) => enc.copyBufferToBuffer(ring[i]!, 0, targets[i]!, 0, c.byteLength));
  device.queue.submit([enc.finish()]);
  await device.queue.onSubmittedWorkDone();
  mapped = false;
});
console.log(`  of which mapAsync(WRITE) of an idle ring: ${median(remap).toFixed(1)} ms`);
console.log(`  of which the fill of the mapped ranges (CPU time in step): ${median(fill).toFixed(1)} ms`);
// Check the ring route delivered the bytes.
const check = device.createBuffer({ size: 4096, usage: 0x1 | 0x8 });
const enc = device.createCommandEncoder();
enc.copyBufferToBuffer(targets[2]!, 0, check, 0, 4096);
device.queue.submit([enc.finish()]);
await check.mapAsync(0x1);
const got = new Float32Array(check.getMappedRange());
console.log(`ring data check: ${got[0] === crops[2]![0] && got[1000] === crops[2]![1000] ? 'ok' : 'WRONG'}`);
for (const b of [...targets, ...ring, check]) b.destroy();

await tf.setBackend('cpu');
const config = defaultTrainConfig({
  model: 'custom:2,8,8,2,8',
  batchSize: batch,
  crops: '2x224@0.3-1,6x96@0.05-0.3',
  steps: 1000,
  swav: { ...DEFAULT_SWAV, prototypes: 16, hidden: 16, dim: 8, freezePrototypesSteps: 0 },
});
const model = new SwavModel(config, { backend: 'webgpu' });
const stepper = await WebGpuStepper.start(model, {
  device: ctx,
  precision: 'f32',
  program: (r, spec) => new FixedGradients(r, spec),
});
const floats = [0, 1].map((b) => crops.map((data, i) => ({ size: sizes[i]!, data: b ? data.slice() : data })));
// The 8-bit crops the loader makes for webgpu, in shared memory as it hands them: decoded on the device.
const byteBatches = [0, 1].map(() =>
  sizes.map((size): ByteCrop => {
    const data = new Uint8Array(new SharedArrayBuffer(batch * size * size * 3));
    for (let i = 0; i < data.length; i += 1024) data[i] = i % 251;
    return { size, dtype: 'uint8', data, mean: IMAGENET_MEAN, std: IMAGENET_STD };
  }),
);
await stepLoop('f32 crops: copy + writeBuffer', floats);
await stepLoop('8-bit crops: copy + writeBuffer + decode on the device', byteBatches);

/** Steps over alternating batches, 2 in flight: time per step, CPU time inside step(), time waiting for the device. */
async function stepLoop(name: string, batches: CropTensor[][]): Promise<void> {
  const steps = repeats * 3;
  await stepper.step(batches[0]!, 0);
  let [inStep, waited] = [0, 0];
  const t0 = performance.now();
  for (let k = 1; k <= steps; k++) {
    const s0 = performance.now();
    const r = await stepper.step(batches[k % 2]!, k, { readLoss: k === steps });
    [inStep, waited] = [inStep + performance.now() - s0 - r.gpuWaitMs, waited + r.gpuWaitMs];
  }
  const wall = (performance.now() - t0) / steps;
  console.log(
    `WebGpuStepper.step, ${name} (2 in flight): ${wall.toFixed(1)} ms per step; in step(): ${(inStep / steps).toFixed(1)} ms CPU, ${(waited / steps).toFixed(1)} ms waiting for the device (${steps} steps)`,
  );
}
await stepper.close();
model.dispose();
ctx.destroy();
