/**
 * The WebGPU backbone (engine/backbone.ts, built from regnet.ts' own regnetBody) against the tfjs model on the
 * cpu backend, in training mode: pooled features, every parameter gradient of loss = sum_r sum(features_r * R_r)
 * over one or two crop resolutions sharing the weights, and the running statistics after the step.
 * Two tiny RegNetYs with SE: DEEP has grouped 3x3 convs (2 and 4 groups), projection shortcuts and an identity
 * shortcut; SWAV_TINY is the SwAV program tests' model at their shapes.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParamSet } from '../../../src/train/params.js';
import { regnetBody, regnetFeatures, tfOps, type RegNetOps } from '../../../src/train/regnet.js';
import { regnetSpec, type RegNetSpec } from '../../../src/train/regnet-spec.js';
import {
  activationSlotNeeds,
  allocateActivationScratch,
  allocateBackboneWeights,
  backboneParams,
  buildBackbone,
  packByName,
  unpackByName,
} from '../../../src/train/webgpu/engine/backbone.js';
import { roundToHalf } from '../../../src/train/webgpu/half.js';
import type { Precision } from '../../../src/train/webgpu/precision.js';
import type { GpuRunner } from '../../../src/train/webgpu/runner.js';
import { openTestRunner, randomValues, scaledError } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

/** Stages [16 x 1, 32 x 2], group width 8, SE 0.25. */
const DEEP = regnetSpec('custom:3,16,8,2,8');

/**
 * Stages [8 x 1, 16 x 1]: the model of swav-program.test.ts and resume.test.ts, whose SwAV program runs the
 * backbone at batch 8 (two crops of 4 images) for 16 and for 8 pixels. At those shapes the pipelines lavapipe
 * compiles (about 30 s per model and precision on a cold shader cache) serve all three files.
 */
const SWAV_TINY = regnetSpec('custom:2,8,8,2,8');

/** A ParamSet with every variable built and the BatchNorm affine parameters random (a zero gamma hides a branch). */
function makeParams(spec: RegNetSpec, seed: number, precision: Precision = 'f32'): ParamSet {
  const ps = new ParamSet(seed);
  tf.tidy(() => regnetFeatures(ps, spec, tf.zeros([1, 32, 32, 3]), true));
  let k = 0;
  for (const [name, v] of ps.vars) {
    const r = randomValues(v.size, seed + 100 + k++);
    if (name.endsWith('.gamma')) v.assign(tf.tensor(r.map((x) => 1 + 0.5 * x)));
    else if (name.endsWith('.beta')) v.assign(tf.tensor(r.map((x) => 0.2 * x)));
    else if (name.endsWith('.mean')) v.assign(tf.tensor(r.map((x) => 0.1 * x)));
    else if (name.endsWith('.var')) v.assign(tf.tensor(r.map((x) => 1 + 0.5 * x)));
    // Mixed precision: conv and SE matrices are read from the f16 copy; the reference gets the same values.
    else if (precision === 'mixed' && name.endsWith('.w')) v.assign(tf.tensor(roundToHalf(v.dataSync()), v.shape));
  }
  return ps;
}

/** Identity that rounds its value and its gradient to f16: where the engine stores an activation or its gradient. */
const toHalf = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.tensor(roundToHalf(x.dataSync()), x.shape),
  gradFunc: (dy: tf.Tensor) => tf.tensor(roundToHalf(dy.dataSync()), dy.shape),
})) as never) as unknown as <T extends tf.Tensor>(x: T) => T;

/**
 * The model's ops for the reference: tfjs's own, and in mixed precision each activation (conv, BatchNorm, ReLU,
 * SE and residual outputs; not the f32 pooled features) rounded to f16 forward and backward, as the engine stores
 * them, so the comparison measures the engine and not f16 itself.
 */
