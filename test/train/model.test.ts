import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { startBackend } from '../../src/train/backend.js';
import { batchNormTrain, groupedConvWith } from '../../src/train/layers.js';
import { defaultTrainConfig } from '../../src/train/config.js';
import { SwavModel } from '../../src/train/model.js';
import { DEFAULT_LARS, Lars, learningRate } from '../../src/train/optim.js';
import { ParamSet } from '../../src/train/params.js';
import { buildRegnet } from '../../src/train/regnet.js';
import { countParams, regnetMacs, regnetSpec } from '../../src/train/regnet-spec.js';
import { DEFAULT_SWAV, sinkhorn, swavLoss } from '../../src/train/swav.js';
import { atLnK } from '../../src/train/collapse.js';
import { conv2dFilterGrad } from '../../src/train/wasm-grads.js';
import { prng } from '../../src/rng.js';

const rand = prng(42);
const randn = (shape: number[]) =>
  tf.tensor(
    Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rand() * 2 - 1),
    shape,
  );

beforeAll(async () => {
  await startBackend('cpu');
});

describe('RegNet spec', () => {
  it('generates the paper/torchvision stage widths and depths', () => {
    const stages = (name: string) => regnetSpec(name).stages.map((s) => [s.width, s.depth, s.groupWidth]);
    expect(stages('regnety_400mf')).toEqual([
      [48, 1, 8],
      [104, 3, 8],
      [208, 6, 8],
      [440, 6, 8],
    ]);
    expect(stages('regnety_16gf')).toEqual([
      [224, 2, 112],
      [448, 4, 112],
      [1232, 11, 112],
      [3024, 1, 112],
    ]);
    expect(stages('regnetx_400mf')).toEqual([
      [32, 1, 16],
      [64, 2, 16],
      [160, 7, 16],
      [400, 12, 16],
    ]);
    expect(stages('regnety_200mf')).toEqual([
      [24, 1, 8],
      [56, 1, 8],
      [152, 4, 8],
      [368, 7, 8],
    ]);
  });

  it('counts parameters as torchvision does (ImageNet head)', () => {
    expect(countParams(regnetSpec('regnety_400mf'), 1000)).toBe(4_344_144);
    expect(countParams(regnetSpec('regnety_16gf'), 1000)).toBe(83_590_140);
    expect(countParams(regnetSpec('regnetx_400mf'), 1000)).toBe(5_495_976);
    expect(countParams(regnetSpec('regnety_32gf'), 1000)).toBe(145_046_770);
  });

  it("counts multiply-accumulates as torchvision's model table does (GFLOPS at 224)", () => {
    const gmacs = (name: string) => Number((regnetMacs(regnetSpec(name), 224, 1000) / 1e9).toFixed(3));
    expect(gmacs('regnety_400mf')).toBe(0.402);
    expect(gmacs('regnetx_400mf')).toBe(0.414);
    expect(gmacs('regnety_800mf')).toBe(0.834);
    expect(gmacs('regnety_16gf')).toBe(15.912);
  });

  it('builds a tfjs model with exactly the counted parameters', () => {
    const ps = new ParamSet(1);
    buildRegnet(ps, regnetSpec('regnety_400mf'), 1000);
    expect(ps.count()).toBe(4_344_144);
    ps.dispose();
  });
});

/** Naive grouped convolution, stride 1, 'same' padding, in float64 loops. */
function naiveGroupedConv(x: number[][][][], w: number[][][][], groups: number): number[][][][] {
  const [n, h, wd, cin] = [x.length, x[0]!.length, x[0]![0]!.length, x[0]![0]![0]!.length];
  const k = w.length,
    cout = w[0]![0]![0]!.length,
    gin = cin / groups,
    gout = cout / groups,
    pad = (k - 1) / 2;
  return Array.from({ length: n }, (_, b) =>
    Array.from({ length: h }, (_, i) =>
      Array.from({ length: wd }, (_, j) =>
        Array.from({ length: cout }, (_, o) => {
          const g = Math.floor(o / gout);
          let s = 0;
          for (let di = 0; di < k; di++)
            for (let dj = 0; dj < k; dj++)
              for (let c = 0; c < gin; c++) {
                const y = i + di - pad,
                  xx = j + dj - pad;
                if (y >= 0 && y < h && xx >= 0 && xx < wd) s += x[b]![y]![xx]![g * gin + c]! * w[di]![dj]![c]![o]!;
              }
          return s;
        }),
      ),
    ),
  );
}

