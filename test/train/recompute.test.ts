import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { startBackend } from '../../src/train/backend.js';
import { defaultTrainConfig, type TrainConfig } from '../../src/train/config.js';
import { SwavModel } from '../../src/train/model.js';
import { DEFAULT_SWAV, swavLoss } from '../../src/train/swav.js';
import { prng } from '../../src/rng.js';

beforeAll(async () => {
  await startBackend('cpu');
});

const config = (recompute: TrainConfig['recompute']) =>
  defaultTrainConfig({
    model: 'custom:4,8,8,2,4',
    batchSize: 4,
    crops: '2x16,2x8',
    recompute,
    swav: { ...DEFAULT_SWAV, hidden: 16, dim: 8, prototypes: 10, freezePrototypesSteps: 0 },
  });

function crops(): tf.Tensor4D[] {
  const rand = prng(7);
  return [16, 16, 8, 8].map((s) =>
    tf.tensor4d(
      Float32Array.from({ length: 4 * s * s * 3 }, () => rand() * 2 - 1),
      [4, s, s, 3],
    ),
  );
}

/** Loss, gradients by name and the queued BatchNorm updates of one training forward/backward pass. */
function gradients(model: SwavModel, xs: tf.Tensor4D[]) {
  model.ps.pendingUpdates = [];
  const { value, grads } = tf.variableGrads(
    () => swavLoss(model.forward(xs, true).scores, model.config.swav),
    [...model.ps.trainable().values()],
  );
  const updates = model.ps.pendingUpdates.map(([v, t]) => [v.name, t.arraySync()] as const);
  tf.dispose(model.ps.pendingUpdates.map(([, t]) => t));
  model.ps.pendingUpdates = null;
  const byName = Object.fromEntries(
    Object.entries(model.ps.byName(grads)).map(([k, g]) => [k, g.dataSync() as Float32Array]),
  );
  const loss = value.dataSync()[0]!;
  tf.dispose([value, ...Object.values(grads)]);
  return { loss, grads: byName, updates };
}

describe('activation recomputation per stage', () => {
  it('gives the same loss, the same gradient for every weight and the same BatchNorm updates, queued once', () => {
    const xs = crops();
    const plain = new SwavModel(config('off'));
    const recomputed = new SwavModel(config('on'));
    expect([plain.memory.recompute, recomputed.memory.recompute]).toEqual([false, true]);
    const a = gradients(plain, xs);
    const b = gradients(recomputed, xs);
    expect(b.loss).toBeCloseTo(a.loss, 6);
    expect(Object.keys(b.grads).sort()).toEqual(Object.keys(a.grads).sort());
    expect(Object.keys(a.grads).filter((n) => n.startsWith('s')).length).toBeGreaterThan(20); // the stages' weights are there
    for (const [name, ga] of Object.entries(a.grads)) {
      const gb = b.grads[name]!;
      const scale = Math.max(1e-12, ...Array.from(ga, Math.abs));
      const diff = Math.max(...Array.from(ga, (v, i) => Math.abs(v - gb[i]!)));
      expect(diff / scale, name).toBeLessThanOrEqual(1e-5);
      expect(scale, name).toBeGreaterThan(0);
    }
    // Two updates (mean, variance) per BatchNorm per crop size: the recomputation queued none of its own.
    expect(b.updates.length).toBe(a.updates.length);
    b.updates.forEach(([name, value], i) => {
      expect(name.replace(/^ps\d+\//, '')).toBe(a.updates[i]![0].replace(/^ps\d+\//, ''));
      expect(value).toEqual(a.updates[i]![1]);
    });
    tf.dispose(xs);
    plain.dispose();
    recomputed.dispose();
  });

  it('trains to the same weights over steps, and leaks no tensors', () => {
    const xs = crops();
    const [plain, recomputed] = [new SwavModel(config('off')), new SwavModel(config('on'))];
    recomputed.step(xs, 0); // warm-up: LARS momentum slots exist from here on
    const tensors = tf.memory().numTensors;
    recomputed.step(xs, 1);
    expect(tf.memory().numTensors).toBe(tensors);
    for (let s = 0; s < 2; s++) plain.step(xs, s);
    for (const [name, v] of plain.ps.vars) {
      const [x, y] = [v.dataSync(), recomputed.ps.vars.get(name)!.dataSync()];
      const scale = Math.max(1e-6, ...Array.from(x, Math.abs));
      expect(Math.max(...Array.from(x, (u, i) => Math.abs(u - y[i]!))) / scale, name).toBeLessThanOrEqual(1e-4);
    }
    tf.dispose(xs);
    plain.dispose();
    recomputed.dispose();
  });
});