function referenceOps(ps: ParamSet, precision: Precision): RegNetOps<tf.Tensor4D> {
  const ops = tfOps(ps, true);
  if (precision === 'f32') return ops;
  return {
    ...ops,
    conv: (...a) => toHalf(ops.conv(...a)),
    bn: (...a) => toHalf(ops.bn(...a)),
    relu: (x) => toHalf(ops.relu(x)),
    se: (...a) => toHalf(ops.se(...a)),
    add: (a, b) => toHalf(ops.add(a, b)),
  };
}

interface Crop {
  size: number;
  images: Float32Array;
  r: Float32Array;
}

/** tfjs cpu: features per crop, gradients by name, running statistics after the step's queued updates. */
function reference(spec: RegNetSpec, ps: ParamSet, batch: number, crops: Crop[], precision: Precision) {
  const features4 = (x: tf.Tensor4D) => regnetBody(referenceOps(ps, precision), spec, x) as unknown as tf.Tensor2D;
  const trainable = [...ps.trainable().values()];
  const inputs = crops.map((c) => tf.tensor4d(c.images, [batch, c.size, c.size, 3]));
  const features = crops.map((_, i) => tf.tidy(() => features4(inputs[i]!).dataSync()));
  ps.pendingUpdates = [];
  const { grads } = tf.variableGrads(() => {
    let loss = tf.scalar(0);
    crops.forEach((c, i) => {
      const f = features4(inputs[i]!);
      loss = tf.add(loss, tf.sum(tf.mul(f, tf.tensor(c.r, f.shape))));
    });
    return loss;
  }, trainable);
  const running = new Map<string, Float32Array>();
  for (const [v, value] of ps.pendingUpdates)
    running.set(v.name.slice(ps.prefix.length), value.dataSync() as Float32Array);
  ps.pendingUpdates = null;
  const byName = new Map(Object.entries(ps.byName(grads)).map(([n, g]) => [n, g.dataSync() as Float32Array]));
  tf.dispose([...inputs, ...Object.values(grads)]);
  return { features, grads: byName, running };
}

/** Crops of `batch` images at each size, with their features' loss weights R, from a seed. */
function makeCrops(spec: RegNetSpec, batch: number, sizes: number[], seed: number): Crop[] {
  const channels = spec.stages.at(-1)!.width;
  return sizes.map((size, i) => ({
    size,
    images: roundToHalf(randomValues(batch * size * size * 3, seed + 10 * i)),
    r: randomValues(batch * channels, seed + 10 * i + 1),
  }));
}

/**
 * One engine step over `crops` (one instance per crop, sharing weights), weights and running statistics from
 * `ps`: features per crop, gradients and running statistics by name, each BatchNorm's batch statistics of
 * the last instance, and the instances' bytes. `recompute: 'shared'` gives every instance one
 * ActivationScratch (as the SwAV program does), 'own' each its own slots.
 */
