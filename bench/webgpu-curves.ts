/**
 * Mixed precision against f32 on the WebGPU engine: the same model, initial weights, seeded batches and
 * schedule, trained once per precision (WebGpuStepper with the SwAV program, as `train --backend webgpu`);
 * prints both loss curves (the mean loss of every `--log-every` steps), their largest gap and the mixed run's
 * loss-scale counts. Both runs start from the same weights (the model's seed), so the curves separate only
 * through rounding: f16 activations and weight copies against f32. How far apart is "agree"? A third run, f32
 * on other batches of the same images (another draw of crops and order), gives the spread that data order alone
 * makes; the mixed run agrees when its gap to f32 is within that spread.
 *
 * The batches are the demo's pattern images (src/fixtures/patterns.ts, 64 x 64) cut into SwAV's crops by
 * tfjs's cropAndResize (random resized crop at each group's scale range, aspect 3/4-4/3, horizontal flip),
 * ImageNet-normalised; no colour jitter. Drawn in JS, without sharp or the augment pool, so the bench bundles
 * for the GPU machine (scripts/gpu/bundle.mjs). The default training settings are the demo's (pipelines/demo.yaml),
 * which leave ln K within a few hundred steps, so the curves are compared where the loss moves.
 *
 *   npx tsx bench/webgpu-curves.ts [--steps 300] [--log-every 25] [--model custom:4,16,8,2,16] [--batch 32]
 *                                  [--crops 2x32@0.3-1,4x16@0.1-0.3] [--images 512] [--draw 0] [--json FILE]
 *
 * `--draw D`: the batches both precisions share are draw D, the spread's f32 run takes draw D + 1.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { IMAGENET_MEAN, IMAGENET_STD, parseCrops, type CropGroup } from '../src/crops.js';
import { patternPixels } from '../src/fixtures/patterns.js';
import { prng, seedOf } from '../src/rng.js';
import type { CropTensor } from '../src/augment/loader.js';
import { startBackend } from '../src/train/backend.js';
import { defaultTrainConfig, type TrainConfig } from '../src/train/config.js';
import { SwavModel } from '../src/train/model.js';
import { DEFAULT_SWAV } from '../src/train/swav.js';
import { WebGpuStepper } from '../src/train/webgpu/stepper.js';
import { swavGradientProgram } from '../src/train/webgpu/swav-program.js';
import type { Precision } from '../src/train/webgpu/precision.js';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '300' },
    'log-every': { type: 'string', default: '25' },
    model: { type: 'string', default: 'custom:4,16,8,2,16' },
    batch: { type: 'string', default: '32' },
    crops: { type: 'string', default: '2x32@0.3-1,4x16@0.1-0.3' },
    images: { type: 'string', default: '512' },
    draw: { type: 'string', default: '0' },
    json: { type: 'string' },
  },
});
const [steps, logEvery, batch, images] = [values.steps, values['log-every'], values.batch, values.images].map(
  Number,
) as [number, number, number, number];
const SIDE = 64;
const SEED = 0;

/** The demo's settings (pipelines/demo.yaml) for a model this size; no queue (the engine has none). */
function config(): TrainConfig {
  const base = defaultTrainConfig({ model: values.model!, batchSize: batch, crops: values.crops!, seed: SEED, steps });
  return {
    ...base,
    swav: { ...DEFAULT_SWAV, prototypes: 32, hidden: 64, dim: 32, epsilon: 0.02, freezePrototypesSteps: 20 },
    lars: { ...base.lars, excludeBnBias: false },
    schedule: { baseLr: 2, finalLr: 2, warmupSteps: 10, startWarmupLr: 0 },
    recompute: 'off',
  };
}

/** [images, SIDE, SIDE, 3] in [0, 1]. */
function patternImages(): tf.Tensor4D {
  const pixels = new Float32Array(images * SIDE * SIDE * 3);
  for (let i = 0; i < images; i++) {
    const p = patternPixels(i, { width: SIDE, height: SIDE });
    for (let j = 0; j < p.length; j++) pixels[i * p.length + j] = p[j]! / 255;
  }
  return tf.tensor4d(pixels, [images, SIDE, SIDE, 3]);
}

