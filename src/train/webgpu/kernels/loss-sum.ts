/**
 * The training loss summed over the steps between two reads, on the GPU: a step adds its loss and nothing is
 * read back inside it; the trainer reads the sum (and resets it) only when it logs. One thread, in submission
 * order, so the sum is the same on every run.
 */
import type { Dispatch, GpuTensor, Kernel } from '../runner.js';

/** Bindings: loss ([1] f32, the step's), sum ([1] f32, read_write). */
export function lossSumKernel(): Kernel {
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> loss: array<f32>;
@group(0) @binding(1) var<storage, read_write> sum: array<f32>;
@compute @workgroup_size(1)
fn main() {
  sum[0] += loss[0];
}
`;
  return { key: 'loss-sum', code, workgroups: [1, 1, 1] };
}

export function lossSum(loss: GpuTensor, sum: GpuTensor): Dispatch[] {
  return [{ kernel: lossSumKernel(), buffers: [loss, sum] }];
}