async function engineStep(
  spec: RegNetSpec,
  ps: ParamSet,
  batch: number,
  crops: Crop[],
  precision: Precision,
  recompute: 'off' | 'own' | 'shared' = 'off',
) {
  const values = (name: string) => ps.vars.get(name)!.dataSync() as Float32Array;
  const w = allocateBackboneWeights(runner, spec, precision);
  runner.writeBytes(w.weights, packByName(w.params, values));
  if (w.weights16) runner.write(w.weights16, packByName(w.params, values));
  runner.writeBytes(w.running, packByName(w.stats, values));
  const scratch =
    recompute === 'shared'
      ? allocateActivationScratch(
          runner,
          precision === 'mixed' ? 'f16' : 'f32',
          crops.map((c) => activationSlotNeeds(spec, { batch, size: c.size })),
        )
      : undefined;
  const instances = crops.map((c, i) =>
    buildBackbone(
      runner,
      spec,
      {
        batch,
        size: c.size,
        precision,
        gradients: i ? 'accumulate' : 'overwrite',
        recompute: recompute !== 'off',
        ...(scratch && { scratch }),
      },
      w,
    ),
  );
  instances.forEach((b, i) => (runner.write(b.input, crops[i]!.images), runner.write(b.featuresGrad, crops[i]!.r)));
  // One submission: every forward in crop order (the running statistics' updates in turn), then the backwards.
  const rec = await runner.record([...instances.flatMap((b) => b.forward), ...instances.flatMap((b) => b.backward)]);
  rec.submit();
  const features = await Promise.all(instances.map((b) => runner.read(b.features)));
  const grads = unpackByName(w.params, await runner.read(w.grads));
  const running = unpackByName(w.stats, await runner.read(w.running));
  const bnStats = new Map<string, Float32Array>();
  for (const [name, t] of instances.at(-1)!.bnStats) bnStats.set(name, await runner.read(t));
  const bytes =
    instances.reduce((n, b) => n + b.bytes, 0) + (scratch?.slots ?? []).reduce((n, t) => n + t.buffer.size, 0);
  instances.forEach((b) => b.release());
  runner.release(w.weights, w.grads, w.running, ...(w.weights16 ? [w.weights16] : []), ...(scratch?.slots ?? []));
  return { features, grads, running, bnStats, bytes };
}

async function runCase(spec: RegNetSpec, batch: number, sizes: number[], seed: number, precision: Precision = 'f32') {
  const ps = makeParams(spec, seed, precision);
  const crops = makeCrops(spec, batch, sizes, seed);
  const { features, grads, running } = await engineStep(spec, ps, batch, crops, precision);
  const want = reference(spec, ps, batch, crops, precision);
  ps.dispose();
  return {
    features: features.map((f, i) => scaledError(f, want.features[i]!)),
    grads: [...want.grads].map(([name, g]) => [name, scaledError(grads.get(name)!, g)] as const),
    running: [...want.running].map(([name, v]) => [name, scaledError(running.get(name)!, v)] as const),
  };
}

/** The bits of f32 values (toEqual on floats would take -0 for 0). */
const bits = (x: Float32Array) => new Uint32Array(x.buffer, x.byteOffset, x.length);

/**
 * Recomputation against none on the same step: every output bit for bit, for fewer bytes. The recomputed
 * activations are written by the first forward's own dispatches from the same inputs, and the running
 * statistics are updated by the first forward only (a second update, or a stale slot read by the backward,
 * changes them).
 */
async function recomputeCase(
  spec: RegNetSpec,
  batch: number,
  sizes: number[],
  seed: number,
  precision: Precision,
  mode: 'own' | 'shared',
) {
  const ps = makeParams(spec, seed, precision);
  const crops = makeCrops(spec, batch, sizes, seed);
  const off = await engineStep(spec, ps, batch, crops, precision, 'off');
  const on = await engineStep(spec, ps, batch, crops, precision, mode);
  ps.dispose();
  on.features.forEach((f, i) => expect(bits(f), `features ${sizes[i]}`).toEqual(bits(off.features[i]!)));
  expect(on.grads.size).toBe(backboneParams(spec).params.length);
  for (const [name, g] of on.grads) expect(bits(g), name).toEqual(bits(off.grads.get(name)!));
  for (const [name, v] of on.running) expect(bits(v), name).toEqual(bits(off.running.get(name)!));
  for (const [name, v] of on.bnStats) expect(bits(v), name).toEqual(bits(off.bnStats.get(name)!));
  expect(on.bytes).toBeLessThan(off.bytes);
  return { on: on.bytes, off: off.bytes };
}

/**
 * f32: the engine sums in another order than tfjs (tiles, split-K, tree reductions) through up to 12 layers and
 * their backward. Measured (lavapipe, 2026-12-02): features and running statistics <= 9.4e-7, gradients <= 2.2e-6
 * for SWAV_TINY at batch 8 and <= 2.1e-5 for DEEP at batch 1 (its last BatchNorm normalises over 4 values, which
 * amplifies rounding). 1e-4, the bound, still fails for a dropped gradient contribution or an overwritten
 * accumulation (measured 0.2 to 4).
 */
