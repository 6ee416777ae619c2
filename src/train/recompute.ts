/**
 * Activation recomputation ("gradient checkpointing", Chen et al. 2016) for one segment of the network, a
 * RegNet stage: its forward pass keeps only its input; its backward pass runs the segment's forward again
 * under a gradient tape and back-propagates through it. Memory held for the backward pass drops from every
 * activation of the network to the segments' inputs plus one segment's activations, for one more forward
 * pass per step.
 *
 * Built on tf.customGrad with the segment's trainable weights as explicit inputs, so tf.variableGrads sees
 * the segment as one op of (input, weights) and gets every weight's gradient from it. What must stay true:
 * - the recomputed forward equals the first one (same inputs, same weights, BatchNorm in training mode on
 *   the same batch), so the gradients equal those without recomputation;
 * - BatchNorm's running-statistic updates (`pendingUpdates`) are queued by the first forward only.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Params } from './layers.js';
import type { Init } from './params.js';

/** The part of a ParamSet a segment needs: its variables by name, and the step's pending updates. */
export interface ParamSource extends Params {
  readonly vars: Map<string, tf.Variable>;
}

type Body = (params: Params, x: tf.Tensor4D) => tf.Tensor4D;

/**
 * `body(params, x)` with its activations recomputed in the backward pass. `prefix` names the segment's
 * weights (every trainable variable whose name starts with it). Before those variables exist (the first
 * pass, which creates them), it is the plain forward pass.
 */
export function recomputed(ps: ParamSource, prefix: string, x: tf.Tensor4D, body: Body): tf.Tensor4D {
  const names = [...ps.vars].filter(([name, v]) => v.trainable && name.startsWith(prefix)).map(([name]) => name);
  if (names.length === 0) return body(ps, x);
  const weights = names.map((n) => ps.vars.get(n)!);
  const segment = tf.customGrad(((...args: unknown[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [input, ...ws] = args as tf.Tensor[];
    save([input!, ...ws]);
    return {
      value: body(view(ps, names, ws, true), input as tf.Tensor4D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => backward(ps, names, saved, dy, body),
    };
  }) as never) as unknown as (...xs: tf.Tensor[]) => tf.Tensor4D;
  return segment(x, ...weights);
}

/** The segment's forward run again on its saved input and weights, and its gradients for `dy`. */
function backward(ps: ParamSource, names: string[], saved: tf.Tensor[], dy: tf.Tensor, body: Body): tf.Tensor[] {
  // tfjs frees a backward pass's tensors only when the whole backward pass ends; this tidy frees the
  // recomputed activations and their gradients as soon as this segment is done.
  return tf.tidy(() => {
    const [input, ...ws] = saved as [tf.Tensor4D, ...tf.Tensor[]];
    const { grads } = withOwnTape(() =>
      tf.grads((...xs: tf.Tensor[]) => body(view(ps, names, xs.slice(1), false), xs[0] as tf.Tensor4D))(
        [input, ...ws],
        dy,
      ),
    );
    return grads.map((g, i) => g ?? tf.zerosLike(saved[i]!));
  });
}

/**
 * Runs a gradient computation inside another one's backward pass. tfjs keeps one active tape per engine:
 * an inner tf.grads replaces the outer tape and clears it when done, after which the outer backward pass
 * fails at its own cleanup. The outer tape is put back.
 */
function withOwnTape<T>(f: () => T): { grads: T } {
  const state = (tf.engine() as unknown as { state: { activeTape: unknown; gradientDepth: number } }).state;
  const outer = state.activeTape;
  try {
    return { grads: f() };
  } finally {
    state.activeTape = outer;
  }
}

/**
 * The segment's weights as `ws` (the custom gradient's inputs, so the tape links them); running statistics
 * stay the variables. `queueUpdates` is false for the recomputation: its BatchNorm updates were queued once.
 */
function view(ps: ParamSource, names: string[], ws: tf.Tensor[], queueUpdates: boolean): Params {
  const byName = new Map(names.map((n, i) => [n, ws[i]!]));
  return {
    get: (name: string, shape: number[], init: Init, trainable = true) => {
      const w = byName.get(name);
      if (w) return w;
      if (trainable) throw new Error(`recomputed segment uses weight ${name}, which is not among its inputs`);
      return ps.get(name, shape, init, false);
    },
    get pendingUpdates() {
      return queueUpdates ? ps.pendingUpdates : null;
    },
    set pendingUpdates(_: Array<[tf.Variable, tf.Tensor]> | null) {
      throw new Error('a recomputed segment cannot replace the pending BatchNorm updates');
    },
  };
}
