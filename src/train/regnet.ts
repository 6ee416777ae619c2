/**
 * RegNet forward pass on tfjs (NHWC): stem (3x3 stride 2, 32 channels), four stages of residual bottleneck
 * blocks (1x1, grouped 3x3 with stride 2 in each stage's first block, optional SE, 1x1), global average pool.
 * Returns pooled features; the SwAV head (or an ImageNet classifier for parameter counting) sits on top.
 */
import * as tf from '@tensorflow/tfjs-core';
import { batchNorm, conv, dense, groupedConv, squeezeExcite } from './layers.js';
import type { ParamSet } from './params.js';
import type { RegNetSpec } from './regnet-spec.js';

export function regnetFeatures(ps: ParamSet, spec: RegNetSpec, images: tf.Tensor4D, training: boolean): tf.Tensor2D {
  let x = tf.relu(batchNorm(ps, 'stem.bn', conv(ps, 'stem.conv', images, spec.stemWidth, 3, 2), training)) as tf.Tensor4D;
  spec.stages.forEach((stage, s) => {
    for (let b = 0; b < stage.depth; b++) x = block(ps, `s${s + 1}.b${b + 1}`, x, spec, stage.width, stage.groupWidth, b === 0 ? 2 : 1, training);
  });
  return tf.mean(x, [1, 2]) as tf.Tensor2D;
}

function block(ps: ParamSet, name: string, x: tf.Tensor4D, spec: RegNetSpec, width: number, groupWidth: number, stride: number, training: boolean): tf.Tensor4D {
  const wIn = x.shape[3];
  const wb = Math.trunc(width * spec.bottleneck);
  let y = tf.relu(batchNorm(ps, `${name}.a.bn`, conv(ps, `${name}.a`, x, wb, 1, 1), training)) as tf.Tensor4D;
  y = tf.relu(batchNorm(ps, `${name}.b.bn`, groupedConv(ps, `${name}.b`, y, wb, 3, stride, wb / groupWidth), training)) as tf.Tensor4D;
  if (spec.se > 0) y = squeezeExcite(ps, `${name}.se`, y, Math.round(spec.se * wIn));
  y = batchNorm(ps, `${name}.c.bn`, conv(ps, `${name}.c`, y, width, 1, 1), training, true); // zero-init last BN
  const shortcut = wIn !== width || stride !== 1 ? batchNorm(ps, `${name}.proj.bn`, conv(ps, `${name}.proj`, x, width, 1, stride), training) : x;
  return tf.relu(tf.add(y, shortcut)) as tf.Tensor4D;
}

/** Builds every variable (with a 1000-class head when `classes`) by tracing one tiny forward pass. */
export function buildRegnet(ps: ParamSet, spec: RegNetSpec, classes = 0): void {
  tf.tidy(() => {
    const features = regnetFeatures(ps, spec, tf.zeros([1, 32, 32, 3]), false);
    if (classes > 0) dense(ps, 'fc', features, classes);
  });
}
