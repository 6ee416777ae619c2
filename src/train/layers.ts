/** The layers RegNet and the SwAV head need, as functions over a ParamSet (NHWC, float32). */
import * as tf from '@tensorflow/tfjs-core';
import type { Init } from './params.js';
import { groupedConvDepthwise } from './grouped-conv.js';

/**
 * What a layer reads its weights from: a ParamSet, or a view of one whose trainable weights are other tensors
 * (activation recomputation passes them as explicit inputs of a custom gradient, see recompute.ts).
 */
export interface Params {
  /** The named weight; a non-trainable one (a BatchNorm running statistic) is always the variable itself. */
  get(name: string, shape: number[], init: Init, trainable?: boolean): tf.Tensor;
  /** Set while a training forward pass builds: BatchNorm running-stat updates to apply after the step. */
  pendingUpdates: Array<[tf.Variable, tf.Tensor]> | null;
}

export function conv(ps: Params, name: string, x: tf.Tensor4D, out: number, k: number, stride: number): tf.Tensor4D {
  const w = ps.get(`${name}.w`, [k, k, x.shape[3], out], 'he') as tf.Tensor4D;
  return tf.conv2d(x, w, stride, 'same');
}

/**
 * A grouped k x k conv (tfjs has no `groups`): the weight is one [k, k, in/groups, out] variable, applied
 * group by group on channel slices and concatenated. Works, with gradients, on every backend.
 */
export function groupedConv(
  ps: Params,
  name: string,
  x: tf.Tensor4D,
  out: number,
  k: number,
  stride: number,
  groups: number,
): tf.Tensor4D {
  const cin = x.shape[3];
  if (cin % groups !== 0 || out % groups !== 0)
    throw new Error(`${name}: ${cin}->${out} channels not divisible by ${groups} groups`);
  const w = ps.get(`${name}.w`, [k, k, cin / groups, out], 'he') as tf.Tensor4D;
  return groupedConvWith(x, w, stride, groups);
}

/** The widest group (input channels) run as depthwise + matMul rather than split per group. */
const DEPTHWISE_MAX_GROUP_WIDTH = 16;

export function groupedConvWith(x: tf.Tensor4D, w: tf.Tensor4D, stride: number, groups: number): tf.Tensor4D {
  if (groups === 1) return tf.conv2d(x, w, stride, 'same');
  // Narrow groups (RegNet's 8 to 16 channels): one depthwise conv + matMul, far faster than a strided copy and
  // a tiny conv per group; its extra (in per group) multiply-adds per product outweigh that for wide groups.
  if (w.shape[2] <= DEPTHWISE_MAX_GROUP_WIDTH) return groupedConvDepthwise(x, w, stride, groups);
  const xs = tf.split(x, groups, 3);
  const ws = tf.split(w, groups, 3);
  return tf.concat(
    xs.map((xg, g) => tf.conv2d(xg as tf.Tensor4D, ws[g] as tf.Tensor4D, stride, 'same')),
    3,
  );
}

/**
 * BatchNorm over N, H, W (or N for 2-D inputs). Training normalises with the batch's statistics and queues an
 * update of the running ones (momentum 0.1, as PyTorch); evaluation uses the running statistics.
 */
export function batchNorm<T extends tf.Tensor>(ps: Params, name: string, x: T, training: boolean, zeroInit = false): T {
  const c = x.shape[x.rank - 1]!;
  const gamma = ps.get(`${name}.gamma`, [c], zeroInit ? 'zeros' : 'ones');
  const beta = ps.get(`${name}.beta`, [c], 'zeros');
  const runMean = ps.get(`${name}.mean`, [c], 'zeros', false) as tf.Variable;
  const runVar = ps.get(`${name}.var`, [c], 'ones', false) as tf.Variable;
  if (!training) return tf.batchNorm(x, runMean, runVar, beta, gamma, 1e-5) as T;
  const pending = ps.pendingUpdates;
  if (!pending) return batchNormTrain(x, gamma, beta) as T;
  return batchNormTrainWith((mean, variance) => {
    const n = x.size / c;
    const unbiased = tf.mul(variance, n / Math.max(1, n - 1));
    // A step runs the backbone once per crop resolution: each update follows the one queued before it in this
    // step, as PyTorch applies them in turn (else only the last resolution's statistics would count).
    pending.push([runMean, tf.keep(tf.add(tf.mul(latest(pending, runMean), 0.9), tf.mul(mean, 0.1)))]);
    pending.push([runVar, tf.keep(tf.add(tf.mul(latest(pending, runVar), 0.9), tf.mul(unbiased, 0.1)))]);
  })(x, gamma, beta) as T;
}

/** The value `v` will hold once the updates queued so far in this step are applied. */
function latest(pending: ReadonlyArray<[tf.Variable, tf.Tensor]>, v: tf.Variable): tf.Tensor {
  for (let i = pending.length - 1; i >= 0; i--) if (pending[i]![0] === v) return pending[i]![1];
  return v;
}

