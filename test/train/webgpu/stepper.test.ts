/**
 * The WebGPU stepper's own parts, with a test double (fixed-gradients.ts) in place of the forward and backward
 * pass: the LARS step on the GPU against optim.ts' Lars on tfjs cpu over several steps across the end of the
 * frozen-prototypes phase (f32 and mixed precision), dynamic loss scaling skipping an injected overflow, the
 * loss read only when asked, a resumed loss scale counting on, the f16 weight copy, the bound on steps in
 * flight, a refused allocation, and the state's round trip GPU -> model -> checkpoint -> a fresh model on wasm.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { START } from '../../../src/augment/stream.js';
import { cropFloats, type ByteCrop, type CropDtype, type CropTensor } from '../../../src/crop-tensor.js';
import { cropSizes } from '../../../src/crops.js';
import { ConfigError } from '../../../src/errors.js';
import { openStore } from '../../../src/shards/store.js';
import { startBackend } from '../../../src/train/backend.js';
import { loadCheckpoint, restoreModel, saveCheckpoint } from '../../../src/train/checkpoint.js';
import { defaultTrainConfig, type TrainConfig } from '../../../src/train/config.js';
import { SwavModel } from '../../../src/train/model.js';
import { learningRate } from '../../../src/train/optim.js';
import { exportState, type ModelState } from '../../../src/train/parallel/state.js';
import { loopOptions } from '../../../src/train/trainer.js';
import { DEFAULT_SWAV, PROTOTYPES } from '../../../src/train/swav.js';
import { openDevice, type GpuDeviceInfo } from '../../../src/train/webgpu/device.js';
import { roundToHalf } from '../../../src/train/webgpu/half.js';
import type { ParamLayout } from '../../../src/train/webgpu/kernels/lars.js';
import { resolvePrecision, type Precision } from '../../../src/train/webgpu/precision.js';
import { pipelineNames } from '../../../src/options/declare.js';
import type { GpuRunner, Kernel } from '../../../src/train/webgpu/runner.js';
import {
  MAX_STEPS_IN_FLIGHT,
  WebGpuMemoryError,
  WebGpuStepper,
  WebGpuTrainingError,
  type GradientProgramFactory,
  type WebGpuStepResult,
} from '../../../src/train/webgpu/stepper.js';
import { recomputesOnGpu } from '../../../src/train/webgpu/program.js';
import { FixedGradients } from './fixed-gradients.js';
import { openTestRunner, randomValues, scaledError } from './gpu.js';

let runner: GpuRunner;
let dir: string;
beforeAll(async () => {
  runner = await openTestRunner(); // tfjs on the cpu backend, as the trainer keeps the model when training on a GPU
  dir = await mkdtemp(join(tmpdir(), 'ws-webgpu-stepper-'));
});
afterAll(async () => {
  runner?.ctx.destroy();
  await rm(dir, { recursive: true, force: true });
});

const FREEZE = 2;
/**
 * Weight changes and momentum against tfjs cpu, relative to their largest value: the norms are sums in another
 * order and each element's update a few f32 operations. Measured on lavapipe: weight change <= 6.7e-7, momentum
 * <= 1.8e-7 (f32 and mixed alike: the loss scale is a power of two); a wrong rate, ratio, decay or frozen
 * parameter is >= 1e-2.
 */
const TOL = 1e-5;

/** A tiny RegNet + head; a schedule and LARS settings under which every step moves the weights visibly. */
function tinyConfig(over: Partial<TrainConfig> = {}): TrainConfig {
  return defaultTrainConfig({
    model: 'custom:2,8,8,2,8',
    batchSize: 2,
    crops: '2x16@0.3-1,1x8@0.1-0.3',
    steps: 20,
    seed: 5,
    swav: { ...DEFAULT_SWAV, prototypes: 16, hidden: 16, dim: 8, freezePrototypesSteps: FREEZE },
    lars: { momentum: 0.9, weightDecay: 0.05, trust: 0.1, excludeBnBias: true },
    schedule: { baseLr: 0.5, finalLr: 0.05, warmupSteps: 1, startWarmupLr: 0.2 },
    ...over,
  });
}

/** Random crops of the config's shapes (the double ignores their values; the upload path does not). */
function crops(config: TrainConfig, seed: number): Array<{ size: number; data: Float32Array }> {
  return cropSizes(config.crops).map((size, i) => {
    // The loader hands crops in SharedArrayBuffers: the upload must take them.
    const data = new Float32Array(new SharedArrayBuffer(config.batchSize * size * size * 12));
    data.set(randomValues(data.length, seed * 10 + i));
    return { size, data };
  });
}

interface Started {
  stepper: WebGpuStepper;
  program: FixedGradients;
}

