/**
 * The SwAV head forward and backward against tfjs cpu running swav.ts' own swavHead (dense, BatchNorm + ReLU,
 * dense, l2normalise, prototypes): z, scores, the running statistics' update, and the gradients of
 * sum(scores * dscores) with respect to the features and all eight weights; and normalisePrototypes.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ParamSet } from '../../../src/train/params.js';
import { DEFAULT_SWAV, normalisePrototypes, PROTOTYPES, swavHead, swavLoss } from '../../../src/train/swav.js';
import { roundToHalf } from '../../../src/train/webgpu/half.js';
import {
  createSwavHeadState,
  normalisePrototypesKernel,
  swavHeadBackward,
  swavHeadForward,
  type SwavHeadShape,
  productSplit,
} from '../../../src/train/webgpu/kernels/head.js';
import {
  createSwavTensors,
  swavBackward,
  swavForward,
  swavTensorList,
  type SwavStepConfig,
} from '../../../src/train/webgpu/kernels/swav.js';
import type { Dtype, GpuRunner, GpuTensor } from '../../../src/train/webgpu/runner.js';
import { openTestRunner, randomValues, scaledError, upload } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

/** The trainable weights in the order of the gradients compared, with the names swavHead reads. */
const NAMES = [
  'swav.proj1.w',
  'swav.proj1.b',
  'swav.proj1.bn.gamma',
  'swav.proj1.bn.beta',
  'swav.proj2.w',
  'swav.proj2.b',
  PROTOTYPES,
] as const;
const MATRICES = new Set<string>(['swav.proj1.w', 'swav.proj2.w', PROTOTYPES]);

function weightShapes(s: SwavHeadShape): number[][] {
  return [
    [s.features, s.hidden],
    [s.hidden],
    [s.hidden],
    [s.hidden],
    [s.hidden, s.dim],
    [s.dim],
    [s.dim, s.prototypes],
  ];
}

interface Data {
  features: Float32Array;
  weights: Float32Array[];
  running: Float32Array;
  dscores: Float32Array;
}

/** What swavHead reads: the weights by name, the running statistics as given, `pending` for their update. */
function headParams(ws: tf.Tensor[], running: tf.Tensor[], pending: ParamSet['pendingUpdates']): ParamSet {
  const get = (name: string) =>
    name.endsWith('.bn.mean') ? running[0] : name.endsWith('.bn.var') ? running[1] : ws[NAMES.indexOf(name as never)];
  return { get, pendingUpdates: pending } as unknown as ParamSet;
}

function headConfig(s: SwavHeadShape) {
  return { ...DEFAULT_SWAV, hidden: s.hidden, dim: s.dim, prototypes: s.prototypes };
}

/** The data as tfjs tensors (call inside a tidy). */
function tensorsOf(s: SwavHeadShape, d: Data) {
  const shapes = weightShapes(s);
  return {
    ws: d.weights.map((w, i) => tf.tensor(w, shapes[i])),
    running: [tf.tensor1d(d.running.subarray(0, s.hidden)), tf.tensor1d(d.running.subarray(s.hidden))],
    features: tf.tensor2d(d.features, [s.batch, s.features]),
  };
}

/** tfjs: z, scores and the running statistics (one forward), and the gradients (another, as a train step). */
function reference(s: SwavHeadShape, d: Data) {
  return tf.tidy(() => {
    const cfg = headConfig(s);
    const { ws, running, features } = tensorsOf(s, d);
    const pending: NonNullable<ParamSet['pendingUpdates']> = [];
    const out = swavHead(headParams(ws, running, pending), cfg, features, true);
    const updated = tf.concat(pending.map(([, v]) => v));
    const dscores = tf.tensor2d(d.dscores, [s.batch, s.prototypes]);
    const grads = tf.grads((f: tf.Tensor, ...w: tf.Tensor[]) =>
      tf.sum(tf.mul(swavHead(headParams(w, running, null), cfg, f as tf.Tensor2D, true).scores, dscores)),
    )([features, ...ws]);
    return {
      z: out.z.dataSync(),
      scores: out.scores.dataSync(),
      running: updated.dataSync(),
      grads: grads.map((g) => g.dataSync()),
    };
  });
}

function makeData(s: SwavHeadShape, act: Dtype, seed: number): Data {
  const round = (v: Float32Array) => (act === 'f16' ? roundToHalf(v) : v);
  const features = round(randomValues(s.batch * s.features, seed).map((v) => v * 2 + 0.5));
  const weights = weightShapes(s).map((shape, i) => {
    const w = randomValues(
      shape.reduce((a, b) => a * b, 1),
      seed + 1 + i,
    );
    // gamma around 1, the rest around 0; f16 weight copies are what the kernels read for the matrices.
    const v = NAMES[i] === 'swav.proj1.bn.gamma' ? w.map((x) => x * 0.5 + 1) : w;
    return MATRICES.has(NAMES[i]!) ? round(v) : v;
  });
  const running = randomValues(2 * s.hidden, seed + 9).map((v, i) => (i < s.hidden ? v : v * 0.5 + 1));
  return { features, weights, running, dscores: randomValues(s.batch * s.prototypes, seed + 10) };
}

