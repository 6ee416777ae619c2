/**
 * Optimisation as in SwAV: SGD with momentum wrapped in LARS (LARC without clipping, trust 0.001), weight
 * decay folded into the LARS-scaled gradient; BatchNorm parameters and biases are excluded from both.
 * Schedules are pure functions of the step.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface LarsConfig {
  momentum: number;
  weightDecay: number;
  trust: number;
  /**
   * Leave BatchNorm parameters and biases out of the LARS scaling (plain SGD for them, as SimCLR/BYOL's LARS).
   * facebookresearch/swav's LARC scales every parameter (false); either way they get no weight decay.
   */
  excludeBnBias: boolean;
  /** LARC's clip mode (apex, solo-learn): the per-layer rate is min(trust |w| / |g|, lr), never above lr. */
  clip?: boolean;
}

export const DEFAULT_LARS: LarsConfig = { momentum: 0.9, weightDecay: 1e-6, trust: 0.001, excludeBnBias: true };

/** BatchNorm scales/shifts and biases: no weight decay, no LARS scaling. */
export function excludedFromLars(name: string): boolean {
  return /\.(gamma|beta|b)$/.test(name);
}

export interface ScheduleConfig {
  baseLr: number;
  finalLr: number;
  warmupSteps: number;
  startWarmupLr: number;
  totalSteps: number;
}

/** Linear warmup from startWarmupLr to baseLr, then cosine to finalLr at totalSteps. */
export function learningRate(step: number, s: ScheduleConfig): number {
  if (step < s.warmupSteps) return s.startWarmupLr + ((s.baseLr - s.startWarmupLr) * step) / s.warmupSteps;
  const t = Math.min(1, (step - s.warmupSteps) / Math.max(1, s.totalSteps - s.warmupSteps));
  return s.finalLr + 0.5 * (s.baseLr - s.finalLr) * (1 + Math.cos(Math.PI * t));
}

export class Lars {
  /** Momentum buffers by variable name. */
  readonly slots = new Map<string, tf.Variable>();

  constructor(readonly config: LarsConfig = DEFAULT_LARS) {}

  /** One step: v = m v + g'; w -= lr v, with g' = trust |w| / (|g| + wd |w|) (g + wd w) for included weights. */
  apply(vars: Map<string, tf.Variable>, grads: Record<string, tf.Tensor>, lr: number): void {
    const { momentum, trust, excludeBnBias } = this.config;
    tf.tidy(() => {
      for (const [name, w] of vars) {
        const g = grads[name];
        if (!g) continue;
        let update: tf.Tensor = g;
        const plain = excludedFromLars(name);
        const weightDecay = plain ? 0 : this.config.weightDecay;
        if (!(plain && excludeBnBias)) {
          const wNorm = tf.norm(w),
            gNorm = tf.norm(g);
          const ratio = tf.where(
            tf.logicalAnd(tf.greater(wNorm, 0), tf.greater(gNorm, 0)),
            tf.div(tf.mul(wNorm, trust), tf.add(gNorm, tf.mul(wNorm, weightDecay))),
            tf.scalar(1),
          );
          const scale = this.config.clip && lr > 0 ? tf.minimum(tf.div(ratio, lr), 1) : ratio;
          update = tf.mul(tf.add(g, tf.mul(w, weightDecay)), scale);
        }
        let v = this.slots.get(name);
        if (!v) {
          v = tf.variable(tf.zerosLike(w), false, `${w.name}.momentum`);
          this.slots.set(name, v);
        }
        v.assign(tf.add(tf.mul(v, momentum), update));
        w.assign(tf.sub(w, tf.mul(v, lr)));
      }
    });
  }
}