async function start(
  model: SwavModel,
  precision: Precision,
  lossScale?: object,
  cropDtype?: CropDtype,
): Promise<Started> {
  let program: FixedGradients | null = null;
  const stepper = await WebGpuStepper.start(model, {
    device: runner.ctx,
    precision,
    ...(lossScale && { lossScale }),
    ...(cropDtype && { cropDtype }),
    program: (r, spec) => (program = new FixedGradients(r, spec)),
  });
  return { stepper, program: program! };
}

/** Seeded gradients of every trainable parameter for step k, by name and flat in the GPU layout. */
function gradients(layout: ParamLayout, k: number): { byName: Map<string, Float32Array>; flat: Float32Array } {
  const byName = new Map<string, Float32Array>();
  const flat = new Float32Array(layout.total);
  layout.params.forEach((p, i) => {
    const g = randomValues(p.size, 1000 * (k + 1) + i);
    byName.set(p.name, g);
    flat.set(g, p.offset);
  });
  return { byName, flat };
}

/** optim.ts' update for step k, as SwavModel.step applies it (no prototype gradient while frozen). */
function referenceStep(model: SwavModel, grads: Map<string, Float32Array>, k: number): void {
  const { config } = model;
  const lr = learningRate(k, { ...config.schedule, totalSteps: config.steps });
  const vars = model.ps.trainable();
  const g: Record<string, tf.Tensor> = {};
  for (const [name, v] of vars)
    if (!(k < FREEZE && name === PROTOTYPES)) g[name] = tf.tensor(grads.get(name)!, v.shape);
  model.lars.apply(vars, g, lr);
  tf.dispose(Object.values(g));
}

const byName = (entries: Array<[string, Float32Array]>) => new Map(entries);

/** Bitwise equality of two states (weights, running statistics, momentum slots). */
function expectSameState(got: ModelState, want: ModelState): void {
  expect(got.vars.map(([n]) => n).sort()).toEqual(want.vars.map(([n]) => n).sort());
  expect(got.slots.map(([n]) => n).sort()).toEqual(want.slots.map(([n]) => n).sort());
  const g = byName([...got.vars, ...got.slots.map(([n, d]) => [`slot:${n}`, d] as [string, Float32Array])]);
  for (const [name, data] of [...want.vars, ...want.slots.map(([n, d]) => [`slot:${n}`, d] as [string, Float32Array])])
    expect(Buffer.from(g.get(name)!.buffer).equals(Buffer.from(data.buffer)), name).toBe(true);
}