/** The head's weights, features, gradients and state on the GPU; `tensors` lists what to release. */
function uploadHead(s: SwavHeadShape, act: Dtype, d: Data) {
  const tensors: GpuTensor[] = [];
  const keep = (t: GpuTensor) => (tensors.push(t), t);
  const shapes = weightShapes(s);
  const [w1, b1, gamma, beta, w2, b2, prototypes] = d.weights.map((w, i) =>
    keep(upload(runner, shapes[i]!, MATRICES.has(NAMES[i]!) ? act : 'f32', w)),
  );
  const running = keep(upload(runner, [2, s.hidden], 'f32', d.running));
  const w = { w1: w1!, b1: b1!, gamma: gamma!, beta: beta!, running, w2: w2!, b2: b2!, prototypes: prototypes! };
  const features = keep(upload(runner, [s.batch, s.features], act, d.features));
  const dfeatures = keep(runner.tensor([s.batch, s.features], act));
  const g = {
    dw1: keep(runner.tensor(shapes[0]!)),
    db1: keep(runner.tensor(shapes[1]!)),
    dgamma: keep(runner.tensor(shapes[2]!)),
    dbeta: keep(runner.tensor(shapes[3]!)),
    dw2: keep(runner.tensor(shapes[4]!)),
    db2: keep(runner.tensor(shapes[5]!)),
    dprototypes: keep(runner.tensor(shapes[6]!)),
  };
  const st = createSwavHeadState(runner, s);
  tensors.push(...Object.values(st));
  /** dfeatures then the weight gradients, in NAMES order. */
  const grads = [dfeatures, g.dw1, g.db1, g.dgamma, g.dbeta, g.dw2, g.db2, g.dprototypes];
  return { w, features, dfeatures, g, st, tensors, grads };
}

async function runCase(s: SwavHeadShape, act: Dtype, seed: number) {
  const d = makeData(s, act, seed);
  const { w, features, dfeatures, g, st, tensors, grads } = uploadHead(s, act, d);
  const dscores = upload(runner, [s.batch, s.prototypes], 'f32', d.dscores);
  tensors.push(dscores);
  const rec = await runner.record([
    ...swavHeadForward(s, features, w, st),
    ...swavHeadBackward(s, features, w, st, dscores, g, dfeatures),
  ]);
  rec.submit();
  const got = await Promise.all([st.z, st.scores, w.running, ...grads].map((t) => runner.read(t)));
  // Without dprototypes (frozen prototypes) the backward is the same less that product.
  const frozen = swavHeadBackward(s, features, w, st, dscores, { ...g, dprototypes: undefined }, dfeatures);
  const full = swavHeadBackward(s, features, w, st, dscores, g, dfeatures);
  expect(frozen.length).toBeLessThan(full.length);
  expect(full.filter((d) => d.buffers.includes(g.dprototypes)).length).toBeGreaterThan(0);
  expect(frozen.filter((d) => d.buffers.includes(g.dprototypes)).length).toBe(0);
  runner.release(...tensors);
  const want = reference(s, d);
  const wantAll = [want.z, want.scores, want.running, ...want.grads];
  const errors = Object.fromEntries(OUTPUTS.map((name, i) => [name, scaledError(got[i]!, wantAll[i]!)]));
  // b1 feeds BatchNorm, which subtracts its mean: its gradient is exactly 0 and both sides hold rounding noise
  // of sums like dbeta's, so it is measured in units of dbeta's largest value.
  const [db1, dbeta] = [OUTPUTS.indexOf('db1'), OUTPUTS.indexOf('dbeta')];
  errors.db1 = maxAbsDiff(got[db1]!, wantAll[db1]!) / maxAbs(wantAll[dbeta]!);
  return errors;
}

function maxAbs(v: ArrayLike<number>): number {
  return Array.from(v).reduce((m, x) => Math.max(m, Math.abs(x)), 0);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return Array.from(a).reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
}

/**
 * Odd sizes; also 3 crops of 3 for the chained test, which then reuses the head's compiled pipelines (on
 * lavapipe each head shape costs ~17 s of CPU to compile cold). A head batch of 1 never occurs (rows are
 * crops * batch, crops >= 2); batch 1 per crop is tested in sinkhorn.test.ts and swav-loss.test.ts.
 */
const CHAIN_SHAPE: SwavHeadShape = { batch: 9, features: 19, hidden: 24, dim: 11, prototypes: 37 };

const OUTPUTS = ['z', 'scores', 'running', 'dfeatures', 'dW1', 'db1', 'dgamma', 'dbeta', 'dW2', 'db2', 'dP'];

/**
 * f32: products over <= 72 terms and BatchNorm sums over <= 260 rows in another order than tfjs's, the
 * backward chaining four of them; measured <= ~1e-6 of each output's largest value. 1e-5 fails for a wrong
 * transpose, a missing bias, ReLU mask or normalisation term (>= 1e-2).
 */
const F32_TOL = 1e-5;

