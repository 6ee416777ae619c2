/**
 * The swapped-prediction loss and its gradient with respect to every crop's scores against tfjs cpu running
 * swav.ts' own swavLoss (codes from its localCodes: sinkhorn under stopGradient), the GPU kernels given the
 * same codes (sinkhorn.test.ts tests the GPU's codes, head.test.ts the chain): loss = tf.valueAndGrads' value,
 * dscores = its gradient, on odd shapes and 2 to 4 crops.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localCodes, swavLoss, type SwavConfig } from '../../../src/train/swav.js';
import { LOSS_SCALE } from '../../../src/train/webgpu/kernels/loss-scale.js';
import {
  createSwavLossState,
  swavLossBackward,
  swavLossForward,
  type SwavLossShape,
} from '../../../src/train/webgpu/kernels/swav-loss.js';
import type { GpuRunner, GpuTensor } from '../../../src/train/webgpu/runner.js';
import { openTestRunner, randomValues, scaledError, upload } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
});
afterAll(() => runner?.ctx.destroy());

type Cfg = Pick<SwavConfig, 'temperature' | 'epsilon' | 'sinkhornIters' | 'cropsForAssign'>;

function reference(s: SwavLossShape, cfg: Cfg, scores: Float32Array) {
  return tf.tidy(() => {
    const parts = tf.split(tf.tensor2d(scores, [s.crops * s.batch, s.prototypes]), s.crops, 0) as tf.Tensor2D[];
    const { value, grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => swavLoss(xs as tf.Tensor2D[], cfg))(parts);
    return { loss: value.dataSync()[0]!, dscores: tf.concat(grads, 0).dataSync() };
  });
}

/** The model's codes (localCodes: sinkhorn under stopGradient) of each assignment crop, [A, B, K]. */
function modelCodes(s: SwavLossShape, cfg: Cfg, scores: Float32Array): Float32Array {
  return tf.tidy(() => {
    const parts = tf.split(tf.tensor2d(scores, [s.crops * s.batch, s.prototypes]), s.crops, 0) as tf.Tensor2D[];
    const codes = localCodes(cfg);
    return tf.concat(cfg.cropsForAssign.map((crop, a) => codes(a, parts[crop]!, undefined))).dataSync() as Float32Array;
  });
}

async function runCase(s: SwavLossShape, cfg: Cfg, seed: number, scale?: number) {
  // Scores are cosines: in [-1, 1] as the head's unit embeddings against unit prototypes make them.
  const scores = randomValues(s.crops * s.batch * s.prototypes, seed);
  const o = { temperature: cfg.temperature, cropsForAssign: cfg.cropsForAssign };
  const tensors: GpuTensor[] = [];
  const keep = (t: GpuTensor) => (tensors.push(t), t);
  const st = createSwavLossState(runner, s, o);
  const t = keep(upload(runner, [s.crops * s.batch, s.prototypes], 'f32', scores));
  const codes = keep(
    upload(runner, [cfg.cropsForAssign.length, s.batch, s.prototypes], 'f32', modelCodes(s, cfg, scores)),
  );
  const loss = keep(runner.tensor([1]));
  const dscores = keep(runner.tensor([s.crops * s.batch, s.prototypes]));
  const state = scale === undefined ? undefined : keep(runner.tensor([LOSS_SCALE.SIZE]));
  if (state) runner.write(state, [scale!, 0, 0, 0]);
  const rec = await runner.record([
    ...swavLossForward(s, o, t, codes, st, loss),
    ...swavLossBackward(s, o, t, codes, st, dscores, state),
  ]);
  rec.submit();
  const [gotLoss, gotGrad] = await Promise.all([runner.read(loss), runner.read(dscores)]);
  runner.release(...tensors, ...Object.values(st));
  const want = reference(s, cfg, scores);
  return {
    loss: Math.abs(gotLoss[0]! - want.loss) / Math.abs(want.loss),
    dscores: scaledError(
      gotGrad.map((v) => v / (scale ?? 1)),
      want.dscores,
    ),
  };
}

const CFG: Cfg = { temperature: 0.1, epsilon: 0.05, sinkhornIters: 3, cropsForAssign: [0, 1] };

/**
 * f32: the loss is a mean of B * K products q log p in another order than tfjs's; each gradient element is
 * p * sum(q) - q over <= 2 assignments, scaled (both sides read the same codes). Measured: loss <= 2e-7,
 * dscores <= 1e-6 of the largest. 1e-5 fails for a wrong weight or a term from the crop's own codes (checked).
 * sum(q) is 1 to ~1e-7 after Sinkhorn's last row step, so it matters only for codes made elsewhere (a
 * data-parallel assignment), which these cases do not exercise.
 */
const F32_TOL = 1e-5;

describe('swapped-prediction loss and its score gradient match swav.ts on tfjs cpu', () => {
  it.each<[string, SwavLossShape, Cfg]>([
    ['batch 7, 37 prototypes, 3 crops, assign [0, 1]', { batch: 7, prototypes: 37, crops: 3 }, CFG],
    ['batch 1, 13 prototypes, 2 crops, assign [0, 1]', { batch: 1, prototypes: 13, crops: 2 }, CFG],
    [
      'batch 5, 300 prototypes (past one 256-thread row), 4 crops, assign [2], T 0.2, eps 0.03',
      { batch: 5, prototypes: 300, crops: 4 },
      { temperature: 0.2, epsilon: 0.03, sinkhornIters: 2, cropsForAssign: [2] },
    ],
  ])('f32: %s', async (_, s, cfg) => {
    const e = await runCase(s, cfg, 51);
    expect(e.loss, 'loss').toBeLessThan(F32_TOL);
    expect(e.dscores, 'dscores').toBeLessThan(F32_TOL);
  });

  it('with a loss-scale state bound, the gradient is that of scale * loss', async () => {
    const e = await runCase({ batch: 7, prototypes: 37, crops: 3 }, CFG, 53, 2 ** 12);
    expect(e.dscores).toBeLessThan(F32_TOL);
  });

  it('refuses the SwAV queue, one crop and an assignment crop out of range', () => {
    const s = { batch: 2, prototypes: 3, crops: 2 };
    const o = { temperature: 0.1, cropsForAssign: [0] };
    const [scores, codes, loss] = [runner.tensor([4, 3]), runner.tensor([1, 2, 3]), runner.tensor([1])];
    const st = createSwavLossState(runner, s, o);
    expect(() => swavLossForward(s, { ...o, queued: [] }, scores, codes, st, loss)).toThrow(/queue/);
    expect(() => swavLossForward({ ...s, crops: 1 }, o, scores, codes, st, loss)).toThrow(/at least 2/);
    expect(() => swavLossForward(s, { ...o, cropsForAssign: [2] }, scores, codes, st, loss)).toThrow(/crop 2/);
    runner.release(scores, codes, loss, ...Object.values(st));
  });
});