describe('WebGpuStepper: the step tail against optim.ts on tfjs cpu', () => {
  it.each(['f32', 'mixed'] as const)(
    '%s: LARS steps across the end of the frozen-prototypes phase match Lars.apply; the f16 copy follows the masters',
    async (precision) => {
      const config = tinyConfig();
      const gpuModel = new SwavModel(config);
      const reference = new SwavModel(config); // same seed: same initial weights
      const { stepper, program } = await start(gpuModel, precision);
      try {
        const layout = stepper.buffers.params;
        const w0 = byName(exportState(reference).vars);
        const halfFollows = async () => {
          const [w, w16] = await Promise.all([runner.read(stepper.buffers.w), runner.read(stepper.buffers.w16!)]);
          expect(Buffer.from(w16.buffer).equals(Buffer.from(roundToHalf(w).buffer))).toBe(true);
        };
        if (precision === 'mixed') await halfFollows(); // uploaded with the masters
        const STEPS = 4;
        for (let k = 0; k < STEPS; k++) {
          const g = gradients(layout, k);
          program.set(g.flat, 0.5);
          await stepper.step(crops(config, k), k, { readLoss: k === STEPS - 1 });
          referenceStep(reference, g.byName, k);
          if (k === FREEZE - 1) {
            // Still frozen: the prototypes have not moved, and their momentum is zero, on the GPU as in tfjs.
            await stepper.sync();
            const after = byName(exportState(gpuModel).vars);
            expect(Buffer.from(after.get(PROTOTYPES)!.buffer).equals(Buffer.from(w0.get(PROTOTYPES)!.buffer))).toBe(
              true,
            );
            expect(gpuModel.lars.slots.has(PROTOTYPES)).toBe(false);
            expect(reference.lars.slots.has(PROTOTYPES)).toBe(false);
          }
        }
        await stepper.sync();
        const got = exportState(gpuModel);
        const want = exportState(reference);
        const gotVars = byName(got.vars);
        const gotSlots = byName(got.slots);
        expect([...gotSlots.keys()].sort()).toEqual(want.slots.map(([n]) => n).sort());
        for (const [name, w] of want.vars) {
          const before = w0.get(name)!;
          // Relative to how far the weights moved (as lars.test.ts): small LARS steps on weights of size 1 would
          // hide any error in the update.
          const e = scaledError(
            gotVars.get(name)!.map((x, i) => x - before[i]!),
            w.map((x, i) => x - before[i]!),
          );
          expect(e, `${name} weight change`).toBeLessThan(TOL);
        }
        for (const [name, v] of want.slots) {
          const e = scaledError(gotSlots.get(name)!, v);
          expect(e, `${name} momentum`).toBeLessThan(TOL);
        }
        if (precision === 'mixed')
          await halfFollows(); // written with the masters by every update
        else expect(stepper.buffers.w16).toBeUndefined();
      } finally {
        await stepper.close();
        gpuModel.dispose();
        reference.dispose();
      }
    },
  );

  it('mixed: an inf gradient skips its step and halves the scale; a clean run doubles it; the loss is read when asked', async () => {
    const config = tinyConfig({ swav: { ...tinyConfig().swav, freezePrototypesSteps: 0 } });
    const model = new SwavModel(config);
    const { stepper, program } = await start(model, 'mixed', { initial: 1024, growthInterval: 2 });
    try {
      const layout = stepper.buffers.params;
      const read = async () => [await runner.read(stepper.buffers.w), await runner.read(stepper.buffers.v)];
      const g0 = gradients(layout, 0);
      program.set(g0.flat, 1);
      // One submission per step, and no read-back inside it.
      const queue = runner.device.queue;
      const submit = queue.submit.bind(queue);
      let submissions = 0;
      queue.submit = (buffers) => (submissions++, submit(buffers));
      let first;
      try {
        first = await stepper.step(crops(config, 0), 0, { readLoss: false });
      } finally {
        queue.submit = submit;
      }
      expect(submissions).toBe(1);
      expect(first.lossSteps).toBe(0);
      expect(first.loss).toBeNaN();
      const before = await read();
      // An overflow in one parameter's gradient: the whole update is skipped.
      const bad = gradients(layout, 1).flat;
      bad[layout.params[3]!.offset + 1] = Infinity;
      program.set(bad, 2);
      const second = await stepper.step(crops(config, 1), 1);
      const after = await read();
      expect(Buffer.from(after[0]!.buffer).equals(Buffer.from(before[0]!.buffer)), 'weights unchanged').toBe(true);
      expect(Buffer.from(after[1]!.buffer).equals(Buffer.from(before[1]!.buffer)), 'momentum unchanged').toBe(true);
      // The mean loss of both steps (1 and 2) since the last read, with the counters.
      expect(second).toMatchObject({ loss: 1.5, lossSteps: 2, lossScale: { scale: 512, skipped: 1, grown: 0 } });
      // Two clean steps double the scale; the weights move again.
      program.set(gradients(layout, 2).flat, 4);
      await stepper.step(crops(config, 2), 2, { readLoss: false });
      const fourth = await stepper.step(crops(config, 3), 3);
      expect(fourth).toMatchObject({ loss: 4, lossSteps: 2, lossScale: { scale: 1024, skipped: 1, grown: 1 } });
      expect(Buffer.from((await runner.read(stepper.buffers.w)).buffer).equals(Buffer.from(after[0]!.buffer))).toBe(
        false,
      );
      expect(await stepper.lossScale()).toEqual({ scale: 1024, skipped: 1, grown: 1 });
      // Nothing unread: a flush says so; one more unread step is what the next flush returns.
      expect(await stepper.readLoss()).toMatchObject({ loss: NaN, lossSteps: 0 });
      await stepper.step(crops(config, 4), 4, { readLoss: false });
      expect(await stepper.readLoss()).toMatchObject({ loss: 4, lossSteps: 1 });
    } finally {
      await stepper.close();
      model.dispose();
    }
  });
});