describe('SwAV head forward and backward match swav.ts on tfjs cpu', () => {
  it.each<[string, SwavHeadShape]>([['batch 9, odd widths (19 -> 24 -> 11, 37 prototypes)', CHAIN_SHAPE]])(
    'f32: %s',
    async (_, s) => {
      const e = await runCase(s, 'f32', 61);
      for (const name of OUTPUTS) expect(e[name], name).toBeLessThan(F32_TOL);
    },
  );

  // f16 features, weight copies (W1, W2, P) and dfeatures: the reference sees the same rounded values; every
  // internal tensor stays f32, so only dfeatures adds its own rounding (2^-11 of itself). Batch 260 and width
  // 300 split K in the weight gradients (K = batch), in h W2 + b2 (the bias added by the summing pass) and in
  // dfeatures (stored as f16 by that pass).
  it('f16 storage: batch 260, 40 -> 300 -> 16, 50 prototypes (split-K products)', async () => {
    if (!runner.ctx.info.features['shader-f16']) return; // lavapipe offers it: see conv2d.test.ts
    const s = { batch: 260, features: 40, hidden: 300, dim: 16, prototypes: 50 };
    for (const [m, n, k] of [
      [s.features, s.hidden, s.batch],
      [s.batch, s.dim, s.hidden],
      [s.batch, s.features, s.hidden],
    ])
      expect(productSplit(m!, n!, k!)).toBeGreaterThan(1);
    const e = await runCase(s, 'f16', 67);
    for (const name of OUTPUTS) expect(e[name], name).toBeLessThan((name === 'dfeatures' ? 2 ** -11 : 0) + F32_TOL);
  });
});

/** swav.ts' forward and backward in one recording; tfjs differentiates swavLoss(swavHead(.)). */
async function runChain(s: SwavHeadShape, crops: number, cfg: SwavStepConfig, seed: number) {
  const d = makeData(s, 'f32', seed);
  const { w, features, g, dfeatures, tensors, grads } = uploadHead(s, 'f32', d);
  const shape = { ...s, crops, batch: s.batch / crops };
  const t = createSwavTensors(runner, shape, cfg);
  tensors.push(...swavTensorList(t));
  const rec = await runner.record([
    ...swavForward(shape, cfg, features, w, t),
    ...swavBackward(shape, cfg, features, w, t, g, dfeatures),
  ]);
  rec.submit();
  const got = await Promise.all([t.loss, ...grads].map((x) => runner.read(x)));
  runner.release(...tensors);
  const want = tf.tidy(() => {
    const { ws, running, features: f } = tensorsOf(s, d);
    const lossOf = (x: tf.Tensor, ...wts: tf.Tensor[]) => {
      const { scores } = swavHead(headParams(wts, running, null), headConfig(s), x as tf.Tensor2D, true);
      return swavLoss(tf.split(scores, crops, 0) as tf.Tensor2D[], cfg);
    };
    const { value, grads: wantGrads } = tf.valueAndGrads(lossOf)([f, ...ws]);
    return [value.dataSync(), ...wantGrads.map((t) => t.dataSync())];
  });
  return Object.fromEntries(['loss', ...OUTPUTS.slice(3)].map((name, i) => [name, scaledError(got[i]!, want[i]!)]));
}

describe('swavForward + swavBackward (head, Sinkhorn, swapped loss) match tfjs differentiating swavLoss(swavHead(.))', () => {
  /**
   * The same f32 bound as each part: the chain adds the loss gradient's ~1e-6 (swav-loss.test.ts) to the
   * head's backward, which only sums it further. db1 is exactly zero (see runCase) and left out here.
   */
  it('3 crops of batch 3, assign [0, 1], odd widths', async () => {
    const cfg: SwavStepConfig = { temperature: 0.1, epsilon: 0.05, sinkhornIters: 3, cropsForAssign: [0, 1] };
    const e = await runChain(CHAIN_SHAPE, 3, cfg, 73);
    for (const [name, err] of Object.entries(e)) if (name !== 'db1') expect(err, name).toBeLessThan(F32_TOL);
  });
});

describe('normalisePrototypes matches swav.ts', () => {
  it('unit columns in place, and the f16 copy rewritten', async () => {
    const [dim, k] = [11, 37];
    const values = randomValues(dim * k, 71).map((v, i) => (i % k === 5 ? 0 : v * 3)); // column 5: zero norm
    const variable = tf.variable(tf.tensor2d(values, [dim, k]));
    normalisePrototypes({ vars: new Map([[PROTOTYPES, variable]]) } as unknown as ParamSet);
    const want = variable.dataSync();
    variable.dispose();
    const p = upload(runner, [dim, k], 'f32', values);
    const copy = runner.tensor([dim, k], 'f16');
    (await runner.record([{ kernel: normalisePrototypesKernel(dim, k, 'f16'), buffers: [p, copy] }])).submit();
    const [got, gotCopy] = await Promise.all([runner.read(p), runner.read(copy)]);
    runner.release(p, copy);
    expect(scaledError(got, want)).toBeLessThan(1e-6);
    expect(scaledError(gotCopy, roundToHalf(want))).toBeLessThan(1e-6);
  });
});