const F32_TOL = 1e-4;

/**
 * Mixed, against the reference whose activations and activation gradients are rounded to f16 where the engine
 * stores them (referenceOps): what is left is rounding that falls the other way (sums taken in another order,
 * a gradient's two contributions rounded before they are added). Measured (lavapipe, SWAV_TINY at batch 8,
 * 2026-12-02): features 6.6e-4, running statistics 5e-5, gradients <= 9.6e-4 of their largest value, a few f16
 * units (2^-11 = 4.9e-4); 16 units (2^-7) leaves 8x. Against the plain f32 model, DEEP at batch 3 was off by up to
 * 5.5e-2 (2026-12-01): that is f16 storage itself, through 12 BatchNorms over as few as 27 values each.
 */
const MIXED_TOL = 2 ** -7;

describe('WebGPU RegNetY backbone matches the tfjs model on cpu (training mode)', () => {
  it('has the ParamSet names, shapes and order', () => {
    const ps = makeParams(DEEP, 1);
    const { params, stats } = backboneParams(DEEP);
    const vars = [...ps.vars];
    expect(params).toEqual(vars.filter(([, v]) => v.trainable).map(([name, v]) => ({ name, shape: v.shape })));
    expect(stats).toEqual(vars.filter(([, v]) => !v.trainable).map(([name, v]) => ({ name, shape: v.shape })));
    ps.dispose();
  });

  it.each<[string, RegNetSpec, number, number[]]>([
    ['SWAV_TINY, batch 8, two resolutions sharing weights (16x16, 8x8)', SWAV_TINY, 8, [16, 8]],
    ['DEEP, batch 1, two resolutions sharing weights (23x23, 15x15)', DEEP, 1, [23, 15]],
  ])(
    'f32: %s',
    async (_, spec, batch, sizes) => {
      const e = await runCase(spec, batch, sizes, 41);
      e.features.forEach((err, i) => expect(err, `features ${sizes[i]}`).toBeLessThan(F32_TOL));
      expect(e.grads.length).toBe(backboneParams(spec).params.length);
      for (const [name, err] of e.grads) expect(err, name).toBeLessThan(F32_TOL);
      for (const [name, err] of e.running) expect(err, name).toBeLessThan(F32_TOL);
    },
    120_000,
  );

  it('mixed: SWAV_TINY, batch 8, 16x16 and 8x8 (f16 activations and weight copies)', async () => {
    if (!runner.ctx.info.features['shader-f16']) return; // lavapipe offers it: see conv2d.test.ts
    const e = await runCase(SWAV_TINY, 8, [16, 8], 43, 'mixed');
    e.features.forEach((err) => expect(err, 'features').toBeLessThan(MIXED_TOL));
    for (const [name, err] of e.grads) expect(err, name).toBeLessThan(MIXED_TOL);
    for (const [name, err] of e.running) expect(err, name).toBeLessThan(MIXED_TOL);
  }, 900_000);
});

// The shapes above, so no new pipeline is compiled: recomputation replays the forward's own dispatches.
describe('WebGPU backbone with activation recomputation equals it without, bit for bit', () => {
  it('f32: DEEP, batch 1, two resolutions sharing weights and activation slots (23x23, 15x15)', async () => {
    await recomputeCase(DEEP, 1, [23, 15], 47, 'f32', 'shared');
  }, 120_000);

  it('mixed: SWAV_TINY, batch 8, 16x16 and 8x8, slots of their own', async () => {
    if (!runner.ctx.info.features['shader-f16']) return; // lavapipe offers it: see conv2d.test.ts
    await recomputeCase(SWAV_TINY, 8, [16, 8], 49, 'mixed', 'own');
  }, 120_000);
});