type BatchNormTrain = (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor;

/**
 * Training-mode BatchNorm with its whole backward pass in closed form (Ioffe & Szegedy): tfjs' own chain
 * (moments -> FusedBatchNorm) tiles the statistics to the input's shape, which wasm's Tile makes the
 * slowest part of a step. dx = gamma / sigma * (dy - mean(dy) - xhat * mean(dy * xhat)).
 * `onMoments` receives the batch's statistics for the running ones: inside the custom gradient's forward
 * pass tfjs records nothing, so the statistics cost no tensors saved for the backward pass (computed
 * outside, their three full-size intermediates stayed alive until the backward pass ended).
 */
export function batchNormTrainWith(onMoments?: (mean: tf.Tensor1D, variance: tf.Tensor1D) => void): BatchNormTrain {
  return tf.customGrad(((x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, save: tf.GradSaveFunc) => {
    const { mean, variance } = moments(x);
    onMoments?.(mean, variance);
    return batchNormForward(x, gamma, beta, mean, variance, save);
  }) as never) as unknown as BatchNormTrain;
}

export const batchNormTrain = batchNormTrainWith();

function batchNormForward(
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  mean: tf.Tensor,
  variance: tf.Tensor,
  save: tf.GradSaveFunc,
) {
  const rstd = tf.rsqrt(tf.add(variance, 1e-5));
  const xhat = affine(x, rstd, tf.neg(tf.mul(mean, rstd)));
  save([xhat, rstd, gamma]);
  return {
    value: affine(xhat, gamma, beta),
    // tfjs runs a custom gradient outside any tidy of its own and frees the backward pass's tensors only when
    // the whole backward ends: the tidy frees this one's full-size temporaries at once.
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      tf.tidy(() => {
        const [xh, rs, g] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const dyMean = channelMean(dy);
        const dyXhatMean = channelMean(tf.mul(dy, xh));
        const dx = affine(tf.add(dy, affine(xh, tf.neg(dyXhatMean), tf.neg(dyMean))), tf.mul(g, rs));
        const n = dy.size / dy.shape[dy.rank - 1]!;
        return [dx, tf.mul(dyXhatMean, n), tf.mul(dyMean, n)];
      }),
  };
}

/**
 * Per-channel mean over every other axis. wasm reduces a non-innermost axis by transposing first
 * (bench/profile-step.ts: BatchNorm's means were a fifth of a step); a global average pool over H x W
 * (XNNPACK) is ~20x faster, leaving an [N, C] mean for a small matMul, which reduces without a transpose.
 */
export function channelMean(x: tf.Tensor): tf.Tensor1D {
  const c = x.shape[x.rank - 1]!;
  let rows = x as tf.Tensor2D;
  if (x.rank === 4) {
    const [n, h, w] = x.shape as [number, number, number];
    rows = tf.reshape(tf.avgPool(x as tf.Tensor4D, [h, w], [h, w], 'valid'), [n, c]);
  } else if (x.rank !== 2) {
    rows = tf.reshape(x, [x.size / c, c]);
  }
  return tf.reshape(tf.matMul(tf.fill([1, rows.shape[0]], 1 / rows.shape[0]), rows), [c]);
}

function moments(x: tf.Tensor): { mean: tf.Tensor1D; variance: tf.Tensor1D } {
  const mean = channelMean(x);
  return { mean, variance: channelMean(tf.square(affine(x, tf.onesLike(mean), tf.neg(mean)))) };
}

/**
 * x * scale + shift per channel (last axis). On NHWC tensors a 1x1 depthwise conv with bias does it in one
 * pass; wasm's broadcasting Mul and Add are each slower than that kernel.
 */
function affine(x: tf.Tensor, scale: tf.Tensor, shift?: tf.Tensor): tf.Tensor {
  const c = x.shape[x.rank - 1]!;
  if (x.rank !== 4) return shift ? tf.add(tf.mul(x, scale), shift) : tf.mul(x, scale);
  const filter = tf.reshape(scale, [1, 1, c, 1]) as tf.Tensor4D;
  return tf.fused.depthwiseConv2d({
    x: x as tf.Tensor4D,
    filter,
    strides: 1,
    pad: 'valid',
    ...(shift ? { bias: shift } : {}),
  });
}

export function dense(ps: Params, name: string, x: tf.Tensor2D, out: number, bias = true): tf.Tensor2D {
  const w = ps.get(`${name}.w`, [x.shape[1], out], { normal: Math.sqrt(1 / x.shape[1]) }) as tf.Tensor2D;
  const y = tf.matMul(x, w) as tf.Tensor2D;
  // PyTorch's nn.Linear bias init (SwAV's head): a zero bias has no norm for LARS to scale by, so its first
  // updates are raw gradients at full rate, which let the bias dominate the embedding (measured: collapse).
  const b = bias ? ps.get(`${name}.b`, [out], { uniform: 1 / Math.sqrt(x.shape[1]) }) : null;
  return b ? (tf.add(y, b) as tf.Tensor2D) : y;
}

/** Squeeze-and-excitation: channel gates from the global average, through a `squeeze`-wide bottleneck. */
export function squeezeExcite(ps: Params, name: string, x: tf.Tensor4D, squeeze: number): tf.Tensor4D {
  const c = x.shape[3];
  const pooled = tf.mean(x, [1, 2]) as tf.Tensor2D;
  const gate = tf.sigmoid(
    dense(ps, `${name}.expand`, tf.relu(dense(ps, `${name}.reduce`, pooled, squeeze)) as tf.Tensor2D, c),
  );
  return tf.mul(x, tf.reshape(gate, [-1, 1, 1, c]));
}

/** Identity forward, zero gradient: what tfjs-core lacks as `stopGradient`. */
export const stopGradient = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.clone(x),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as never) as unknown as <T extends tf.Tensor>(x: T) => T;