describe('WebGpuStepper: steps in flight and the loss scale of a resume', () => {
  it('step n waits for step n - 2 to finish before it uploads and submits, reports the wait, and its crops arrive', async () => {
    const config = tinyConfig();
    const model = new SwavModel(config);
    const { stepper, program } = await start(model, 'f32');
    const queue = runner.device.queue;
    const done = queue.onSubmittedWorkDone.bind(queue);
    const submit = queue.submit.bind(queue);
    const write = queue.writeBuffer.bind(queue);
    // The device's completions are held back until the test lets each through.
    const held: Array<() => void> = [];
    let [submissions, writes] = [0, 0];
    queue.onSubmittedWorkDone = () => {
      const real = done();
      return new Promise((resolve) => held.push(() => void real.then(resolve)));
    };
    queue.submit = (b) => (submissions++, submit(b));
    queue.writeBuffer = (...a: Parameters<GPUQueue['writeBuffer']>) => (writes++, write(...a));
    try {
      program.set(gradients(stepper.buffers.params, 0).flat, 1);
      for (let k = 0; k < MAX_STEPS_IN_FLIGHT; k++) {
        const r = await stepper.step(crops(config, k), k, { readLoss: false });
        expect(r.gpuWaitMs).toBeGreaterThanOrEqual(0);
      }
      expect(submissions).toBe(MAX_STEPS_IN_FLIGHT);
      let next: WebGpuStepResult | null = null;
      const pending = stepper.step(crops(config, 2), 2, { readLoss: false }).then((r) => (next = r));
      const before = { submissions, writes };
      await new Promise((resolve) => setTimeout(resolve, 100));
      // Step 0 has not finished: step 2 has neither written to the queue nor been submitted.
      expect(next).toBeNull();
      expect({ submissions, writes }).toEqual(before);
      held[0]!();
      await pending;
      expect(submissions).toBe(MAX_STEPS_IN_FLIGHT + 1);
      expect(writes).toBeGreaterThan(before.writes);
      expect(next!.gpuWaitMs).toBeGreaterThanOrEqual(90);
      held.splice(0).forEach((release) => release());
      // Through the ring's other slot and back to the first: each step's crops land in the crop tensors,
      // from the loader's shared arrays and from tfjs tensors alike.
      for (let k = 3; k < 6; k++) {
        const batch = crops(config, k);
        const tensors = k === 4 ? batch.map((c) => tf.tensor4d(c.data, [config.batchSize, c.size, c.size, 3])) : null;
        const p = stepper.step(tensors ?? batch, k, { readLoss: false });
        held.splice(0).forEach((release) => release());
        await p;
        tf.dispose(tensors ?? []);
        const landed = await Promise.all(stepper.inputs.map((t) => runner.read(t)));
        landed.forEach((got, i) => expect(got, `step ${k} crop ${i}`).toEqual(batch[i]!.data));
      }
    } finally {
      Object.assign(queue, { onSubmittedWorkDone: done, submit, writeBuffer: write });
      for (const release of held) release();
      await stepper.close();
      model.dispose();
    }
  });

  it.each([
    ['at the first batch of bytes', undefined],
    ["at start (told cropDtype 'uint8')", 'uint8'],
  ] as const)(
    "8-bit crops are decoded on the device into the inputs, in the step's one submission; floats still work after; staging made %s",
    async (_, told) => {
      // Batch 1 with a 9 px crop: 243 bytes, not whole words (the padded path); the others 768.
      const config = tinyConfig({ batchSize: 1, crops: '2x16@0.3-1,1x9@0.1-0.3' });
      const model = new SwavModel(config);
      const { stepper, program } = await start(model, 'f32', undefined, told);
      const queue = runner.device.queue;
      const submit = queue.submit.bind(queue);
      let submissions = 0;
      queue.submit = (b) => (submissions++, submit(b));
      const norm = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } as const;
      const bytes = (k: number, shared: boolean): ByteCrop[] =>
        [16, 16, 9].map((size, i) => {
          const n = size * size * 3;
          const data = new Uint8Array(shared ? new SharedArrayBuffer(n) : new ArrayBuffer(n));
          data.forEach((_, j) => (data[j] = (j * 37 + k * 11 + i * 5) % 256)); // every byte value, 0 and 255 too
          return { size, dtype: 'uint8', data, ...norm };
        });
      try {
        program.set(gradients(stepper.buffers.params, 0).flat, 1);
        const atStart = stepper.memory().crops;
        for (const [k, shared] of [
          [0, true],
          [1, false],
        ] as const) {
          const batch = bytes(k, shared);
          const before = submissions;
          await stepper.step(batch, k, { readLoss: false });
          expect(submissions - before, `step ${k}: one submission`).toBe(1);
          const landed = await Promise.all(stepper.inputs.map((t) => runner.read(t)));
          // A driver may fuse the multiply-add the CPU rounds twice: 1 ULP apart (values < 3: 2.4e-7).
          landed.forEach((got, i) => {
            const want = cropFloats(batch[i]!);
            expect(got.length).toBe(want.length);
            expect(Math.max(...got.map((v, j) => Math.abs(v - want[j]!))), `step ${k} crop ${i}`).toBeLessThan(5e-7);
          });
        }
        // The staged bytes are counted: from start when it was told, else from the first batch of bytes.
        const staged = 4 * [16, 16, 9].reduce((n, size) => n + Math.ceil((size * size * 3) / 4), 0);
        const own = 4 * [16, 16, 9].reduce((n, size) => n + size * size * 3, 0); // this program's own f32 inputs
        expect(atStart).toBe(own + (told ? staged : 0));
        expect(stepper.memory().crops).toBe(own + staged);
        const floats = crops(config, 2);
        await stepper.step(floats, 2, { readLoss: false });
        const landed = await Promise.all(stepper.inputs.map((t) => runner.read(t)));
        landed.forEach((got, i) => expect(got, `float crop ${i}`).toEqual(floats[i]!.data));
        const mixed = [...bytes(3, false).slice(0, 2), floats[2]!];
        await expect(stepper.step(mixed, 3)).rejects.toThrow(/2 8-bit and 1 float crops/);
        // Bytes without their dtype would land in the float inputs as garbage: refused, naming the crop.
        const undeclared = bytes(3, false).map(({ size, data }) => ({ size, data }) as unknown as CropTensor);
        await expect(stepper.step(undeclared, 3)).rejects.toThrow(
          /^crop 0 of the batch: a FloatCrop's data must be a Float32Array, got Uint8Array \(8-bit crops need dtype 'uint8', mean and std\)$/,
        );
        const ragged = bytes(3, false).map((c) => ({ ...c, data: c.data.subarray(3) }));
        await expect(stepper.step(ragged, 3)).rejects.toThrow(
          /^crop 0 holds 765 values, not whole 16x16x3 images; the WebGPU step is recorded for 1 of 16x16$/,
        );
        const other = bytes(3, false).map((c) => ({ ...c, std: [0.5, 0.5, 0.5] as const }));
        await expect(stepper.step(other, 3)).rejects.toThrow(
          /normalised with mean .* std 0\.5,0\.5,0\.5; the run's first batch had/,
        );
      } finally {
        queue.submit = submit;
        await stepper.close();
        model.dispose();
      }
    },
  );

  it('mixed: a resumed loss scale continues its clean run, and its skipped and grown counts', async () => {
    // The shapes and growth interval of the loss-scaling test above: its pipelines, no new compiles.
    const config = tinyConfig({ swav: { ...tinyConfig().swav, freezePrototypesSteps: 0 } });
    const model = new SwavModel(config);
    const resumed = { initial: 512, cleanRun: 1, skipped: 3, grown: 2 };
    const { stepper, program } = await start(model, 'mixed', { ...resumed, growthInterval: 2 });
    try {
      expect(await stepper.lossScaleState()).toEqual({ scale: 512, cleanRun: 1, skipped: 3, grown: 2 });
      program.set(gradients(stepper.buffers.params, 0).flat, 1);
      const r = await stepper.step(crops(config, 0), 0);
      // One clean step completes the run of two: the scale doubles, and the counts go on from the checkpoint's.
      expect(r.lossScale).toEqual({ scale: 1024, skipped: 3, grown: 3 });
      expect(await stepper.lossScaleState()).toEqual({ scale: 1024, cleanRun: 0, skipped: 3, grown: 3 });
    } finally {
      await stepper.close();
      model.dispose();
    }
  });
});

