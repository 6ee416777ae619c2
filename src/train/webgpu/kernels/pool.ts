/**
 * Per-(image, channel) reductions over the spatial positions of an NHWC activation viewed as [batch, hw, C]:
 *   mean  out[b, c] = sum_p x[b, p, c] / hw         global average pooling (the head, and SE's squeeze)
 *   dot   out[b, c] = sum_p x[b, p, c] * y[b, p, c]  SE's gate gradient, sum of dy * x
 * and the pooling's backward, dx[b, p, c] = dy[b, c] / hw. Outputs of the reductions are f32.
 */
import type { Dtype, Kernel } from '../runner.js';
import { elementwiseEntry, elementwiseGroups, enableF16 } from './elementwise.js';

const MAX_DIM = 65535;

export interface SpatialShape {
  batch: number;
  /** height * width. */
  hw: number;
  channels: number;
}

function key(s: SpatialShape, act: Dtype): string {
  return `${s.batch}x${s.hw}x${s.channels}:${act}`;
}

/**
 * One workgroup per (channel tile, image): CT channels side by side (adjacent addresses), RT threads down the
 * positions, then a tree sum. Bindings: x (, y for 'dot'), out ([batch, C] f32).
 */
export function channelReduceKernel(s: SpatialShape, act: Dtype, mode: 'mean' | 'dot'): Kernel {
  if (s.batch > MAX_DIM) throw new RangeError(`channel reduce: batch ${s.batch} exceeds ${MAX_DIM} workgroups`);
  const CT = Math.min(32, Math.max(4, 2 ** Math.ceil(Math.log2(s.channels))));
  const RT = 256 / CT;
  const dot = mode === 'dot';
  const code = /* wgsl */ `${enableF16(act)}
@group(0) @binding(0) var<storage, read> x: array<${act}>;
${dot ? `@group(0) @binding(1) var<storage, read> y: array<${act}>;` : ''}
@group(0) @binding(${dot ? 2 : 1}) var<storage, read_write> out: array<f32>;
const P = ${s.hw}u; const C = ${s.channels}u; const CT = ${CT}u; const RT = ${RT}u;
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(${CT}, ${RT}, 1)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x * CT + lid.x;
  let b = wid.y;
  var a = 0.0;
  if (c < C) {
    for (var p = lid.y; p < P; p += RT) {
      let i = (b * P + p) * C + c;
      ${dot ? 'a = fma(f32(x[i]), f32(y[i]), a);' : 'a += f32(x[i]);'}
    }
  }
  let t = lid.y * CT + lid.x;
  part[t] = a;
  for (var step = RT / 2u; step > 0u; step /= 2u) {
    workgroupBarrier();
    if (lid.y < step) { part[t] += part[t + step * CT]; }
  }
  if (lid.y == 0u && c < C) { out[b * C + c] = part[t]${dot ? '' : ` / ${s.hw}.0`}; }
}
`;
  return { key: `channel-${mode}:${key(s, act)}`, code, workgroups: [Math.ceil(s.channels / CT), s.batch, 1] };
}

/** Global average pooling's backward, dx[b, p, c] = dy[b, c] / hw: bindings dy ([batch, C] f32), dx (`act`). */
export function poolGradKernel(s: SpatialShape, act: Dtype): Kernel {
  const total = s.batch * s.hw * s.channels;
  const code = /* wgsl */ `${enableF16(act)}
@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read_write> dx: array<${act}>;
const P = ${s.hw}u; const C = ${s.channels}u;
${elementwiseEntry(total)}
  dx[i] = ${act}(dy[(i / (P * C)) * C + i % C] / ${s.hw}.0);
}
`;
  return { key: `pool-grad:${key(s, act)}`, code, workgroups: elementwiseGroups(total) };
}
