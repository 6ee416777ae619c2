/**
 * The LARS update of optim.ts (`Lars.apply`) over every parameter at once, in two dispatches:
 *   norms   one workgroup per parameter: |w|^2 and |g|^2 (f32)
 *   update  one thread per element: the trust ratio from its parameter's norms, weight decay, momentum, the
 *           new f32 master weight, and (when the weights have an f16 copy) that copy, written in the same pass
 * All parameters live in flat buffers (master weights, gradients, momentum: f32; the copy: f16), each one at an
 * offset that is a multiple of `align` elements so that kernels can bind it as a view (GpuRunner.view).
 * A u32 table [P, 4] (offset, size, mode, 0) says where each parameter is and how it is updated; a thread finds
 * its parameter by binary search in it. `hyper` ([3] f32, LARS_HYPER) holds what changes from step to step, so
 * the recording never does: the learning rate (written before each submission), the gradient multiplier that
 * undoes a loss scale and a skip flag (1 and 0 without loss scaling; loss-scale.ts writes them on the GPU).
 */
import { excludedFromLars, type LarsConfig } from '../../optim.js';
import type { Dispatch, GpuTensor, Kernel } from '../runner.js';
import { elementwiseEntry, elementwiseGroups } from './elementwise.js';

const MAX_DIM = 65535;

/** How a parameter is updated, as optim.ts decides from its name and the config. */
export const LARS_MODE = {
  /** Trust-ratio scaling of (g + wd w). */
  scaled: 0,
  /** Trust-ratio scaling without weight decay: BatchNorm parameters and biases when excludeBnBias is false. */
  scaledNoDecay: 1,
  /** Plain momentum SGD on g: BatchNorm parameters and biases when excludeBnBias is true. */
  plain: 2,
} as const;

/** The `hyper` tensor's layout. */
export const LARS_HYPER = { LR: 0, GRAD_MULTIPLIER: 1, SKIP: 2, SIZE: 3 } as const;

export function larsMode(name: string, config: LarsConfig): number {
  if (!excludedFromLars(name)) return LARS_MODE.scaled;
  return config.excludeBnBias ? LARS_MODE.plain : LARS_MODE.scaledNoDecay;
}

export interface ParamSlot {
  name: string;
  shape: readonly number[];
  size: number;
  /** Element offset in the flat buffers. */
  offset: number;
}

export interface ParamLayout {
  params: ParamSlot[];
  /** Elements of each flat buffer (the last parameter's end, rounded up to `align`). */
  total: number;
}

/**
 * Places parameters one after another at multiples of `align` elements. 128 keeps both an f32 view (512 bytes)
 * and an f16 view (256 bytes) on WebGPU's usual 256-byte binding alignment.
 */
export function paramLayout(params: readonly { name: string; shape: readonly number[] }[], align = 128): ParamLayout {
  let offset = 0;
  const slots = params.map((p) => {
    const size = p.shape.reduce((a, b) => a * b, 1);
    const slot = { name: p.name, shape: [...p.shape], size, offset };
    offset += Math.ceil(size / align) * align;
    return slot;
  });
  return { params: slots, total: Math.max(align, offset) };
}

/** The table the kernels read: [P, 4] u32 (offset, size, mode, 0). */
export function larsTable(layout: ParamLayout, config: LarsConfig): Uint32Array {
  const table = new Uint32Array(layout.params.length * 4);
  layout.params.forEach((p, i) => table.set([p.offset, p.size, larsMode(p.name, config), 0], i * 4));
  return table;
}

/** Squared norms: bindings w, g, table, norms ([P, 2] f32). */
export function larsNormsKernel(paramCount: number): Kernel {
  if (paramCount > MAX_DIM) throw new RangeError(`LARS: ${paramCount} parameters exceed ${MAX_DIM} workgroups`);
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;
var<workgroup> sw: array<f32, 256>;
var<workgroup> sg: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let p = wid.x;
  let start = table[p * 4u];
  let end = start + table[p * 4u + 1u];
  var a = 0.0;
  var b = 0.0;
  for (var i = start + lid.x; i < end; i += 256u) {
    a = fma(w[i], w[i], a);
    b = fma(g[i], g[i], b);
  }
  sw[lid.x] = a;
  sg[lid.x] = b;
  for (var step = 128u; step > 0u; step /= 2u) {
    workgroupBarrier();
    if (lid.x < step) {
      sw[lid.x] += sw[lid.x + step];
      sg[lid.x] += sg[lid.x + step];
    }
  }
  if (lid.x == 0u) {
    norms[p * 2u] = sw[0];
    norms[p * 2u + 1u] = sg[0];
  }
}
`;
  return { key: `lars-norms:${paramCount}`, code, workgroups: [paramCount, 1, 1] };
}

/**
 * The update: bindings w (read_write), g, v (read_write), table, norms, hyper, and w16 (read_write f16) when
 * `halfCopy`. Elements in the alignment gaps between parameters are left alone.
 */
export function larsUpdateKernel(layout: ParamLayout, config: LarsConfig, halfCopy: boolean): Kernel {
  const P = layout.params.length;
  const code = /* wgsl */ `${halfCopy ? 'enable f16;' : ''}
