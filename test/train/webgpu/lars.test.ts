/**
 * The LARS update against optim.ts' Lars on tfjs cpu: two steps (the second one uses the momentum) on a
 * parameter set that covers every branch: a conv weight, BatchNorm gamma and beta, a bias, a weight of zeros
 * (no norm: ratio 1) and a weight with a zero gradient; with BatchNorm/bias exclusion, and without it with
 * LARC's clipping at a rate where it binds. The f16 weight copy must be the masters rounded to binary16. With
 * dynamic loss scaling (loss-scale.ts) an injected inf / NaN skips its step and the scale follows GradScaler.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lars, type LarsConfig } from '../../../src/train/optim.js';
import { roundToHalf } from '../../../src/train/webgpu/half.js';
import { LARS_HYPER, larsStep, larsTable, paramLayout } from '../../../src/train/webgpu/kernels/lars.js';
import {
  initialLossScaleState,
  LOSS_SCALE,
  lossScaleCheck,
  type LossScaleOptions,
} from '../../../src/train/webgpu/kernels/loss-scale.js';
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
/** A step: its learning rate, and whether an inf / NaN is injected into its gradients (loss scaling only). */
interface Step {
  lr: number;
  overflow?: boolean;
}
const STEPS: Step[] = [{ lr: 0.5 }, { lr: 0.05 }];

interface State {
  w: Float32Array[];
  v: Float32Array[];
}

/** optim.ts' Lars over tfjs variables: one apply per step that does not overflow, with the gradients `grads[k]`. */
function reference(config: LarsConfig, steps: Step[], w0: Float32Array[], grads: Float32Array[][]): State {
  const vars = new Map(
    PARAMS.map((p, i) => [
      p.name,
      tf.variable(tf.tensor(w0[i]!, p.shape), true, `lars-test.${p.name}.${Math.random()}`),
    ]),
  );
  const lars = new Lars(config);
  steps.forEach((step, k) => {
    if (step.overflow) return;
    const g = Object.fromEntries(PARAMS.map((p, i) => [p.name, tf.tensor(grads[k]![i]!, p.shape)]));
    lars.apply(vars, g, step.lr);
    tf.dispose(Object.values(g));
  });
  const state = {
    w: [...vars.values()].map((v) => v.dataSync() as Float32Array),
    v: PARAMS.map((p) => lars.slots.get(p.name)!.dataSync() as Float32Array),
  };
  tf.dispose([...vars.values(), ...lars.slots.values()]);
  return state;
}

function flat(total: number, offsets: number[], parts: Float32Array[]): Float32Array {
  const out = new Float32Array(total);
  parts.forEach((p, i) => out.set(p, offsets[i]));
  return out;
}

interface RunOptions {
  halfCopy?: boolean;
  steps?: Step[];
  /** Dynamic loss scaling on the GPU from this starting scale; without it the gradients carry a fixed scale of 8. */
  lossScale?: { initial: number; options: LossScaleOptions };
}

async function runCase(config: LarsConfig, seed: number, o: RunOptions = {}) {
  const steps = o.steps ?? STEPS;
  const layout = paramLayout(PARAMS);
  const offsets = layout.params.map((p) => p.offset);
  const w0 = layout.params.map((p, i) =>
    p.name === 'zeros.w' ? new Float32Array(p.size) : randomValues(p.size, seed + i),
  );
  const grads = steps.map((_, k) =>
    layout.params.map((p, i) =>
      p.name === 'nograd.w' ? new Float32Array(p.size) : randomValues(p.size, seed + 100 * (k + 1) + i),
    ),
  );
  const want = reference(config, steps, w0, grads);
  const t = {
    w: upload(runner, [layout.total], 'f32', flat(layout.total, offsets, w0)),
    g: runner.tensor([layout.total]),
    v: upload(runner, [layout.total], 'f32', new Float32Array(layout.total)),
    table: runner.tensor([PARAMS.length, 4]),
    norms: runner.tensor([PARAMS.length, 2]),
    hyper: upload(runner, [LARS_HYPER.SIZE], 'f32', [0, 1 / 8, 0]),
    state: upload(runner, [LOSS_SCALE.SIZE], 'f32', initialLossScaleState(o.lossScale?.initial)),
    ...(o.halfCopy ? { w16: runner.tensor([layout.total], 'f16') } : {}),
  };
  runner.writeBytes(t.table, larsTable(layout, config));
  const check = o.lossScale ? lossScaleCheck(PARAMS.length, t.norms, t.state, t.hyper, o.lossScale.options) : [];
  const rec = await runner.record(larsStep(layout, config, t, check));
  const scales: number[] = [];
  for (const [k, step] of steps.entries()) {
    // What the backward pass would produce: gradients times the scale in force (GPU state, or the fixed 8).
    const scale = o.lossScale ? (await runner.read(t.state))[LOSS_SCALE.SCALE]! : 8;
    scales.push(scale);
    const g = flat(
      layout.total,
      offsets,
      grads[k]!.map((v) => v.map((x) => x * scale)),
    );
    if (step.overflow) [g[offsets[0]! + 3], g[offsets[3]!]] = [Infinity, NaN];
    runner.write(t.g, g);
    runner.write(runner.view(t.hyper, LARS_HYPER.LR, [1]), [step.lr]);
    rec.submit();
  }
  const views = layout.params.map(
    (p) => [runner.view(t.w, p.offset, p.shape), runner.view(t.v, p.offset, p.shape)] as const,
  );
  const got = await Promise.all(views.map(async ([w, v]) => ({ w: await runner.read(w), v: await runner.read(v) })));
  const w16 = t.w16
    ? await Promise.all(layout.params.map((p) => runner.read(runner.view(t.w16!, p.offset, p.shape))))
    : [];
  const state = await runner.read(t.state);
  runner.release(...Object.values(t));
  const errors = layout.params.map((p, i) => {
    const half = roundToHalf(got[i]!.w);
    return {
      name: p.name,
      v: scaledError(got[i]!.v, want.v[i]!),
      // Relative to how far the weights moved: tiny LARS steps on weights of size 1 would hide any error.
      w: scaledError(
        got[i]!.w.map((x, j) => x - w0[i]![j]!),
        want.w[i]!.map((x, j) => x - w0[i]![j]!),
      ),
      half: w16.length ? Math.max(...w16[i]!.map((x, j) => Math.abs(x - half[j]!))) : 0,
    };
  });
  return { errors, scales, state };
}

