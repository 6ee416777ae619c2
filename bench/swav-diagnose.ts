/**
 * What a SwAV run is doing, step by step, on the learn bench's pattern images (or any dataset with --data):
 * how spread the embeddings are, how sharp the Sinkhorn codes and the predictions are, how often the two large
 * views' assignments agree, and the mean cosine of matched views vs unrelated images. Collapse shows as zstd
 * and qmax falling toward uniform and the unrelated cosine rising toward the matched one.
 *
 *   npx tsx bench/swav-diagnose.ts [--steps 150] [--every 30] [--lr 1] [--prototypes 32] [--dim 32]
 *       [--freeze 40] [--crops 2x32@0.3-1,2x16@0.1-0.3] [--jitter 0.5] [--blur 0] [--grey 0.2] [--zero-bias]
 *
 * Easy-task sanity check (the views differ only by flip):  --crops 2x32@0.99-1 --jitter 0 --grey 0
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { parseCrops } from '../src/augment/config.js';
import { MultiCropLoader } from '../src/augment/loader.js';
import { openStore } from '../src/shards/store.js';
import { startBackend } from '../src/train/backend.js';
import { defaultTrainConfig } from '../src/train/config.js';
import { SwavModel } from '../src/train/model.js';
import { DEFAULT_LARS } from '../src/train/optim.js';
import { DEFAULT_SWAV, sinkhorn } from '../src/train/swav.js';
import { writePatternShards } from '../test/helpers/learning.js';

const { values: o } = parseArgs({
  options: {
    data: { type: 'string' },
    steps: { type: 'string', default: '150' },
    every: { type: 'string', default: '30' },
    model: { type: 'string', default: 'custom:4,16,8,2,16' },
    batch: { type: 'string', default: '32' },
    lr: { type: 'string', default: '1' },
    prototypes: { type: 'string', default: '32' },
    dim: { type: 'string', default: '32' },
    hidden: { type: 'string', default: '64' },
    freeze: { type: 'string', default: '40' },
    epsilon: { type: 'string', default: '0.05' },
    crops: { type: 'string', default: '2x32@0.3-1,2x16@0.1-0.3' },
    jitter: { type: 'string', default: '0.5' },
    blur: { type: 'string', default: '0' },
    grey: { type: 'string', default: '0.2' },
    'zero-bias': { type: 'boolean', default: false },
  },
});
const num = (k: keyof typeof o) => Number(o[k]);
const B = num('batch'),
  K = num('prototypes'),
  eps = num('epsilon');
await startBackend('wasm');
const dir = await mkdtemp(join(tmpdir(), 'ws-swav-diag-'));
try {
  let data = o.data;
  if (!data) {
    data = join(dir, 'data');
    await writePatternShards(data, 512);
  }
  const config = defaultTrainConfig({
    model: o.model!,
    batchSize: B,
    crops: o.crops!,
    steps: num('steps'),
    swav: {
      ...DEFAULT_SWAV,
      prototypes: K,
      hidden: num('hidden'),
      dim: num('dim'),
      freezePrototypesSteps: num('freeze'),
      epsilon: eps,
    },
    lars: { ...DEFAULT_LARS, excludeBnBias: false },
    schedule: { baseLr: num('lr'), finalLr: num('lr') / 1000, warmupSteps: 10, startWarmupLr: 0 },
  });
  const model = new SwavModel(config);
  // The behaviour before head biases started as PyTorch's: every dense bias at zero.
  if (o['zero-bias']) for (const [name, v] of model.ps.vars) if (name.endsWith('.b')) v.assign(tf.zerosLike(v));
  const s = num('jitter');
  const loader = new MultiCropLoader(await openStore(data), {
    batchSize: B,
    threads: 2,
    augment: {
      crops: parseCrops(o.crops!),
      brightness: 0.8 * s,
      contrast: 0.8 * s,
      saturation: 0.8 * s,
      hue: 0.2 * s,
      blurP: num('blur'),
      greyP: num('grey'),
    },
  });
  let step = 0;
  for await (const batch of loader) {
    const crops = batch.crops.map((c) => tf.tensor4d(c.data, [B, c.size, c.size, 3]));
    const line = step % num('every') === 0 ? diagnose(model, crops, eps) : null;
    const { loss } = model.step(crops, step);
    tf.dispose(crops);
    if (line) console.log(`step ${step}  loss ${loss.toFixed(4)} (ln K ${Math.log(K).toFixed(4)})  ${line}`);
    if (++step >= num('steps')) break;
  }
  model.dispose();
} finally {
  await rm(dir, { recursive: true, force: true });
}

function diagnose(model: SwavModel, crops: tf.Tensor4D[], epsilon: number): string {
  return tf.tidy(() => {
    const { z, scores } = model.forward(crops, true);
    const value = (t: tf.Tensor) => t.dataSync()[0]!;
    const zstd = value(tf.mean(tf.sqrt(tf.moments(z[0]!, 0).variance)));
    const q = sinkhorn(scores[0]!, epsilon, 3);
    const qmax = value(tf.mean(tf.max(q, 1)));
    const pmax = value(tf.mean(tf.max(tf.softmax(tf.div(scores[1]!, 0.1)), 1)));
    const agree = value(tf.mean(tf.cast(tf.equal(tf.argMax(q, 1), tf.argMax(scores[1]!, 1)), 'float32')));
    const shifted = tf.concat([tf.slice(z[1]!, [1, 0], [-1, -1]), tf.slice(z[1]!, [0, 0], [1, -1])], 0);
    const matched = value(tf.mean(tf.sum(tf.mul(z[0]!, z[1]!), 1))),
      other = value(tf.mean(tf.sum(tf.mul(z[0]!, shifted), 1)));
    const bias = value(tf.norm(model.ps.vars.get('swav.proj2.b')!));
    return (
      `zstd ${zstd.toFixed(3)}  qmax ${qmax.toFixed(3)}  pmax ${pmax.toFixed(3)}  agree ${agree.toFixed(2)}  ` +
      `cos matched ${matched.toFixed(3)} unrelated ${other.toFixed(3)}  |proj2.b| ${bias.toFixed(2)}`
    );
  });
}