@group(0) @binding(0) var<storage, read_write> w: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<u32>;
@group(0) @binding(4) var<storage, read> norms: array<f32>;
@group(0) @binding(5) var<storage, read> hyper: array<f32>;
${halfCopy ? '@group(0) @binding(6) var<storage, read_write> w16: array<f16>;' : ''}
const P = ${P}u;
const MOMENTUM = ${f32Literal(config.momentum)}; const WEIGHT_DECAY = ${f32Literal(config.weightDecay)}; const TRUST = ${f32Literal(config.trust)};
${elementwiseEntry(layout.total)}
  // The last parameter whose offset is <= i.
  var lo = 0u;
  var hi = P;
  while (hi - lo > 1u) {
    let mid = (lo + hi) / 2u;
    if (table[mid * 4u] <= i) { lo = mid; } else { hi = mid; }
  }
  if (i >= table[lo * 4u] + table[lo * 4u + 1u] || hyper[${LARS_HYPER.SKIP}] != 0.0) { return; }
  let mode = table[lo * 4u + 2u];
  let lr = hyper[${LARS_HYPER.LR}];
  let grad = g[i] * hyper[${LARS_HYPER.GRAD_MULTIPLIER}];
  var update = grad;
  if (mode != ${LARS_MODE.plain}u) {
    let decay = select(WEIGHT_DECAY, 0.0, mode == ${LARS_MODE.scaledNoDecay}u);
    let wNorm = sqrt(norms[lo * 2u]);
    let gNorm = sqrt(norms[lo * 2u + 1u]) * abs(hyper[${LARS_HYPER.GRAD_MULTIPLIER}]);
    let ratio = select(1.0, wNorm * TRUST / (gNorm + wNorm * decay), wNorm > 0.0 && gNorm > 0.0);
    ${config.clip ? 'let scale = select(ratio, min(ratio / lr, 1.0), lr > 0.0);' : 'let scale = ratio;'}
    update = (grad + w[i] * decay) * scale;
  }
  let velocity = v[i] * MOMENTUM + update;
  v[i] = velocity;
  let weight = w[i] - velocity * lr;
  w[i] = weight;
  ${halfCopy ? 'w16[i] = f16(weight);' : ''}
}
`;
  const cfg = `${config.momentum}:${config.weightDecay}:${config.trust}:${config.clip ? 'clip' : 'noclip'}`;
  return {
    key: `lars-update:${P}x${layout.total}:${cfg}:${halfCopy ? 'f16copy' : 'f32'}`,
    code,
    workgroups: elementwiseGroups(layout.total),
  };
}

/** A number as a WGSL f32 literal (always with a decimal point or exponent). */
function f32Literal(x: number): string {
  const s = String(x);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

export interface LarsTensors {
  /** Flat f32 buffers of `layout.total` elements. */
  w: GpuTensor;
  g: GpuTensor;
  v: GpuTensor;
  /** The [P, 4] table from `larsTable`, written once (`GpuRunner.writeBytes`). */
  table: GpuTensor;
  /** [P, 2] f32 scratch. */
  norms: GpuTensor;
  /** [3] f32, LARS_HYPER: the learning rate is written before each submission. */
  hyper: GpuTensor;
  /** The f16 weight copy, written with the masters when present. */
  w16?: GpuTensor;
}

/** Norms, then `between` (the loss-scale check, which needs the norms), then the update. */
export function larsStep(
  layout: ParamLayout,
  config: LarsConfig,
  t: LarsTensors,
  between: Dispatch[] = [],
): Dispatch[] {
  const update = larsUpdateKernel(layout, config, t.w16 !== undefined);
  return [
    { kernel: larsNormsKernel(layout.params.length), buffers: [t.w, t.g, t.table, t.norms] },
    ...between,
    { kernel: update, buffers: [t.w, t.g, t.v, t.table, t.norms, t.hyper, ...(t.w16 ? [t.w16] : [])] },
  ];
}
