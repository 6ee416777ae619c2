/**
 * Dynamic loss scaling on the GPU, with no read-back inside a step (the rule of PyTorch's GradScaler): the
 * loss is multiplied by `scale` before the backward pass; after it, one workgroup looks at every parameter's
 * gradient norm (from the LARS norms pass, kernels/lars.ts) and
 *   - if any is inf or NaN: the step is skipped (LARS_HYPER.SKIP = 1), the scale halved, the clean run reset;
 *   - else: the update unscales the gradients by 1 / scale, and after `growthInterval` clean steps in a row
 *     the scale doubles.
 * Skipped and grown steps are counted in the state, which the log reads at its intervals.
 */
import type { Dispatch, GpuTensor, Kernel } from '../runner.js';
import { LARS_HYPER } from './lars.js';

/** The `state` tensor's layout ([SIZE] f32). */
export const LOSS_SCALE = { SCALE: 0, CLEAN_RUN: 1, SKIPPED: 2, GROWN: 3, SIZE: 4 } as const;

export interface LossScaleOptions {
  /** Clean steps in a row before the scale doubles. @default 2000 (GradScaler's) */
  growthInterval?: number;
  /** The scale never grows past this. @default 2 ** 24 */
  maxScale?: number;
  /** The scale never shrinks below this. @default 2 ** -14 */
  minScale?: number;
}

/** What a checkpoint keeps of the loss-scale state, so a resumed run scales and grows as an unbroken one. */
export interface LossScaleState {
  scale: number;
  /** Clean steps in a row counted toward the next growth. */
  cleanRun: number;
  /**
   * Steps skipped for an inf/NaN gradient, and times the scale grew, over the run so far (a resumed run counts
   * on from its checkpoint's). Absent from checkpoints written before they were kept: counted from 0 then.
   */
  skipped?: number;
  grown?: number;
}

/**
 * The starting state ([LOSS_SCALE.SIZE] f32): GradScaler's initial scale of 2^16, no clean run and nothing
 * counted, or a checkpoint's.
 */
export function initialLossScaleState(scale = 2 ** 16, cleanRun = 0, skipped = 0, grown = 0): Float32Array {
  const state = new Float32Array(LOSS_SCALE.SIZE);
  state[LOSS_SCALE.SCALE] = scale;
  state[LOSS_SCALE.CLEAN_RUN] = cleanRun;
  state[LOSS_SCALE.SKIPPED] = skipped;
  state[LOSS_SCALE.GROWN] = grown;
  return state;
}

/** Bindings: norms ([P, 2] f32: |w|^2, |g|^2), state (read_write), hyper (read_write, LARS_HYPER). */
export function lossScaleKernel(paramCount: number, o: LossScaleOptions = {}): Kernel {
  const growthInterval = o.growthInterval ?? 2000;
  const maxScale = o.maxScale ?? 2 ** 24;
  const minScale = o.minScale ?? 2 ** -14;
  const S = LOSS_SCALE;
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> norms: array<f32>;
@group(0) @binding(1) var<storage, read_write> state: array<f32>;
@group(0) @binding(2) var<storage, read_write> hyper: array<f32>;
var<workgroup> bad: atomic<u32>;
// inf and NaN are the f32 values whose exponent bits are all ones (WGSL has no isinf / isnan).
fn nonFinite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u; }
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3u) {
  if (lid.x == 0u) { atomicStore(&bad, 0u); }
  workgroupBarrier();
  for (var p = lid.x; p < ${paramCount}u; p += 256u) {
    if (nonFinite(norms[p * 2u + 1u])) { atomicStore(&bad, 1u); }
  }
  let overflow = workgroupUniformLoad(&bad) != 0u;
  if (lid.x != 0u) { return; }
  let scale = state[${S.SCALE}];
  hyper[${LARS_HYPER.GRAD_MULTIPLIER}] = 1.0 / scale;
  hyper[${LARS_HYPER.SKIP}] = select(0.0, 1.0, overflow);
  if (overflow) {
    state[${S.SCALE}] = max(scale * 0.5, ${minScale});
    state[${S.CLEAN_RUN}] = 0.0;
    state[${S.SKIPPED}] += 1.0;
    return;
  }
  let run = state[${S.CLEAN_RUN}] + 1.0;
  let grow = run >= ${growthInterval}.0 && scale < ${maxScale}.0;
  state[${S.SCALE}] = select(scale, scale * 2.0, grow);
  state[${S.CLEAN_RUN}] = select(run, 0.0, run >= ${growthInterval}.0);
  state[${S.GROWN}] += select(0.0, 1.0, grow);
}
`;
  return { key: `loss-scale:${paramCount}:${growthInterval}:${maxScale}:${minScale}`, code, workgroups: [1, 1, 1] };
}

/** The dispatch to pass as larsStep's `between`. */
export function lossScaleCheck(
  paramCount: number,
  norms: GpuTensor,
  state: GpuTensor,
  hyper: GpuTensor,
  o: LossScaleOptions = {},
): Dispatch[] {
  return [{ kernel: lossScaleKernel(paramCount, o), buffers: [norms, state, hyper] }];
}
