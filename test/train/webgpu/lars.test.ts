/**
 * The LARS update against optim.ts' Lars on tfjs cpu: two steps (the second one uses the momentum) on a
 * parameter set that covers every branch: a conv weight, BatchNorm gamma and beta, a bias, a weight of zeros
 * (no norm: ratio 1) and a weight with a zero gradient; with BatchNorm/bias exclusion, and without it with
 * LARC's clipping at a rate where it binds. The f16 weight copy must be the masters rounded to binary16.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lars, type LarsConfig } from '../../../src/train/optim.js';
import { roundToHalf } from '../../../src/train/webgpu/half.js';
import { larsStep, larsTable, paramLayout } from '../../../src/train/webgpu/kernels/lars.js';
import type { GpuRunner } from '../../../src/train/webgpu/runner.js';
import { openTestRunner, randomValues, scaledError, upload } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

const PARAMS = [
  { name: 'stem.conv.w', shape: [3, 3, 3, 8] },
  { name: 'stem.bn.gamma', shape: [8] },
  { name: 'stem.bn.beta', shape: [8] },
  { name: 'head.w', shape: [17, 9] },
  { name: 'head.b', shape: [9] },
  { name: 'zeros.w', shape: [5, 3] },
  { name: 'nograd.w', shape: [131] },
  // More elements than the norms kernel has threads: each thread sums several.
  { name: 's1.b1.a.w', shape: [1, 1, 20, 35] },
];
const LRS = [0.5, 0.05];

interface State {
  w: Float32Array[];
  v: Float32Array[];
}

/** optim.ts' Lars over tfjs variables, LRS.length steps with the gradient of step k from `grads[k]`. */
function reference(config: LarsConfig, w0: Float32Array[], grads: Float32Array[][]): State {
  const vars = new Map(PARAMS.map((p, i) => [p.name, tf.variable(tf.tensor(w0[i]!, p.shape), true, `lars-test.${p.name}.${Math.random()}`)]));
  const lars = new Lars(config);
  LRS.forEach((lr, k) => {
    const g = Object.fromEntries(PARAMS.map((p, i) => [p.name, tf.tensor(grads[k]![i]!, p.shape)]));
    lars.apply(vars, g, lr);
    tf.dispose(Object.values(g));
  });
  const state = { w: [...vars.values()].map((v) => v.dataSync() as Float32Array), v: PARAMS.map((p) => lars.slots.get(p.name)!.dataSync() as Float32Array) };
  tf.dispose([...vars.values(), ...lars.slots.values()]);
  return state;
}

function flat(total: number, offsets: number[], parts: Float32Array[]): Float32Array {
  const out = new Float32Array(total);
  parts.forEach((p, i) => out.set(p, offsets[i]));
  return out;
}

async function runCase(config: LarsConfig, halfCopy: boolean, seed: number) {
  const layout = paramLayout(PARAMS);
  const offsets = layout.params.map((p) => p.offset);
  const w0 = layout.params.map((p, i) => (p.name === 'zeros.w' ? new Float32Array(p.size) : randomValues(p.size, seed + i)));
  const grads = LRS.map((_, k) => layout.params.map((p, i) => (p.name === 'nograd.w' ? new Float32Array(p.size) : randomValues(p.size, seed + 100 * (k + 1) + i))));
  const want = reference(config, w0, grads);
  // The gradient arrives multiplied by a loss scale of 8; the multiplier 1/8 undoes it.
  const lossScale = 8;
  const t = {
    w: upload(runner, [layout.total], 'f32', flat(layout.total, offsets, w0)),
    g: runner.tensor([layout.total]),
    v: upload(runner, [layout.total], 'f32', new Float32Array(layout.total)),
    table: runner.tensor([PARAMS.length, 4]),
    norms: runner.tensor([PARAMS.length, 2]),
    hyper: runner.tensor([2]),
    ...(halfCopy ? { w16: runner.tensor([layout.total], 'f16') } : {}),
  };
  runner.writeBytes(t.table, larsTable(layout, config));
  const rec = await runner.record(larsStep(layout, config, t));
  for (const [k, lr] of LRS.entries()) {
    runner.write(t.g, flat(layout.total, offsets, grads[k]!.map((g) => g.map((x) => x * lossScale))));
    runner.write(t.hyper, [lr, 1 / lossScale]);
    rec.submit();
  }
  const views = layout.params.map((p) => [runner.view(t.w, p.offset, p.shape), runner.view(t.v, p.offset, p.shape)] as const);
  const got = await Promise.all(views.map(async ([w, v]) => ({ w: await runner.read(w), v: await runner.read(v) })));
  const w16 = t.w16 ? await Promise.all(layout.params.map((p) => runner.read(runner.view(t.w16!, p.offset, p.shape)))) : [];
  runner.release(...Object.values(t));
  return layout.params.map((p, i) => ({
    name: p.name,
    v: scaledError(got[i]!.v, want.v[i]!),
    // Relative to how far the weights moved: tiny LARS steps on weights of size 1 would hide any error.
    w: scaledError(got[i]!.w.map((x, j) => x - w0[i]![j]!), want.w[i]!.map((x, j) => x - w0[i]![j]!)),
    half: w16.length ? Math.max(...w16[i]!.map((x, j) => Math.abs(x - roundToHalf(got[i]!.w)[j]!))) : 0,
  }));
}

/**
 * f32: norms are sums of <= 700 squares in another order than tfjs's, and each element's update is a few
 * operations, so momentum buffers agree to ~1e-7 of their size; the weights moved by lr * v are compared by
 * their change, which an f32 weight holds only to half an ulp of the weight (6e-8 for |w| < 1). Measured: momentum
 * <= 1e-7, weight change <= 1.2e-6 of its largest value; a wrong ratio, decay, clip or momentum is >= 1e-2.
 */
const V_TOL = 1e-5;
const W_TOL = 2e-5;

function expectClose(errors: Awaited<ReturnType<typeof runCase>>): void {
  for (const e of errors) {
    expect(e.v, `${e.name} momentum`).toBeLessThan(V_TOL);
    expect(e.w, `${e.name} weight change`).toBeLessThan(W_TOL);
    expect(e.half, `${e.name} f16 copy`).toBe(0);
  }
}

describe('LARS update matches optim.ts on tfjs cpu', () => {
  it('BatchNorm and biases excluded, weight decay, momentum (f32 masters only)', async () => {
    expectClose(await runCase({ momentum: 0.9, weightDecay: 0.05, trust: 0.1, excludeBnBias: true }, false, 41));
  });

  it('every parameter scaled, LARC clipping binding at the second step, f16 weight copy', async () => {
    const half = runner.ctx.info.features['shader-f16'] === true; // lavapipe offers it: see conv2d.test.ts
    expectClose(await runCase({ momentum: 0.8, weightDecay: 0.05, trust: 0.1, excludeBnBias: false, clip: true }, half, 43));
  });
});
