/**
 * Named model variables, created on first use with deterministic initial values (a pure function of the
 * run's seed and the variable's name), so two runs with one seed start from the same weights on any backend.
 * Non-trainable variables hold BatchNorm running statistics.
 */
import * as tf from '@tensorflow/tfjs-core';
import { prng, seedOf } from '../rng.js';

export type Init = 'he' | 'zeros' | 'ones' | { normal: number } | { uniform: number };

let instances = 0;

export class ParamSet {
  readonly vars = new Map<string, tf.Variable>();
  /** tfjs registers variable names globally: each set prefixes its own so several models can coexist. */
  readonly prefix = `ps${++instances}/`;
  /** Set while a forward pass builds: BatchNorm running-stat updates to apply after the step. */
  pendingUpdates: Array<[tf.Variable, tf.Tensor]> | null = null;

  constructor(private readonly seed: number) {}

  get(name: string, shape: number[], init: Init, trainable = true): tf.Variable {
    let v = this.vars.get(name);
    if (!v) {
      v = tf.variable(
        tf.tensor(initValues(shape, init, seedOf(this.seed, hashName(name))), shape),
        trainable,
        this.prefix + name,
      );
      this.vars.set(name, v);
    }
    return v;
  }

  /** Gradients from tf.variableGrads, keyed by this set's names. */
  byName<T>(grads: Record<string, T>): Record<string, T> {
    const out: Record<string, T> = {};
    for (const [key, g] of Object.entries(grads))
      out[key.startsWith(this.prefix) ? key.slice(this.prefix.length) : key] = g;
    return out;
  }

  trainable(): Map<string, tf.Variable> {
    return new Map([...this.vars].filter(([, v]) => v.trainable));
  }

  /** Parameters counted as torchvision does: trainable only (running statistics are buffers). */
  count(): number {
    let n = 0;
    for (const v of this.trainable().values()) n += v.size;
    return n;
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
  }
}

function hashName(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619) >>> 0;
  return h;
}

function initValues(shape: number[], init: Init, seed: number): Float32Array {
  const size = shape.reduce((a, b) => a * b, 1);
  if (init === 'zeros') return new Float32Array(size);
  if (init === 'ones') return new Float32Array(size).fill(1);
  const rand = prng(seed);
  if (typeof init === 'object' && 'uniform' in init)
    return Float32Array.from({ length: size }, () => (2 * rand() - 1) * init.uniform);
  // He (fan-out, as torchvision's RegNet) for conv weights [kh, kw, in, out]; an explicit std otherwise.
  const std =
    init === 'he' ? Math.sqrt(2 / ((shape[0] ?? 1) * (shape[1] ?? 1) * (shape[shape.length - 1] ?? 1))) : init.normal;
  const out = new Float32Array(size);
  for (let i = 0; i < size; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rand())),
      t = 2 * Math.PI * rand(); // Box-Muller
    out[i] = r * Math.cos(t) * std;
    if (i + 1 < size) out[i + 1] = r * Math.sin(t) * std;
  }
  return out;
}