describe('grouped conv', () => {
  for (const backend of ['cpu', 'wasm'] as const) {
    it(`equals a naive reference and its gradients match finite differences (${backend})`, async () => {
      await startBackend(backend);
      const x = randn([1, 5, 5, 4]),
        w = randn([3, 3, 2, 6]);
      const ours = groupedConvWith(x as tf.Tensor4D, w as tf.Tensor4D, 1, 2).arraySync();
      const ref = naiveGroupedConv(x.arraySync() as number[][][][], w.arraySync() as number[][][][], 2);
      expect(Math.max(...ours.flat(3).map((v, i) => Math.abs(v - ref.flat(3)[i]!)))).toBeLessThan(1e-4);
      // d/dw of sum(conv * r) by autodiff vs central differences on a few weights
      const r = randn([1, 5, 5, 6]);
      const f = (wt: tf.Tensor) =>
        tf.sum(tf.mul(groupedConvWith(x as tf.Tensor4D, wt as tf.Tensor4D, 1, 2), r)) as tf.Scalar;
      const grads = tf.grads(
        (xx: tf.Tensor, wt: tf.Tensor) =>
          tf.sum(groupedConvWith(xx as tf.Tensor4D, wt as tf.Tensor4D, 2, 2)) as tf.Scalar,
      );
      const gw = tf.grad(f)(w).dataSync();
      const wv = w.dataSync().slice();
      for (const idx of [0, 17, 50, 107]) {
        const e = 1e-2;
        const plus = wv.slice();
        plus[idx]! += e;
        const minus = wv.slice();
        minus[idx]! -= e;
        const fd = (f(tf.tensor(plus, w.shape)).dataSync()[0]! - f(tf.tensor(minus, w.shape)).dataSync()[0]!) / (2 * e);
        expect(Math.abs(gw[idx]! - fd), `weight ${idx}`).toBeLessThan(2e-2 * Math.max(1, Math.abs(fd)));
      }
      // stride 2 runs forward and backward for both inputs
      const [gx2, gw2] = grads([x, w]);
      expect(gx2!.shape).toEqual(x.shape);
      expect(gw2!.shape).toEqual(w.shape);
      await startBackend('cpu');
    });
  }

  it('the im2col filter gradient used on wasm equals tfjs autodiff', () => {
    for (const [stride, k] of [
      [1, 3],
      [2, 3],
      [2, 1],
    ] as const) {
      const x = randn([2, 6, 6, 3]),
        w = randn([k, k, 3, 4]);
      const y = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, 'same');
      const dy = randn(y.shape);
      const auto = tf.grad((wt: tf.Tensor) =>
        tf.sum(tf.mul(tf.conv2d(x as tf.Tensor4D, wt as tf.Tensor4D, stride, 'same'), dy)),
      )(w);
      const ours = conv2dFilterGrad(x as tf.Tensor4D, dy as tf.Tensor4D, [k, k, 3, 4], {
        strides: stride,
        pad: 'same',
      });
      expect(tf.max(tf.abs(tf.sub(auto, ours))).dataSync()[0]).toBeLessThan(1e-4);
    }
  });
});

