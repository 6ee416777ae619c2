/**
 * What one data-parallel step shares between its parts, and the single-thread equivalent used as its
 * reference: ghost batches (micro-batches), each running the forward pass alone so BatchNorm normalises it
 * with its own statistics, exactly as each worker of a data-parallel step does (SwAV without SyncBN).
 * Nothing here imports the model, so model.ts can use it without a cycle.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ParamSet } from '../params.js';
import type { AssignCodes } from '../swav.js';

/**
 * Set on a data-parallel worker's step: the hooks through which the workers see the whole batch. Each
 * returns the same values in every worker, so their weights stay bit-identical.
 */
export interface StepSharing {
  /** Codes for this worker's rows of one assignment crop, from Sinkhorn over the whole batch. */
  codes: AssignCodes;
  /**
   * Replaces this worker's gradients (of its rows' mean loss) by the whole batch's, and its BatchNorm
   * running-statistic updates (`ps.pendingUpdates`) by their average over the workers, weighted by rows.
   */
  reduce(grads: Record<string, tf.Tensor>, ps: ParamSet): void;
  /** The whole batch's embeddings (one [B, dim] per assignment crop, sample order), for the queue. */
  gather(embeddings: tf.Tensor2D[]): tf.Tensor2D[];
}

/** Rows per part when `n` rows are split into `parts` consecutive slices: the first `n % parts` get one more. */
export function splitSizes(n: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, p) => Math.floor(n / parts) + (p < n % parts ? 1 : 0));
}

/**
 * The running-statistic update each variable ends with when `pending` is applied in order (a later update
 * of one variable replaces an earlier one); the replaced tensors are disposed.
 */
export function lastUpdates(pending: Array<[tf.Variable, tf.Tensor]>): Map<tf.Variable, tf.Tensor> {
  const last = new Map<tf.Variable, tf.Tensor>();
  for (const [v, next] of pending) {
    last.get(v)?.dispose();
    last.set(v, next);
  }
  return last;
}

interface Outputs {
  z: tf.Tensor2D[];
  scores: tf.Tensor2D[];
}

/**
 * `forward` run on consecutive slices of the batch (`sizes` rows each) and its outputs rejoined in sample
 * order: the single-thread reference of a data-parallel step with one slice per worker. The BatchNorm
 * running-statistic updates become each variable's last update per slice, averaged over slices weighted by
 * rows (what the workers' `reduce` computes).
 */
export function forwardInParts(
  forward: (crops: tf.Tensor4D[]) => Outputs,
  ps: ParamSet,
  crops: tf.Tensor4D[],
  sizes?: number[],
): Outputs {
  if (!sizes || sizes.length <= 1) return forward(crops);
  const n = sizes.reduce((a, b) => a + b, 0);
  if (n !== crops[0]!.shape[0] || sizes.some((s) => !(s >= 1)))
    throw new Error(`micro-batches ${sizes.join('+')} do not split a batch of ${crops[0]!.shape[0]}`);
  const slices = crops.map((c) => tf.split(c, sizes, 0) as tf.Tensor4D[]);
  const parts: Outputs[] = [];
  const updates: Array<Map<tf.Variable, tf.Tensor>> = [];
  const collecting = ps.pendingUpdates !== null;
  for (let p = 0; p < sizes.length; p++) {
    if (collecting) ps.pendingUpdates = [];
    parts.push(forward(slices.map((s) => s[p]!)));
    if (collecting) updates.push(lastUpdates(ps.pendingUpdates!));
  }
  if (collecting)
    ps.pendingUpdates = averageUpdates(
      updates,
      sizes.map((s) => s / n),
    );
  const join = (key: keyof Outputs) =>
    crops.map(
      (_, i) =>
        tf.concat(
          parts.map((o) => o[key][i]!),
          0,
        ) as tf.Tensor2D,
    );
  return { z: join('z'), scores: join('scores') };
}

function averageUpdates(
  updates: Array<Map<tf.Variable, tf.Tensor>>,
  weights: number[],
): Array<[tf.Variable, tf.Tensor]> {
  const out: Array<[tf.Variable, tf.Tensor]> = [];
  for (const v of updates[0]!.keys()) {
    const mean = tf.tidy(() =>
      updates.reduce<tf.Tensor>((acc, u, p) => tf.add(acc, tf.mul(u.get(v)!, weights[p]!)), tf.zerosLike(v)),
    );
    out.push([v, tf.keep(mean)]);
  }
  for (const u of updates) tf.dispose([...u.values()]);
  return out;
}