/** Step `step`'s crops, the same for both precisions: random resized crops with flips, normalised NHWC. */
async function batchAt(all: tf.Tensor4D, groups: CropGroup[], step: number, draw: number): Promise<CropTensor[]> {
  const rand = prng(seedOf(draw, step));
  const picks = Array.from({ length: batch }, () => Math.floor(rand() * images));
  const out: CropTensor[] = [];
  for (const g of groups) {
    for (let c = 0; c < g.count; c++) {
      const boxes = picks.map(() => {
        const area = g.scale[0] + rand() * (g.scale[1] - g.scale[0]);
        const ratio = Math.exp(Math.log(3 / 4) + rand() * Math.log(16 / 9));
        const [w, h] = [Math.min(1, Math.sqrt(area * ratio)), Math.min(1, Math.sqrt(area / ratio))];
        const [y, x] = [rand() * (1 - h), rand() * (1 - w)];
        return rand() < 0.5 ? [y, x, y + h, x + w] : [y, x + w, y + h, x]; // x1 > x2: cropAndResize flips
      });
      const crop = tf.tidy(() =>
        tf.image
          .cropAndResize(all, boxes, picks, [g.size, g.size])
          .sub(tf.tensor1d(IMAGENET_MEAN))
          .div(tf.tensor1d(IMAGENET_STD)),
      );
      out.push({ size: g.size, data: (await crop.data()) as Float32Array });
      crop.dispose();
    }
  }
  return out;
}

interface Curve {
  precision: Precision;
  /** Which draw of batches (`--draw`: the one both precisions share). */
  draw: number;
  /** Mean loss of each interval of logEvery steps, in order. */
  losses: number[];
  skipped: number;
  grown: number;
  seconds: number;
  device: string;
}

async function run(precision: Precision, all: tf.Tensor4D, groups: CropGroup[], draw: number): Promise<Curve> {
  const model = new SwavModel(config(), { backend: 'webgpu' });
  const stepper = await WebGpuStepper.start(model, { program: swavGradientProgram, precision });
  const losses: number[] = [];
  const t0 = performance.now();
  try {
    for (let s = 0; s < steps; s++) {
      const read = (s + 1) % logEvery === 0 || s === steps - 1;
      const { loss } = await stepper.step(await batchAt(all, groups, s, draw), s, { readLoss: read });
      if (read) {
        losses.push(loss);
        console.log(`${precision.padEnd(5)} draw ${draw} step ${String(s + 1).padStart(5)}  loss ${loss.toFixed(4)}`);
      }
    }
    const { skipped, grown } = await stepper.lossScale();
    const seconds = (performance.now() - t0) / 1000;
    return { precision, draw, losses, skipped, grown, seconds, device: stepper.description };
  } finally {
    await stepper.close();
    model.dispose();
  }
}

/** Largest and mean |a - b| / b over the intervals, and where the largest is (the step ending its interval). */
function gap(a: Curve, b: Curve): { worst: number; mean: number; at: number } {
  const gaps = b.losses.map((l, i) => Math.abs(a.losses[i]! - l) / l);
  const worst = Math.max(...gaps);
  return {
    worst,
    mean: gaps.reduce((s, g) => s + g, 0) / gaps.length,
    at: Math.min((gaps.indexOf(worst) + 1) * logEvery, steps),
  };
}

const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
const row = (name: string, c: Curve, extra = '') =>
  `  ${name.padEnd(14)} ${c.losses.map((l) => l.toFixed(3)).join(' ')}  (${c.seconds.toFixed(1)} s${extra})`;

await startBackend('cpu'); // the tfjs side holds the weights and draws the crops; the steps run on the GPU
const groups = parseCrops(values.crops!);
const all = patternImages();
const draw = Number(values.draw);
const f32 = await run('f32', all, groups, draw);
const mixed = await run('mixed', all, groups, draw);
const other = await run('f32', all, groups, draw + 1);
console.log(f32.device);
const lnK = Math.log(config().swav.prototypes);
const [m, d] = [gap(mixed, f32), gap(other, f32)];
console.log(
  `curves over ${steps} steps, mean loss of every ${logEvery} (${values.model}, batch ${batch}, crops ${values.crops}; ln K ${lnK.toFixed(4)}):\n` +
    `${row('f32', f32)}\n${row('mixed', mixed, `; ${mixed.skipped} skipped, ${mixed.grown} grown`)}\n${row(`f32, draw ${draw + 1}`, other)}\n` +
    `  mixed vs f32: largest gap ${pct(m.worst)} (interval ending at step ${m.at}), mean ${pct(m.mean)}\n` +
    `  f32 on other batches vs f32 (the spread data order alone makes): largest ${pct(d.worst)} (step ${d.at}), mean ${pct(d.mean)}\n` +
    `  ${m.worst <= d.worst && m.mean <= d.mean ? 'agree: mixed is within the spread' : 'mixed is outside the spread of data order'}`,
);
if (values.json)
  writeFileSync(
    values.json,
    `${JSON.stringify({ steps, logEvery, lnK, f32, mixed, other, mixedGap: m, dataGap: d })}\n`,
  );
all.dispose();