describe('SwAV', () => {
  it('Sinkhorn codes have rows summing to 1 and columns to B/K', () => {
    const q = sinkhorn(randn([8, 4]) as tf.Tensor2D, 0.05, 3);
    const rows = tf.sum(q, 1).arraySync() as number[];
    for (const r of rows) expect(r).toBeCloseTo(1, 4); // the last step normalises rows: exact
    // Columns converge to B/K as iterations go on (3, SwAV's default, leaves them approximate).
    const scores = tf.mul(randn([8, 4]), 0.2) as tf.Tensor2D;
    const spread = (iters: number) =>
      Math.max(...(tf.sum(sinkhorn(scores, 0.05, iters), 0).arraySync() as number[]).map((c) => Math.abs(c - 2)));
    expect(spread(3)).toBeLessThan(spread(0));
    expect(spread(200)).toBeLessThan(1e-3);
  });

  it('Sinkhorn stays finite at a small epsilon when a prototype is far from every sample', () => {
    // Prototype 1 scores -0.9 against every sample while others reach 0.95: with a global shift its column
    // underflows to zero at epsilon 0.01 and the codes turn to NaN.
    const scores = tf.tensor2d([
      [0.95, -0.9, 0.1],
      [0.2, -0.9, 0.9],
      [0.5, -0.9, 0.3],
      [0.1, -0.9, -0.2],
    ]);
    const q = sinkhorn(scores, 0.01, 3).arraySync() as number[][];
    expect(q.flat().every(Number.isFinite)).toBe(true);
    for (const row of q) expect(row.reduce((a, b) => a + b)).toBeCloseTo(1, 4);
  });

  it('uniform predictions give a loss of ln K whatever the codes, which the collapse warning recognises', () => {
    // Crop 0 (random scores) assigns sharp codes; crop 1 predicts them with equal scores for every prototype.
    const loss = swavLoss([randn([6, 32]), tf.zeros([6, 32])] as tf.Tensor2D[], {
      ...DEFAULT_SWAV,
      cropsForAssign: [0],
    });
    expect(loss.dataSync()[0]).toBeCloseTo(Math.log(32), 5);
    // Final losses of collapsed runs (bench/RESULTS.md) and of a run that left the plateau.
    expect([atLnK(3.466, 32), atLnK(2.072, 8), atLnK(4.04, 32), atLnK(2.6, 32)]).toEqual([true, true, false, false]);
  });

  it('the swapped-prediction loss equals a hand computation', () => {
    const s0 = [
        [0.2, -0.1],
        [0.05, 0.3],
      ],
      s1 = [
        [0.1, 0.4],
        [-0.2, 0.0],
      ];
    const cfg = { temperature: 0.1, epsilon: 0.5, sinkhornIters: 1, cropsForAssign: [0, 1] };
    const loss = swavLoss([tf.tensor2d(s0), tf.tensor2d(s1)], cfg).dataSync()[0]!;
    const codes = (s: number[][]) => {
      let q = s.map((r) => r.map((v) => Math.exp(v / cfg.epsilon)));
      const tot = q.flat().reduce((a, b) => a + b);
      q = q.map((r) => r.map((v) => v / tot));
      const col = [0, 1].map((k) => q[0]![k]! + q[1]![k]!);
      q = q.map((r) => r.map((v, k) => v / col[k]! / 2));
      q = q.map((r) => r.map((v) => v / (r[0]! + r[1]!) / 2));
      return q.map((r) => r.map((v) => v * 2));
    };
    const ce = (q: number[][], s: number[][]) =>
      -q.reduce((acc, qr, b) => {
        const z = s[b]!.map((v) => v / cfg.temperature),
          lse = Math.log(Math.exp(z[0]!) + Math.exp(z[1]!));
        return acc + qr[0]! * (z[0]! - lse) + qr[1]! * (z[1]! - lse);
      }, 0) / 2;
    const expected = (ce(codes(s0), s1) + ce(codes(s1), s0)) / 2;
    expect(loss).toBeCloseTo(expected, 5);
  });
});

