/**
 * One whole SwAV step of the WebGPU engine (swav-program.ts through the stepper) against SwavModel's on tfjs
 * cpu: the loss, every parameter's gradient and the BatchNorm running statistics, on a tiny RegNet with two
 * crop resolutions (two backbone instances sharing weights, accumulated gradients).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultTrainConfig, type TrainConfig } from '../../../src/train/config.js';
import { SwavModel } from '../../../src/train/model.js';
import { DEFAULT_SWAV, normalisePrototypes, swavLoss } from '../../../src/train/swav.js';
import type { GpuRunner } from '../../../src/train/webgpu/runner.js';
import { WebGpuStepper } from '../../../src/train/webgpu/stepper.js';
import { swavGradientProgram } from '../../../src/train/webgpu/swav-program.js';
import { openTestRunner, randomValues, scaledError } from './gpu.js';

let runner: GpuRunner;
beforeAll(async () => {
  runner = await openTestRunner();
}, 120_000);
afterAll(() => runner?.ctx.destroy());

function tinyConfig(): TrainConfig {
  return defaultTrainConfig({
    model: 'custom:2,8,8,2,8',
    batchSize: 3,
    crops: '2x16@0.3-1,2x8@0.1-0.3',
    steps: 10,
    seed: 11,
    swav: { ...DEFAULT_SWAV, prototypes: 16, hidden: 16, dim: 8, freezePrototypesSteps: 0 },
  });
}

describe('the SwAV gradient program', () => {
  it('f32: loss, every gradient and the running statistics of one step match tfjs cpu', async () => {
    const config = tinyConfig();
    const B = config.batchSize;
    const crops = [16, 16, 8, 8].map((size, i) => ({ size, data: randomValues(B * size * size * 3, 300 + i) }));
    const model = new SwavModel(config);
    const reference = new SwavModel(config);
    // Each block's last BatchNorm starts at gamma 0 (zero-init residual), which zeroes every gradient inside the
    // block: a non-zero gamma lets the comparison reach them.
    for (const m of [model, reference])
      for (const [name, v] of m.ps.vars) if (name.endsWith('.c.bn.gamma')) v.assign(tf.fill(v.shape, 0.5));
    const stepper = await WebGpuStepper.start(model, {
      device: runner.ctx,
      precision: 'f32',
      program: swavGradientProgram,
    });
    try {
      const { loss } = await stepper.step(crops, 0);
      const [g, running] = await Promise.all([runner.read(stepper.buffers.g), runner.read(stepper.buffers.running)]);
      // The reference: SwavModel.step's loss and gradients, before its LARS update.
      const ps = reference.ps;
      normalisePrototypes(ps);
      ps.pendingUpdates = [];
      const tensors = crops.map((c) => tf.tensor4d(c.data, [B, c.size, c.size, 3]));
      const { value, grads } = tf.variableGrads(
        () => swavLoss(reference.forward(tensors, true).scores, config.swav),
        [...ps.trainable().values()],
      );
      for (const [v, next] of ps.pendingUpdates) v.assign(next);
      const want = ps.byName(grads);
      expect(Math.abs(loss - value.dataSync()[0]!) / Math.abs(value.dataSync()[0]!)).toBeLessThan(1e-5);
      const errors: Array<[string, number]> = [];
      const gradOf = (name: string) => {
        const p = stepper.buffers.params.params.find((q) => q.name === name)!;
        return g.subarray(p.offset, p.offset + p.size);
      };
      for (const p of stepper.buffers.params.params) {
        if (p.name === 'swav.proj1.b') continue; // before BatchNorm: zero up to rounding on both sides (below)
        errors.push([p.name, scaledError(gradOf(p.name), want[p.name]!.dataSync())]);
      }
      // A bias followed by BatchNorm has no gradient: both sides hold rounding noise, far below the weight's.
      const peak = (x: ArrayLike<number>) => Math.max(...Array.from(x, Math.abs));
      expect(peak(gradOf('swav.proj1.b'))).toBeLessThan(1e-5 * peak(gradOf('swav.proj1.w')));
      expect(peak(want['swav.proj1.b']!.dataSync())).toBeLessThan(1e-5 * peak(gradOf('swav.proj1.w')));
      for (const p of stepper.buffers.stats.params)
        errors.push([
          p.name,
          scaledError(running.subarray(p.offset, p.offset + p.size), ps.vars.get(p.name)!.dataSync()),
        ]);
      // f32 sums in another order than tfjs's: measured <= 6.4e-6 of each tensor's largest value on lavapipe.
      for (const [name, e] of errors) expect(e, name).toBeLessThan(1e-4);
      tf.dispose([...tensors, value, ...Object.values(grads)]);
    } finally {
      await stepper.close();
      model.dispose();
      reference.dispose();
    }
  }, 400_000);
});
