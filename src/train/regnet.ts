/**
 * RegNet's structure, once: stem (3x3 stride 2, 32 channels), four stages of residual bottleneck blocks
 * (1x1, grouped 3x3 with stride 2 in each stage's first block, optional SE, 1x1), global average pool.
 * It is written against `RegNetOps`, so the same walk builds the tfjs forward pass (training and eval) and
 * the exported graph model (`export.ts`), and the two cannot drift apart.
 */
import * as tf from '@tensorflow/tfjs-core';
import { batchNorm, conv, dense, groupedConv, squeezeExcite, type Params } from './layers.js';
import type { ParamSet } from './params.js';
import { recomputed, type ParamSource } from './recompute.js';
import type { RegNetSpec, StageSpec } from './regnet-spec.js';

export interface RegNetOps<T> {
  conv(name: string, x: T, out: number, k: number, stride: number, groups: number): T;
  /** BatchNorm; `zeroInit` starts the scale at 0 (the last BN of each residual branch). */
  bn(name: string, x: T, zeroInit?: boolean): T;
  relu(x: T): T;
  se(name: string, x: T, squeeze: number): T;
  add(a: T, b: T): T;
  pool(x: T): T;
  channels(x: T): number;
  /**
   * Runs one stage, `body`, whose weights are the names starting with `prefix` (`s1.`..`s4.`), with the ops
   * `body` is given. Without it a stage runs inline; training with recomputation wraps it (recompute.ts).
   */
  stage?(prefix: string, x: T, body: (ops: RegNetOps<T>, x: T) => T): T;
  /** Runs one residual block (tfjs: in a tidy, so only what the backward pass saves outlives it). */
  block?(body: () => T): T;
}

export function regnetBody<T>(ops: RegNetOps<T>, spec: RegNetSpec, images: T): T {
  let x = ops.relu(ops.bn('stem.bn', ops.conv('stem.conv', images, spec.stemWidth, 3, 2, 1)));
  spec.stages.forEach((stage, s) => {
    const body = (o: RegNetOps<T>, input: T) => stageBody(o, `s${s + 1}`, input, spec, stage);
    x = ops.stage ? ops.stage(`s${s + 1}.`, x, body) : body(ops, x);
  });
  return ops.pool(x);
}

function stageBody<T>(ops: RegNetOps<T>, name: string, x: T, spec: RegNetSpec, stage: StageSpec): T {
  for (let b = 0; b < stage.depth; b++) {
    const input = x;
    const run = () => block(ops, `${name}.b${b + 1}`, input, spec, stage.width, stage.groupWidth, b === 0 ? 2 : 1);
    x = ops.block ? ops.block(run) : run();
  }
  return x;
}

function block<T>(
  ops: RegNetOps<T>,
  name: string,
  x: T,
  spec: RegNetSpec,
  width: number,
  groupWidth: number,
  stride: number,
): T {
  const wIn = ops.channels(x);
  const wb = Math.trunc(width * spec.bottleneck);
  let y = ops.relu(ops.bn(`${name}.a.bn`, ops.conv(`${name}.a`, x, wb, 1, 1, 1)));
  y = ops.relu(ops.bn(`${name}.b.bn`, ops.conv(`${name}.b`, y, wb, 3, stride, wb / groupWidth)));
  if (spec.se > 0) y = ops.se(`${name}.se`, y, Math.round(spec.se * wIn));
  y = ops.bn(`${name}.c.bn`, ops.conv(`${name}.c`, y, width, 1, 1, 1), true);
  const shortcut =
    wIn !== width || stride !== 1 ? ops.bn(`${name}.proj.bn`, ops.conv(`${name}.proj`, x, width, 1, stride, 1)) : x;
  return ops.relu(ops.add(y, shortcut));
}

/**
 * The tfjs implementation over a ParamSet (variables are created on first use). With `recompute`, each
 * stage keeps only its input for the backward pass and recomputes the rest there.
 */
export function tfOps(ps: Params, training: boolean, recompute = false): RegNetOps<tf.Tensor4D> {
  return {
    conv: (name, x, out, k, stride, groups) =>
      groups === 1 ? conv(ps, name, x, out, k, stride) : groupedConv(ps, name, x, out, k, stride, groups),
    bn: (name, x, zeroInit) => batchNorm(ps, name, x, training, zeroInit),
    relu: (x) => tf.relu(x),
    se: (name, x, squeeze) => squeezeExcite(ps, name, x, squeeze),
    add: (a, b) => tf.add(a, b),
    pool: (x) => tf.mean(x, [1, 2]) as unknown as tf.Tensor4D,
    channels: (x) => x.shape[3],
    block: (body) => tf.tidy(body),
    ...(recompute && 'vars' in ps
      ? {
          stage: (prefix, x, body) =>
            recomputed(ps as ParamSource, prefix, x, (view, input) => body(tfOps(view, training), input)),
        }
      : {}),
  };
}

/** Backbone features; `recompute` (training only) trades one more forward pass per stage for memory. */
export function regnetFeatures(
  ps: ParamSet,
  spec: RegNetSpec,
  images: tf.Tensor4D,
  training: boolean,
  recompute = false,
): tf.Tensor2D {
  return regnetBody(tfOps(ps, training, training && recompute), spec, images) as unknown as tf.Tensor2D;
}

/** Builds every variable (with a 1000-class head when `classes`) by tracing one tiny forward pass. */
export function buildRegnet(ps: ParamSet, spec: RegNetSpec, classes = 0): void {
  tf.tidy(() => {
    const features = regnetFeatures(ps, spec, tf.zeros([1, 32, 32, 3]), false);
    if (classes > 0) dense(ps, 'fc', features, classes);
  });
}