describe('LARS and schedules', () => {
  it('a LARS step equals the hand-computed update; BN/bias are plain SGD', () => {
    const w = tf.variable(tf.tensor1d([3, 4]), true, 'l.w');
    const b = tf.variable(tf.tensor1d([1, 1]), true, 'l.b');
    const lars = new Lars({ ...DEFAULT_LARS, weightDecay: 0.1 });
    lars.apply(
      new Map([
        ['l.w', w],
        ['l.b', b],
      ]),
      { 'l.w': tf.tensor1d([0.6, 0.8]), 'l.b': tf.tensor1d([0.5, -0.5]) },
      2,
    );
    // |w| = 5, |g| = 1: ratio = 0.001 * 5 / (1 + 0.5) ; update = (g + 0.1 w) * ratio ; w -= 2 * update
    const ratio = 0.005 / 1.5;
    expect(w.dataSync()[0]).toBeCloseTo(3 - 2 * 0.9 * ratio, 6);
    expect(w.dataSync()[1]).toBeCloseTo(4 - 2 * 1.2 * ratio, 6);
    expect(Array.from(b.dataSync())).toEqual([0, 2]);
    lars.apply(new Map([['l.b', b]]), { 'l.b': tf.tensor1d([0, 0]) }, 1); // momentum 0.9 carries on
    expect(b.dataSync()[0]).toBeCloseTo(0 - 0.9 * 0.5, 6);
  });

  it("LARC's clip mode caps a layer's rate at the learning rate", () => {
    const w = tf.variable(tf.tensor1d([3, 4]), true, 'c.w');
    const lars = new Lars({ ...DEFAULT_LARS, weightDecay: 0.1, clip: true });
    // trust |w| / (|g| + wd |w|) = 0.001 * 5 / 1.5 = 0.0033 > lr = 0.001: clipped, a plain SGD step at lr
    lars.apply(new Map([['c.w', w]]), { 'c.w': tf.tensor1d([0.6, 0.8]) }, 0.001);
    expect(w.dataSync()[0]).toBeCloseTo(3 - 0.001 * 0.9, 7);
    expect(w.dataSync()[1]).toBeCloseTo(4 - 0.001 * 1.2, 7);
    const v = tf.variable(tf.tensor1d([3, 4]), true, 'c2.w');
    new Lars({ ...DEFAULT_LARS, weightDecay: 0.1, clip: true }).apply(
      new Map([['c2.w', v]]),
      { 'c2.w': tf.tensor1d([0.6, 0.8]) },
      2,
    );
    expect(v.dataSync()[0]).toBeCloseTo(3 - 0.9 * (0.005 / 1.5), 6); // below lr: the trust ratio, as without clip
  });

  it('warmup is linear and the cosine ends at the final rate', () => {
    const s = { baseLr: 4.8, finalLr: 0.0048, warmupSteps: 10, startWarmupLr: 0.3, totalSteps: 110 };
    expect(learningRate(0, s)).toBeCloseTo(0.3);
    expect(learningRate(5, s)).toBeCloseTo(0.3 + 4.5 / 2);
    expect(learningRate(10, s)).toBeCloseTo(4.8);
    expect(learningRate(60, s)).toBeCloseTo(0.0048 + 0.5 * (4.8 - 0.0048));
    expect(learningRate(110, s)).toBeCloseTo(0.0048);
  });
});

