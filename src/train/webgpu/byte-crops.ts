/**
 * Crops that arrive as bytes (augment's ByteCrop, what `train` asks the loader for on webgpu): staged on the
 * device as packed u32 words, a quarter of the floats' upload, and decoded into the step's f32 inputs by
 * kernels recorded in front of the step, inside its one submission. Made at the first batch of bytes, so a
 * run fed floats (tensors, a BatchSource of FloatCrops) never pays for it.
 */
import type { ByteCrop, CropNormalisation } from '../../crop-tensor.js';
import { cropDecode } from './kernels/crop-decode.js';
import type { GpuRunner, GpuTensor, Recording } from './runner.js';
import { WebGpuTrainingError } from './errors.js';

/** The step's recordings, which the decode goes in front of. */
export interface StepRecordings {
  plain: Recording;
  /** The step with SwAV's queue in the assignment (null without a queue). */
  queued: Recording | null;
}

export class ByteCropInputs {
  /** Per crop: an ordinary, word-padded buffer that bytes in shared memory or of odd length go through. */
  private readonly padded: Uint8Array[] = [];

  private constructor(
    private readonly runner: GpuRunner,
    private readonly staged: GpuTensor[],
    readonly norm: CropNormalisation,
    private readonly recordings: StepRecordings,
  ) {}

  /** Stages one buffer per target (the step's f32 crop inputs) and records their decode before `steps`. */
  static async make(
    runner: GpuRunner,
    targets: readonly GpuTensor[],
    norm: CropNormalisation,
    steps: StepRecordings,
  ): Promise<ByteCropInputs> {
    const staged = targets.map((t) => runner.tensor([Math.ceil(t.size / 4)]));
    try {
      const { maxStorageBufferBindingSize: limit } = runner.device.limits;
      const decode = await runner.record(targets.flatMap((t, i) => cropDecode(staged[i]!, t, norm, limit)));
      const recordings = {
        plain: decode.followedBy(steps.plain),
        queued: steps.queued && decode.followedBy(steps.queued),
      };
      return new ByteCropInputs(runner, staged, { mean: [...norm.mean], std: [...norm.std] }, recordings);
    } catch (err) {
      runner.release(...staged);
      throw err;
    }
  }

  /** Writes a batch's bytes (their shapes checked by the caller); every crop must share the first's normalisation. */
  write(crops: readonly ByteCrop[]): void {
    crops.forEach((c, i) => {
      if (!sameNormalisation(c, this.norm))
        throw new WebGpuTrainingError(
          `crop ${i} of this batch is normalised with mean ${c.mean.join(',')} and std ${c.std.join(',')}; ` +
            `the run's first batch had ${this.norm.mean.join(',')} and ${this.norm.std.join(',')}`,
        );
      const staged = this.staged[i]!;
      // writeBuffer takes whole words, and Dawn for Node crashes (webgpu 0.6.2) on a view of a SharedArrayBuffer.
      if (c.data.buffer instanceof SharedArrayBuffer || c.data.byteLength % 4) {
        const pad = (this.padded[i] ??= new Uint8Array(staged.size * 4));
        pad.set(c.data);
        this.runner.writeBytes(staged, pad);
      } else this.runner.writeBytes(staged, c.data);
    });
  }

  /** The step to submit after a write: decode, then the step (with the queue when `queued`). */
  recording(queued: boolean): Recording {
    if (queued && !this.recordings.queued) throw new RangeError('ByteCropInputs: the step has no queued recording');
    return queued ? this.recordings.queued! : this.recordings.plain;
  }

  /** Bytes of device memory the staged crops hold. */
  get bytes(): number {
    return this.staged.reduce((n, t) => n + t.buffer.size, 0);
  }

  release(): void {
    this.runner.release(...this.staged);
  }
}

function sameNormalisation(c: ByteCrop, norm: CropNormalisation): boolean {
  return [0, 1, 2].every((k) => c.mean[k] === norm.mean[k] && c.std[k] === norm.std[k]);
}
