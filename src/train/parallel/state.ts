/**
 * A model's whole training state as plain arrays, to copy between threads: the workers start from the
 * coordinator's model (fresh or resumed from a checkpoint) and the coordinator's model takes a worker's
 * state back before a checkpoint or an evaluation. Everything a checkpoint holds travels.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SwavModel } from '../model.js';

export interface ModelState {
  /** Every variable by name (weights and BatchNorm running statistics). */
  vars: Array<[string, Float32Array]>;
  /** LARS momentum buffers by variable name (absent before the first step). */
  slots: Array<[string, Float32Array]>;
  queue: Float32Array[];
  queueFilled: number;
}

const values = (t: tf.Tensor) => t.dataSync() as Float32Array;

export function exportState(model: SwavModel): ModelState {
  return {
    vars: [...model.ps.vars].map(([name, v]) => [name, values(v).slice()]),
    slots: [...model.lars.slots].map(([name, v]) => [name, values(v).slice()]),
    queue: model.queue.map((q) => values(q).slice()),
    queueFilled: model.queueFilled,
  };
}

/** Writes `state` into a model of the same configuration; a missing or misshapen tensor is an error. */
export function importState(model: SwavModel, state: ModelState): void {
  const tensor = (name: string, data: Float32Array, like: tf.Tensor) => {
    if (data.length !== like.size)
      throw new Error(`parallel training: ${name} has ${data.length} values, the model ${like.size}`);
    return tf.tensor(data, like.shape);
  };
  if (state.vars.length !== model.ps.vars.size)
    throw new Error(`parallel training: ${state.vars.length} variables sent, the model has ${model.ps.vars.size}`);
  for (const [name, data] of state.vars) {
    const v = model.ps.vars.get(name);
    if (!v) throw new Error(`parallel training: the model has no variable ${name}`);
    tf.tidy(() => v.assign(tensor(name, data, v)));
  }
  for (const v of model.lars.slots.values()) v.dispose();
  model.lars.slots.clear();
  for (const [name, data] of state.slots) {
    const w = model.ps.vars.get(name);
    if (!w) throw new Error(`parallel training: a momentum slot names no variable (${name})`);
    const initial = tensor(name, data, w);
    model.lars.slots.set(name, tf.variable(initial, false, `${w.name}.momentum`));
    initial.dispose(); // the variable holds its own reference to the data
  }
  if (state.queue.length !== model.queue.length)
    throw new Error(`parallel training: ${state.queue.length} queues sent, the model has ${model.queue.length}`);
  model.queue = model.queue.map((q, i) => {
    const next = tensor(`queue ${i}`, state.queue[i]!, q) as tf.Tensor2D;
    q.dispose();
    return next;
  });
  model.queueFilled = state.queueFilled;
}