describe('training step', () => {
  it('BatchNorm in closed form has the gradients of the naive formula', () => {
    const x = randn([4, 3, 3, 5]),
      gamma = randn([5]),
      beta = randn([5]),
      r = randn([4, 3, 3, 5]);
    const naive = (xx: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
      const { mean, variance } = tf.moments(xx, [0, 1, 2]);
      return tf.sum(
        tf.mul(tf.add(tf.mul(tf.div(tf.sub(xx, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b), r),
      ) as tf.Scalar;
    };
    const fused = (xx: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(batchNormTrain(xx, g, b), r)) as tf.Scalar;
    expect(Math.abs(naive(x, gamma, beta).dataSync()[0]! - fused(x, gamma, beta).dataSync()[0]!)).toBeLessThan(1e-4);
    const [a, b] = [tf.grads(naive)([x, gamma, beta]), tf.grads(fused)([x, gamma, beta])];
    a.forEach((ga, i) => expect(tf.max(tf.abs(tf.sub(ga, b[i]!))).dataSync()[0], `input ${i}`).toBeLessThan(1e-4));
  });

  it("the head's biases start as PyTorch's nn.Linear does: uniform in +-1/sqrt(fan_in), not zero", () => {
    // A zero bias has no norm for LARS to scale by, so its first updates are raw gradients at the full rate;
    // in bench/scratch runs that let the projection bias dominate every embedding (collapse).
    const model = new SwavModel(
      defaultTrainConfig({
        model: 'custom:4,8,8,2,4',
        batchSize: 4,
        crops: '2x16,2x8',
        swav: { ...DEFAULT_SWAV, hidden: 16, dim: 8, prototypes: 10 },
      }),
    );
    for (const [name, fanIn] of [
      ['swav.proj1.b', model.spec.stages.at(-1)!.width],
      ['swav.proj2.b', 16],
    ] as const) {
      const b = Array.from(model.ps.vars.get(name)!.dataSync());
      expect(Math.max(...b.map(Math.abs)), name).toBeLessThanOrEqual(1 / Math.sqrt(fanIn));
      expect(b.filter((v) => v !== 0).length, name).toBe(b.length);
      expect(new Set(b).size, name).toBe(b.length);
    }
    model.dispose();
  });

  it('a resolution with a single crop (crops 1x16,1x8) steps, with a gradient for every parameter', async () => {
    // tfjs's SplitV gradient fails on a split into one part ("Pass at least one tensor to concat").
    await startBackend('cpu');
    const config = defaultTrainConfig({
      model: 'custom:2,8,8,2,8',
      batchSize: 4,
      crops: '1x16,1x8',
      swav: { ...DEFAULT_SWAV, hidden: 16, dim: 8, prototypes: 10 },
    });
    const model = new SwavModel(config);
    const crops = [16, 8].map((s) => tf.randomUniform([4, s, s, 3], -1, 1, 'float32', 3) as tf.Tensor4D);
    const vars = [...model.ps.trainable().values()];
    const { value, grads } = tf.variableGrads(() => swavLoss(model.forward(crops, true).scores, config.swav), vars);
    expect(Number.isFinite(value.dataSync()[0])).toBe(true);
    expect(Object.keys(grads).length).toBe(vars.length);
    expect(Number.isFinite(model.step(crops, 0).loss)).toBe(true);
    tf.dispose([value, ...crops, ...Object.values(grads)]);
    model.dispose();
  });

  it('a whole SwAV step has the same gradients on wasm (custom conv and BN gradients) as on cpu', async () => {
    const config = defaultTrainConfig({
      model: 'custom:4,8,8,2,4',
      batchSize: 4,
      crops: '2x16,2x8',
      swav: { ...DEFAULT_SWAV, hidden: 16, dim: 8, prototypes: 10 },
    });
    const grads = async (backend: 'cpu' | 'wasm') => {
      await startBackend(backend);
      const model = new SwavModel(config);
      const rand = prng(7);
      const crops = [16, 16, 8, 8].map((s) =>
        tf.tensor4d(
          Float32Array.from({ length: 4 * s * s * 3 }, () => rand() * 2 - 1),
          [4, s, s, 3],
        ),
      );
      const { grads: g } = tf.variableGrads(
        () => swavLoss(model.forward(crops, true).scores, config.swav),
        [...model.ps.trainable().values()],
      );
      const out = Object.fromEntries(Object.entries(model.ps.byName(g)).map(([k, v]) => [k, Array.from(v.dataSync())]));
      model.dispose();
      return out;
    };
    const [onCpu, onWasm] = [await grads('cpu'), await grads('wasm')];
    await startBackend('cpu');
    expect(Object.keys(onWasm).sort()).toEqual(Object.keys(onCpu).sort());
    for (const [name, g] of Object.entries(onCpu)) {
      const scale = Math.max(1e-3, ...g.map(Math.abs));
      const diff = Math.max(...g.map((v, i) => Math.abs(v - onWasm[name]![i]!)));
      expect(diff / scale, name).toBeLessThan(1e-3);
    }
  });
});
