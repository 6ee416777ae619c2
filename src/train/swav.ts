/**
 * SwAV (Caron et al. 2020, facebookresearch/swav): projection MLP -> L2-normalised embedding -> prototype
 * scores; codes from Sinkhorn-Knopp on the assignment crops (no gradient); swapped prediction: each other
 * crop predicts those codes with a softmax at temperature 0.1.
 */
import * as tf from '@tensorflow/tfjs-core';
import { batchNorm, dense, stopGradient } from './layers.js';
import type { ParamSet } from './params.js';

export interface SwavConfig {
  hidden: number;
  dim: number;
  prototypes: number;
  temperature: number;
  epsilon: number;
  sinkhornIters: number;
  cropsForAssign: number[];
  /** Prototype gradients are zeroed for this many steps. */
  freezePrototypesSteps: number;
}

export const DEFAULT_SWAV: SwavConfig = {
  hidden: 2048,
  dim: 128,
  prototypes: 3000,
  temperature: 0.1,
  epsilon: 0.05,
  sinkhornIters: 3,
  cropsForAssign: [0, 1],
  freezePrototypesSteps: 313,
};

export const PROTOTYPES = 'swav.prototypes.w';

/** Embeddings (L2-normalised) and prototype scores for a batch of backbone features. */
export function swavHead(
  ps: ParamSet,
  cfg: SwavConfig,
  features: tf.Tensor2D,
  training: boolean,
): { z: tf.Tensor2D; scores: tf.Tensor2D } {
  const h = tf.relu(
    batchNorm(ps, 'swav.proj1.bn', dense(ps, 'swav.proj1', features, cfg.hidden), training),
  ) as tf.Tensor2D;
  const z = l2normalise(dense(ps, 'swav.proj2', h, cfg.dim));
  const prototypes = ps.get(PROTOTYPES, [cfg.dim, cfg.prototypes], {
    normal: Math.sqrt(1 / cfg.dim),
  }) as tf.Variable<tf.Rank.R2>;
  return { z, scores: tf.matMul(z, prototypes) };
}

export function l2normalise(x: tf.Tensor2D, axis = 1): tf.Tensor2D {
  return tf.div(x, tf.maximum(tf.norm(x, 'euclidean', axis, true), 1e-12)) as tf.Tensor2D;
}

/** Unit-norm prototype columns (SwAV normalises the prototype weights before every step). */
export function normalisePrototypes(ps: ParamSet): void {
  const w = ps.vars.get(PROTOTYPES);
  if (w) tf.tidy(() => w.assign(l2normalise(w as tf.Tensor2D, 0)));
}

/**
 * Sinkhorn-Knopp codes for scores [B, K]: rows end summing to 1 (one assignment per sample) and columns
 * to B/K (prototypes used equally).
 */
export function sinkhorn(scores: tf.Tensor2D, epsilon: number, iterations: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, k] = scores.shape;
    // Subtracting each prototype's max keeps exp finite and every column non-zero (the first column
    // normalisation cancels a per-column shift exactly). A global max would not: at a small epsilon (0.02 on
    // cosines in [-1, 1] is a range of e^100) a prototype far from every sample underflows to an all-zero
    // column and 0/0. The floor at e^-80 keeps a row that far from every prototype finite (uniform).
    let q = tf.exp(tf.maximum(tf.div(tf.sub(scores, tf.max(scores, 0, true)), epsilon), -80)) as tf.Tensor2D;
    q = tf.div(q, tf.sum(q)) as tf.Tensor2D;
    for (let i = 0; i < iterations; i++) {
      q = tf.div(tf.div(q, tf.sum(q, 0, true)), k) as tf.Tensor2D; // each prototype's column -> 1/K
      q = tf.div(tf.div(q, tf.sum(q, 1, true)), b) as tf.Tensor2D; // each sample's row -> 1/B
    }
    return tf.mul(q, b) as tf.Tensor2D;
  });
}

/**
 * Codes (no gradient) for the rows of `scores`, assignment crop number `a` of `cfg.cropsForAssign`, with that
 * crop's queue scores when the queue is in use. A data-parallel worker passes one that runs Sinkhorn over
 * the whole batch (src/train/parallel/), as SwAV's distributed code all-reduces its sums.
 */
export type AssignCodes = (a: number, scores: tf.Tensor2D, queued: tf.Tensor2D | undefined) => tf.Tensor2D;

/** Sinkhorn over queue + these rows, the rows' codes kept. */
export function localCodes(cfg: Pick<SwavConfig, 'epsilon' | 'sinkhornIters'>): AssignCodes {
  return (_a, scores, queued) => {
    const b = scores.shape[0];
    const codes = sinkhorn(
      stopGradient(queued ? tf.concat([queued, scores], 0) : scores),
      cfg.epsilon,
      cfg.sinkhornIters,
    );
    return queued ? tf.slice(codes, [codes.shape[0] - b, 0], [b, -1]) : codes;
  };
}

/**
 * The swapped-prediction loss over all crops' scores (one [B, K] tensor per crop, in crop order). `queued`,
 * one [L, K] per assignment crop, joins the Sinkhorn assignment (SwAV's queue for small batches): codes are
 * computed over queue + batch and the batch's rows kept.
 */
export function swavLoss(
  scores: tf.Tensor2D[],
  cfg: Pick<SwavConfig, 'temperature' | 'epsilon' | 'sinkhornIters' | 'cropsForAssign'>,
  queued?: tf.Tensor2D[],
  codes: AssignCodes = localCodes(cfg),
): tf.Scalar {
  let total: tf.Scalar = tf.scalar(0);
  cfg.cropsForAssign.forEach((i, a) => {
    const q = codes(a, scores[i]!, queued?.[a]);
    let sub: tf.Scalar = tf.scalar(0);
    scores.forEach((s, v) => {
      if (v === i) return;
      const logp = tf.logSoftmax(tf.div(s, cfg.temperature));
      sub = tf.add(sub, tf.neg(tf.mean(tf.sum(tf.mul(q, logp), 1)))) as tf.Scalar;
    });
    total = tf.add(total, tf.div(sub, scores.length - 1)) as tf.Scalar;
  });
  return tf.div(total, cfg.cropsForAssign.length) as tf.Scalar;
}
