/**
 * Elementwise kernels of the RegNet block and the helpers every one-thread-per-element kernel shares:
 *   add       y = a + b, or relu(a + b) (the block's residual join)
 *   reluGrad  dx = dy where y > 0, else 0 (the backward of a ReLU, from its output)
 * Element i of a flat tensor is thread gid.x + gid.y * 65535 * 256, so tensors past 16.7M elements still
 * dispatch at most 65535 workgroups along each axis.
 */
import type { Dtype, Kernel } from '../runner.js';

const MAX_DIM = 65535;
export const ELEMENTWISE_GROUP = 256;

/** Workgroups of 256 threads covering `total` elements. */
export function elementwiseGroups(total: number): [number, number, number] {
  const groups = Math.max(1, Math.ceil(total / ELEMENTWISE_GROUP));
  return [Math.min(groups, MAX_DIM), Math.ceil(groups / MAX_DIM), 1];
}

/** The WGSL entry-point header: `i` is the element index, threads past `total` return. */
export function elementwiseEntry(total: number): string {
  return `@compute @workgroup_size(${ELEMENTWISE_GROUP})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * ${MAX_DIM * ELEMENTWISE_GROUP}u;
  if (i >= ${total}u) { return; }`;
}

/** dst[dstOffset + i] = src[srcOffset + i] for i < count (f32): bindings src, dst. */
export function copyKernel(count: number, srcOffset: number, dstOffset: number): Kernel {
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
${elementwiseEntry(count)}
  dst[${dstOffset}u + i] = src[${srcOffset}u + i];
}
`;
  return { key: `copy:${count}:${srcOffset}:${dstOffset}`, code, workgroups: elementwiseGroups(count) };
}

export function enableF16(...types: Dtype[]): string {
  return types.includes('f16') ? 'enable f16;' : '';
}

/** y = a + b (relu: max(0, a + b)): bindings a, b, y, all `act`; the sum is taken in f32. */
export function addKernel(total: number, act: Dtype, relu: boolean): Kernel {
  const code = /* wgsl */ `${enableF16(act)}
@group(0) @binding(0) var<storage, read> a: array<${act}>;
@group(0) @binding(1) var<storage, read> b: array<${act}>;
@group(0) @binding(2) var<storage, read_write> y: array<${act}>;
${elementwiseEntry(total)}
  let v = f32(a[i]) + f32(b[i]);
  y[i] = ${act}(${relu ? 'max(v, 0.0)' : 'v'});
}
`;
  return { key: `add:${total}:${act}:${relu ? 'relu' : 'id'}`, code, workgroups: elementwiseGroups(total) };
}

/**
 * dx = dy where y > 0, else 0: bindings y (the ReLU's output), dy, dx, all `act`. At y == 0 the gradient is
 * 0, as tfjs's relu gradient (step(x)) and PyTorch's.
 */
export function reluGradKernel(total: number, act: Dtype): Kernel {
  const code = /* wgsl */ `${enableF16(act)}
@group(0) @binding(0) var<storage, read> y: array<${act}>;
@group(0) @binding(1) var<storage, read> dy: array<${act}>;
@group(0) @binding(2) var<storage, read_write> dx: array<${act}>;
${elementwiseEntry(total)}
  dx[i] = select(${act}(0.0), dy[i], y[i] > ${act}(0.0));
}
`;
  return { key: `relu-grad:${total}:${act}`, code, workgroups: elementwiseGroups(total) };
}
