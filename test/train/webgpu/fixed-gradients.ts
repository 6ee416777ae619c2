/**
 * A test double of the stepper's GradientProgram: instead of a forward and backward pass it writes gradients
 * the test chose (times the loss scale in force, as a backward pass of loss * scale would), a loss the test
 * chose, and optionally running statistics the test chose. The test sets them before each step (queue writes,
 * ordered before the step's submission), so the stepper's own parts can be checked against optim.ts exactly.
 */
import type { ParamLayout } from '../../../src/train/webgpu/kernels/lars.js';
import { elementwiseEntry, elementwiseGroups } from '../../../src/train/webgpu/kernels/elementwise.js';
import { LOSS_SCALE } from '../../../src/train/webgpu/kernels/loss-scale.js';
import type { Dispatch, GpuRunner, GpuTensor, Kernel } from '../../../src/train/webgpu/runner.js';
import type { GradientProgram, GradientProgramSpec, StepBuffers } from '../../../src/train/webgpu/stepper.js';

/** Bindings: values, lossIn ([1]), lossScale (LOSS_SCALE), grads, loss. */
function fixedGradKernel(total: number): Kernel {
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> values: array<f32>;
@group(0) @binding(1) var<storage, read> lossIn: array<f32>;
@group(0) @binding(2) var<storage, read> lossScale: array<f32>;
@group(0) @binding(3) var<storage, read_write> grads: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;
${elementwiseEntry(total)}
  grads[i] = values[i] * lossScale[${LOSS_SCALE.SCALE}];
  if (i == 0u) { loss[0] = lossIn[0]; }
}
`;
  return { key: `test-fixed-grads:${total}`, code, workgroups: elementwiseGroups(total) };
}

/** Bindings: wanted, running: running = wanted where target is finite (NaN marks "leave alone"). */
function fixedRunningKernel(total: number): Kernel {
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> wanted: array<f32>;
@group(0) @binding(1) var<storage, read_write> running: array<f32>;
${elementwiseEntry(total)}
  let t = wanted[i];
  if ((bitcast<u32>(t) & 0x7f800000u) != 0x7f800000u) { running[i] = t; }
}
`;
  return { key: `test-fixed-running:${total}`, code, workgroups: elementwiseGroups(total) };
}

export class FixedGradients implements GradientProgram {
  readonly params: ParamLayout;
  readonly stats: ParamLayout;
  private readonly values: GpuTensor;
  private readonly lossIn: GpuTensor;
  private readonly running: GpuTensor;

  constructor(
    private readonly runner: GpuRunner,
    spec: GradientProgramSpec,
  ) {
    this.params = spec.layout.params;
    this.stats = spec.layout.stats;
    this.values = runner.tensor([this.params.total]);
    this.lossIn = runner.tensor([1]);
    this.running = runner.tensor([this.stats.total]);
    this.set(new Float32Array(this.params.total), 0);
    runner.writeBytes(this.running, new Float32Array(this.stats.total).fill(NaN));
  }

  /** The next steps' unscaled gradients (flat, laid out by `params`) and loss. */
  set(grads: Float32Array, loss: number): void {
    this.runner.writeBytes(this.values, grads);
    this.runner.writeBytes(this.lossIn, Float32Array.of(loss));
  }

  /** Running statistics the next steps write (flat, laid out by `stats`; NaN leaves an element alone). */
  setRunning(values: Float32Array): void {
    this.runner.writeBytes(this.running, values);
  }

  dispatches(io: StepBuffers): Dispatch[] {
    return [
      {
        kernel: fixedGradKernel(this.params.total),
        buffers: [this.values, this.lossIn, io.lossScale, io.grads, io.loss],
      },
      { kernel: fixedRunningKernel(this.stats.total), buffers: [this.running, io.running] },
    ];
  }

  release(): void {
    this.runner.release(this.values, this.lossIn, this.running);
  }
}