/**
 * f32: norms are sums of <= 700 squares in another order than tfjs's, and each element's update is a few
 * operations, so momentum buffers agree to ~1e-7 of their size; the weights moved by lr * v are compared by
 * their change, which an f32 weight holds only to half an ulp of the weight (6e-8 for |w| < 1). Measured: momentum
 * <= 1e-7, weight change <= 1.2e-6 of its largest value; a wrong ratio, decay, clip or momentum is >= 1e-2.
 */
const V_TOL = 1e-5;
const W_TOL = 2e-5;

function expectClose(errors: Awaited<ReturnType<typeof runCase>>['errors']): void {
  for (const e of errors) {
    expect(e.v, `${e.name} momentum`).toBeLessThan(V_TOL);
    expect(e.w, `${e.name} weight change`).toBeLessThan(W_TOL);
    expect(e.half, `${e.name} f16 copy`).toBe(0);
  }
}

describe('LARS update matches optim.ts on tfjs cpu', () => {
  it('BatchNorm and biases excluded, weight decay, momentum (f32 masters only)', async () => {
    expectClose((await runCase({ momentum: 0.9, weightDecay: 0.05, trust: 0.1, excludeBnBias: true }, 41)).errors);
  });

  it('every parameter scaled, LARC clipping binding at the second step, f16 weight copy', async () => {
    const halfCopy = runner.ctx.info.features['shader-f16'] === true; // lavapipe offers it: see conv2d.test.ts
    expectClose(
      (
        await runCase({ momentum: 0.8, weightDecay: 0.05, trust: 0.1, excludeBnBias: false, clip: true }, 43, {
          halfCopy,
        })
      ).errors,
    );
  });

  it('parameter layout: every parameter at a bindable offset; a misplaced or oversized view is refused', () => {
    const layout = paramLayout(PARAMS);
    const flatW = runner.tensor([layout.total]);
    const flatHalf = runner.tensor([layout.total], 'f16');
    const align = runner.device.limits.minStorageBufferOffsetAlignment;
    for (const p of layout.params) {
      expect((p.offset * 4) % align).toBe(0);
      expect(runner.view(flatHalf, p.offset, p.shape).offset! % align).toBe(0);
    }
    expect(() => runner.view(flatW, 1, [4])).toThrow(/multiple of/);
    expect(() => runner.view(flatW, layout.total - 64, [65])).toThrow(/outside/);
    runner.release(flatW, flatHalf);
  });

  it('dynamic loss scaling: an overflowing step is skipped and halves the scale, clean runs double it', async () => {
    const steps: Step[] = [{ lr: 0.5 }, { lr: 0.4, overflow: true }, { lr: 0.3 }, { lr: 0.2 }, { lr: 0.1 }];
    const r = await runCase({ momentum: 0.9, weightDecay: 0.05, trust: 0.1, excludeBnBias: true }, 47, {
      steps,
      lossScale: { initial: 1024, options: { growthInterval: 2 } },
    });
    // Step 1 clean (run 1), step 2 overflows (halved, run 0), steps 3 and 4 clean (doubled after 4), step 5 clean.
    expect(r.scales).toEqual([1024, 1024, 512, 512, 1024]);
    expect([...r.state]).toEqual([1024, 1, 1, 1]);
    // The weights and momentum are those of optim.ts applying steps 1, 3, 4 and 5 with unscaled gradients.
    expectClose(r.errors);
  });
});
