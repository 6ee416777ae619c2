/**
 * The whole SwAV part of a training step on the GPU, from the backbone's features of every crop to the loss
 * and the gradients, as two dispatch lists for the stepper to record once:
 *   swavForward   head (head.ts) -> codes of the assignment crops (sinkhorn.ts) -> loss (swav-loss.ts)
 *   swavBackward  d loss / d scores (times the loss scale when bound) -> head backward -> d features
 * Features are [crops * batch, F] in crop order (crop v's rows at v * batch), as model.ts concatenates them.
 * With a queue in use (swav-queue.ts), the codes come from Sinkhorn over the queue's scores and the batch's.
 */
import type { SwavConfig } from '../../swav.js';
import type { Dispatch, GpuRunner, GpuTensor } from '../runner.js';
import {
  createSwavHeadState,
  swavHeadBackward,
  swavHeadForward,
  type SwavHeadGrads,
  type SwavHeadShape,
  type SwavHeadState,
  type SwavHeadWeights,
} from './head.js';
import { createSinkhornScratch, sinkhornCodes, type SinkhornScratch, type SinkhornShape } from './sinkhorn.js';
import { createSwavLossState, swavLossBackward, swavLossForward, type SwavLossState } from './swav-loss.js';
import { queuedCodes, type SwavQueue, type SwavQueueShape } from './swav-queue.js';

export interface SwavShape {
  crops: number;
  /** Samples per crop. */
  batch: number;
  features: number;
  hidden: number;
  dim: number;
  prototypes: number;
}

export type SwavStepConfig = Pick<SwavConfig, 'temperature' | 'epsilon' | 'sinkhornIters' | 'cropsForAssign'>;

/** Everything the SwAV part writes, allocated once by createSwavTensors (all f32). */
export interface SwavTensors {
  head: SwavHeadState;
  sinkhorn: SinkhornScratch;
  lossState: SwavLossState;
  /** [A, batch, K]: codes of the assignment crops, in cropsForAssign order. */
  codes: GpuTensor;
  /** [1]: the loss, read at log intervals. */
  loss: GpuTensor;
  /** [crops * batch, K]: d loss / d scores (times the loss scale when one is bound). */
  dscores: GpuTensor;
}

export function headShape(s: SwavShape): SwavHeadShape {
  return { batch: s.crops * s.batch, features: s.features, hidden: s.hidden, dim: s.dim, prototypes: s.prototypes };
}

function assignShape(s: SwavShape): SinkhornShape {
  return { batch: s.batch, prototypes: s.prototypes, crops: s.crops };
}

export function createSwavTensors(runner: GpuRunner, s: SwavShape, cfg: SwavStepConfig): SwavTensors {
  const assign = cfg.cropsForAssign.length;
  return {
    head: createSwavHeadState(runner, headShape(s)),
    sinkhorn: createSinkhornScratch(runner, assignShape(s), assign),
    lossState: createSwavLossState(runner, assignShape(s), cfg),
    codes: runner.tensor([assign, s.batch, s.prototypes]),
    loss: runner.tensor([1]),
    dscores: runner.tensor([s.crops * s.batch, s.prototypes]),
  };
}

/** Every tensor of `t`, to release. */
export function swavTensorList(t: SwavTensors): GpuTensor[] {
  return [
    ...Object.values(t.head),
    ...Object.values(t.sinkhorn),
    ...Object.values(t.lossState),
    t.codes,
    t.loss,
    t.dscores,
  ];
}

/**
 * features ([crops * batch, F], f32 or f16) -> t.loss, saving what swavBackward reads; with `queue`, the codes
 * are assigned over the queue too (its entries are read, not pushed: pushQueue does that).
 */
export function swavForward(
  s: SwavShape,
  cfg: SwavStepConfig,
  features: GpuTensor,
  w: SwavHeadWeights,
  t: SwavTensors,
  queue?: { shape: SwavQueueShape; buffers: SwavQueue },
): Dispatch[] {
  const sk = { epsilon: cfg.epsilon, iterations: cfg.sinkhornIters, cropsForAssign: cfg.cropsForAssign };
  const scores = t.head.scores;
  return [
    ...swavHeadForward(headShape(s), features, w, t.head),
    ...(queue
      ? queuedCodes(queue.shape, sk, scores, w.prototypes, queue.buffers, t.codes)
      : sinkhornCodes(assignShape(s), sk, scores, t.codes, t.sinkhorn)),
    ...swavLossForward(assignShape(s), cfg, scores, t.codes, t.lossState, t.loss),
  ];
}

/**
 * Weight gradients into `g` and, when given, dfeatures ([crops * batch, F]); all of them are of
 * lossScale[LOSS_SCALE.SCALE] * loss when `lossScale` (loss-scale.ts' state) is bound.
 */
export function swavBackward(
  s: SwavShape,
  cfg: SwavStepConfig,
  features: GpuTensor,
  w: SwavHeadWeights,
  t: SwavTensors,
  g: SwavHeadGrads,
  dfeatures?: GpuTensor,
  lossScale?: GpuTensor,
): Dispatch[] {
  return [
    ...swavLossBackward(assignShape(s), cfg, t.head.scores, t.codes, t.lossState, t.dscores, lossScale),
    ...swavHeadBackward(headShape(s), features, w, t.head, t.dscores, g, dfeatures),
  ];
}

/** Multiply-adds x 2 of the head's products, forward and backward (with dfeatures): for TFLOP/s figures. */
export function swavFlops(s: SwavShape): { forward: number; backward: number } {
  const rows = s.crops * s.batch;
  const forward = 2 * rows * (s.features * s.hidden + s.hidden * s.dim + s.dim * s.prototypes);
  return { forward, backward: 2 * forward };
}