describe('WebGpuStepper: state round trip', () => {
  it('start then sync gives the model back bit for bit (weights, running statistics, momentum slots)', async () => {
    const model = new SwavModel(tinyConfig());
    // Non-trivial state: running statistics away from 0/1, momentum for some parameters only.
    for (const [name, v] of model.ps.vars)
      if (!v.trainable) v.assign(tf.tensor(randomValues(v.size, name.length), v.shape));
    const names = [...model.ps.trainable().keys()].slice(0, 3);
    for (const name of names) {
      const w = model.ps.vars.get(name)!;
      model.lars.slots.set(name, tf.variable(tf.tensor(randomValues(w.size, 7), w.shape), false));
    }
    const before = exportState(model);
    const { stepper } = await start(model, 'f32');
    try {
      const params = stepper.buffers.params.total * 4;
      // Weights, momentum, gradients, statistics and the tail's small buffers; no f16 copy in f32.
      expect(stepper.memory().state).toBeGreaterThan(3 * params);
      expect(stepper.memory().state).toBeLessThan(4 * params);
      expect(stepper.memoryLine()).toMatch(/^GPU memory: [\d.]+ MiB and the gradient program \(state/);
      await stepper.sync();
      expectSameState(exportState(model), before);
    } finally {
      await stepper.close();
      model.dispose();
    }
  });

  it('sync -> checkpoint -> a fresh model on wasm holds the GPU state exactly', async () => {
    const config = tinyConfig();
    const model = new SwavModel(config);
    const { stepper, program } = await start(model, 'mixed');
    let fresh: SwavModel | null = null;
    try {
      const layout = stepper.buffers.params;
      // Running statistics as a forward pass would leave them (written by the double on the GPU).
      program.setRunning(randomValues(stepper.buffers.stats.total, 99).map((x) => x + 2));
      for (let k = 0; k < FREEZE + 1; k++) {
        program.set(gradients(layout, k).flat, 1);
        await stepper.step(crops(config, k), k, { readLoss: false });
      }
      await stepper.sync();
      const gpu = exportState(model);
      const [w, running] = await Promise.all([runner.read(stepper.buffers.w), runner.read(stepper.buffers.running)]);
      for (const p of layout.params)
        expect(byName(gpu.vars).get(p.name)).toEqual(w.subarray(p.offset, p.offset + p.size));
      for (const p of stepper.buffers.stats.params)
        expect(byName(gpu.vars).get(p.name)).toEqual(running.subarray(p.offset, p.offset + p.size));
      expect(gpu.slots.length).toBe(layout.params.length); // every parameter has been updated once
      // The engine binds a BatchNorm's statistics as one [2, C] view: its variance follows its mean.
      for (const p of stepper.buffers.stats.params.filter((q) => q.name.endsWith('.var'))) {
        const mean = stepper.buffers.stats.params.find((q) => q.name === `${p.name.slice(0, -4)}.mean`)!;
        expect(p.offset, p.name).toBe(mean.offset + mean.size);
      }
      const out = await openStore(join(dir, 'roundtrip'));
      const key = await saveCheckpoint(out, model, FREEZE + 1, START);
      await startBackend('wasm');
      try {
        fresh = new SwavModel(config);
        restoreModel(fresh, await loadCheckpoint(out, key));
        expect(tf.getBackend()).toBe('wasm');
        expectSameState(exportState(fresh), gpu);
      } finally {
        fresh?.dispose();
        fresh = null;
        await tf.setBackend('cpu');
      }
    } finally {
      await stepper.close();
      model.dispose();
    }
  });
});

describe('WebGpuStepper: refused inputs', () => {
  const info = (f16: boolean) =>
    ({ description: 'test adapter', features: { 'shader-f16': f16 } }) as unknown as GpuDeviceInfo;

  it('precision: mixed by default where shader-f16 is offered, f32 otherwise; mixed without f16 is refused', () => {
    expect(resolvePrecision(undefined, info(true))).toBe('mixed');
    expect(resolvePrecision(undefined, info(false))).toBe('f32');
    expect(resolvePrecision('f32', info(true))).toBe('f32');
    expect(() => resolvePrecision('mixed', info(false))).toThrow(ConfigError);
    expect(() => resolvePrecision('mixed', info(false))).toThrow(/shader-f16.*use --precision f32$/);
    expect(() => resolvePrecision('mixed', info(false), pipelineNames('train'))).toThrow(/use train\.precision=f32$/);
    expect(() => resolvePrecision('bf16' as Precision, info(true))).toThrow(/one of f32, mixed/);
  });

  it('--precision: refused on a backend other than webgpu, and an unknown value', async () => {
    const out = await openStore(join(dir, 'options'));
    const o = { out, config: tinyConfig() };
    expect(() => loopOptions({ ...o, backend: 'wasm', precision: 'f32' })).toThrow(
      /^--precision f32 applies to the webgpu backend, this run asks for --backend wasm$/,
    );
    expect(() => loopOptions({ ...o, backend: 'wasm', precision: 'f32', names: pipelineNames('train') })).toThrow(
      /^train\.precision=f32 applies to the webgpu backend, this run asks for train\.backend=wasm$/,
    );
    expect(() => loopOptions({ ...o, precision: 'f16' as Precision })).toThrow(/one of f32, mixed/);
    expect(loopOptions({ ...o, backend: 'webgpu', precision: 'mixed' }).precision).toBe('mixed');
  });

  it('a SwAV queue with a gradient program that has none, and a batch of another shape than the recorded one', async () => {
    const queued = new SwavModel(tinyConfig({ queue: { length: 4, startStep: 0 } }));
    await expect(start(queued, 'f32')).rejects.toThrow(/no SwAV queue/);
    queued.dispose();
    // Sinkhorn runs a workgroup per row: queue + batch past 65535 is refused before anything is made.
    const long = new SwavModel(tinyConfig({ queue: { length: 65534, startStep: 0 } }));
    await expect(start(long, 'f32')).rejects.toThrow(
      /^the WebGPU engine's Sinkhorn takes at most 65535 rows, queue and batch together; --queue-length 65534 with batch 2 is 65536: use --queue-length 65532 or less$/,
    );
    long.dispose();
    const config = tinyConfig();
    const model = new SwavModel(config);
    const failing = WebGpuStepper.start(model, {
      device: runner.ctx,
      program: () => {
        throw new Error('no program for this shape');
      },
    });
    await expect(failing).rejects.toThrow('no program for this shape');
    const { stepper } = await start(model, 'f32'); // the shared device still works
    expect(stepper.description).toMatch(/^WebGPU .*; precision f32 \(as asked\)/);
    try {
      const short = crops(config, 0).map((c) => ({ size: c.size, data: c.data.subarray(0, c.data.length / 2) }));
      await expect(stepper.step(short, 0)).rejects.toThrow(WebGpuTrainingError);
      await expect(stepper.step(crops(config, 0).slice(1), 0)).rejects.toThrow(/2 crops; the run has 3/);
    } finally {
      await stepper.close();
      await stepper.close();
      model.dispose();
    }
    await expect(stepper.step(crops(config, 0), 0)).rejects.toThrow(/closed/);
  });

  it('a buffer the device cannot make: a WebGpuMemoryError naming the bytes, model, batch and crops', async () => {
    const config = tinyConfig({ recompute: 'off' }); // auto would build again with recomputation (next test)
    const model = new SwavModel(config);
    const what = /model custom:2,8,8,2,8, batch 2, crops 2x16@0\.3-1,1x8@0\.1-0\.3: /;
    const advice = /; use a smaller --batch, or --recompute on$/;
    try {
      // Above maxBufferSize: refused before Dawn is asked (a program whose activations outgrow the device).
      const limit = runner.device.limits.maxBufferSize;
      const elements = Math.floor(limit / 4) + 1;
      const tooBig = WebGpuStepper.start(model, {
        device: runner.ctx,
        precision: 'f32',
        program: (r, spec) => {
          r.tensor([elements]);
          return new FixedGradients(r, spec);
        },
      });
      const err = (await tooBig.catch((e: unknown) => e)) as WebGpuMemoryError;
      expect(err).toBeInstanceOf(WebGpuMemoryError);
      expect(err.message).toMatch(what);
      expect(err.message).toMatch(new RegExp(`a buffer of ${elements * 4} bytes is above the device's maxBufferSize`));
      expect(err.message).toMatch(advice);
      expect(err.bytes).toBeGreaterThan(limit);
      // A pipeline's run names its train keys instead.
      const named = WebGpuStepper.start(model, {
        device: runner.ctx,
        precision: 'f32',
        names: pipelineNames('train'),
        program: (r, spec) => {
          r.tensor([elements]);
          return new FixedGradients(r, spec);
        },
      });
      await expect(named).rejects.toThrow(/; use a smaller train\.batch, or train\.recompute=on$/);
      // One the device makes but cannot bind (above maxStorageBufferBindingSize: 128 MiB on lavapipe, where a
      // batch of 256 crops of 224 px, 147 MiB, is past it): record() meets it.
      const binding = runner.device.limits.maxStorageBufferBindingSize;
      const unbound = WebGpuStepper.start(model, {
        device: runner.ctx,
        precision: 'f32',
        program: (r, spec) => {
          const inner = new FixedGradients(r, spec);
          const big = r.tensor([Math.floor(binding / 4) + 1]);
          const touch: Kernel = {
            key: 'test-touch',
            code: '@group(0) @binding(0) var<storage, read_write> x: array<f32>;\n@compute @workgroup_size(1) fn main() { x[0] = 0.0; }',
            workgroups: [1, 1, 1],
          };
          return {
            dispatches: (io) => [...inner.dispatches(io), { kernel: touch, buffers: [big] }],
            release: () => (inner.release(), r.release(big)),
          };
        },
      });
      const tooWide = (await unbound.catch((e: unknown) => e)) as WebGpuMemoryError;
      expect(tooWide).toBeInstanceOf(WebGpuMemoryError);
      expect(tooWide.message).toMatch(what);
      expect(tooWide.message).toMatch(/a buffer of [\d.]+ MiB is too large to bind, at most .* per binding/);
      expect(tooWide.message).toMatch(advice);
      // One the device refuses itself (an invalid usage injected into the first buffer): the error scopes find it,
      // after the 8-bit crops' staging is made. The shared device gets every buffer the start made back.
      const device = runner.device;
      const create = device.createBuffer;
      const made: Array<{ size: number; destroyed: boolean }> = [];
      device.createBuffer = (d) => {
        const buffer = create.call(device, made.length === 0 ? { ...d, usage: d.usage | 0x0001 } : d); // + MAP_READ
        const entry = { size: d.size, destroyed: false };
        made.push(entry);
        const destroy = buffer.destroy.bind(buffer);
        buffer.destroy = () => ((entry.destroyed = true), destroy());
        return buffer;
      };
      let refused: unknown;
      try {
        refused = await WebGpuStepper.start(model, {
          device: runner.ctx,
          precision: 'f32',
          cropDtype: 'uint8',
          program: (r, spec) => new FixedGradients(r, spec),
        }).catch((e: unknown) => e);
      } finally {
        device.createBuffer = create;
      }
      const staging = 4 * Math.ceil((config.batchSize * 16 * 16 * 3) / 4); // one 16 px crop's bytes, as words
      expect(made.some((b) => b.size === staging)).toBe(true);
      expect(made.filter((b) => !b.destroyed)).toEqual([]);
      expect(refused).toBeInstanceOf(WebGpuMemoryError);
      expect((refused as Error).message).toMatch(what);
      expect((refused as Error).message).toMatch(/the device refused a buffer, at most .* per buffer/);
      expect((refused as WebGpuMemoryError).bytes).toBeGreaterThan(0);
      // The shared device still makes a stepper.
      const { stepper } = await start(model, 'f32');
      await stepper.close();
    } finally {
      model.dispose();
    }
  });

  it('a cropDtype other than float32 or uint8 (from JavaScript): a ConfigError naming it, before the device', async () => {
    const model = new SwavModel(tinyConfig());
    try {
      const started = WebGpuStepper.start(model, {
        device: runner.ctx,
        cropDtype: 'u8' as CropDtype,
        program: (r, spec) => new FixedGradients(r, spec),
      });
      await expect(started).rejects.toThrow(ConfigError);
      await expect(started).rejects.toThrow(/^cropDtype must be 'float32' or 'uint8', got 'u8'$/);
    } finally {
      model.dispose();
    }
  });

  it("weights above the device's binding limit: refused before anything is built, with no batch advice", async () => {
    const config = tinyConfig({ recompute: 'auto' }); // auto must not build it again with recomputation
    const model = new SwavModel(config, { backend: 'webgpu' });
    const params = [...model.ps.vars.values()].filter((v) => v.trainable).reduce((n, v) => n + v.size, 0);
    const limits = { ...runner.ctx.info.limits, maxStorageBufferBindingSize: 4 * params - 4 };
    const small = { ...runner.ctx, info: { ...runner.ctx.info, limits } };
    let built = 0;
    try {
      const err = (await WebGpuStepper.start(model, {
        device: small,
        precision: 'f32',
        program: (r, spec) => (built++, new FixedGradients(r, spec)),
      }).catch((e: unknown) => e)) as WebGpuMemoryError;
      expect(err).toBeInstanceOf(WebGpuMemoryError);
      expect(err.message).toMatch(
        /^model custom:2,8,8,2,8 has 0\.\d M parameters: their f32 buffer of [\d.]+ MiB is above the device's [\d.]+ MiB per buffer binding, whatever the batch; train a smaller model/,
      );
      expect([err.bytes, err.batchDependent, built]).toEqual([4 * params, false, 0]);
    } finally {
      model.dispose();
    }
  });

  it('more crops per step than the kernels dispatch: a ConfigError naming the largest batch, before the device', async () => {
    const model = new SwavModel(tinyConfig({ batchSize: 30_000 }), { backend: 'webgpu' }); // 3 crops each
    try {
      const start = (names?: ReturnType<typeof pipelineNames>) =>
        WebGpuStepper.start(model, { program: (r, spec) => new FixedGradients(r, spec), names });
      await expect(start()).rejects.toThrow(
        /^the WebGPU engine runs at most 65535 crops per step; batch 30000 x 3 crops is 90000: use --batch 21845 or less$/,
      );
      await expect(start(pipelineNames('train'))).rejects.toThrow(/: use train\.batch=21845 or less$/);
    } finally {
      model.dispose();
    }
  });

  it('recompute auto: a step the device cannot make is built again with recomputation, and the memory line says so', async () => {
    const model = new SwavModel(tinyConfig({ recompute: 'auto' }));
    const elements = Math.floor(runner.device.limits.maxBufferSize / 4) + 1;
    const built: boolean[] = [];
    // A program whose activations outgrow the device unless it recomputes them.
    const program: GradientProgramFactory = (r, spec) => {
      built.push(recomputesOnGpu(spec.config));
      if (!recomputesOnGpu(spec.config)) r.tensor([elements]);
      return new FixedGradients(r, spec);
    };
    try {
      const stepper = await WebGpuStepper.start(model, { device: runner.ctx, precision: 'f32', program });
      expect(built).toEqual([false, true]);
      expect(stepper.memoryLine()).toMatch(
        /; recompute on \(auto: without it the device could not make [\d.]+ GiB of buffers\)\)$/,
      );
      await stepper.step(crops(model.config, 0), 0); // the rebuilt step runs
      await stepper.close();
      // Set to off, the failure is the run's; set to on, it is tried once, and the advice no longer names it.
      built.length = 0;
      const off = new SwavModel(tinyConfig({ recompute: 'off' }));
      await expect(WebGpuStepper.start(off, { device: runner.ctx, precision: 'f32', program })).rejects.toThrow(
        /, or --recompute on$/,
      );
      expect(built).toEqual([false]);
      const alwaysTooBig: GradientProgramFactory = (r, spec) => (r.tensor([elements]), new FixedGradients(r, spec));
      const auto = WebGpuStepper.start(model, { device: runner.ctx, precision: 'f32', program: alwaysTooBig });
      await expect(auto).rejects.toThrow(/; use a smaller --batch$/);
      // Without auto's retry (off, on) the plain line says which.
      const plain = await WebGpuStepper.start(off, {
        device: runner.ctx,
        precision: 'f32',
        program: (r, spec) => new FixedGradients(r, spec),
      });
      expect(plain.memoryLine()).toMatch(/; recompute off\)$/);
      await plain.close();
      off.dispose();
    } finally {
      model.dispose();
    }
  });

  it('a lost device fails the next step and sync with its reason', async () => {
    const ctx = await openDevice();
    const model = new SwavModel(tinyConfig());
    const stepper = await WebGpuStepper.start(model, {
      device: ctx,
      precision: 'f32',
      program: (r, spec) => new FixedGradients(r, spec),
    });
    try {
      ctx.destroy();
      await ctx.device.lost;
      await new Promise((resolve) => setImmediate(resolve));
      await expect(stepper.step(crops(model.config, 0), 0)).rejects.toThrow(/device was lost \(destroyed\)/);
      await expect(stepper.sync()).rejects.toThrow(WebGpuTrainingError);
    } finally {
      await stepper.close();
      model.dispose();
    }
  });
});
