/**
 * Crops that arrive as bytes (augment's ByteCrop, what `train` asks the loader for on webgpu): staged on the
 * device as packed u32 words, a quarter of the floats' upload, and decoded into the step's f32 inputs by
 * kernels recorded in front of the step, inside its one submission. The staging buffers are made at start when
 * the run says it feeds bytes (so its memory check and memory line count them), else at the first batch of
 * bytes, so a run fed floats never pays for them; the decode is recorded at the first batch, whose
 * normalisation it bakes in.
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
  /** Per target: its bytes on the device, packed into u32 words. */
  private readonly staged: GpuTensor[];
  /** The first batch's normalisation and the recordings that decode with it (null before that batch). */
  private decode: { norm: CropNormalisation; recordings: StepRecordings } | null = null;

  /** Makes one staging buffer per target (the step's f32 crop inputs, which outlive this). */
  constructor(
    private readonly runner: GpuRunner,
    private readonly targets: readonly GpuTensor[],
  ) {
    this.staged = targets.map((t) => runner.tensor([Math.ceil(t.size / 4)]));
  }

  /** Records the decode with `norm` in front of `steps`: once, at the first batch (later calls do nothing). */
  async prepare(norm: CropNormalisation, steps: StepRecordings): Promise<void> {
    if (this.decode) return;
    const { maxStorageBufferBindingSize: limit } = this.runner.device.limits;
    const kernels = this.targets.flatMap((t, i) => cropDecode(this.staged[i]!, t, norm, limit));
    const decode = await this.runner.record(kernels);
    const recordings = {
      plain: decode.followedBy(steps.plain),
      queued: steps.queued && decode.followedBy(steps.queued),
    };
    this.decode = { norm: { mean: [...norm.mean], std: [...norm.std] }, recordings };
  }

  /** Writes a batch's bytes (their shapes checked by the caller); every crop must share the first's normalisation. */
  write(crops: readonly ByteCrop[]): void {
    const { norm } = this.prepared();
    crops.forEach((c, i) => {
      if (!sameNormalisation(c, norm))
        throw new WebGpuTrainingError(
          `crop ${i} of this batch is normalised with mean ${c.mean.join(',')} and std ${c.std.join(',')}; ` +
            `the run's first batch had ${norm.mean.join(',')} and ${norm.std.join(',')}`,
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
    const { recordings } = this.prepared();
    if (queued && !recordings.queued) throw new RangeError('ByteCropInputs: the step has no queued recording');
    return queued ? recordings.queued! : recordings.plain;
  }

  private prepared(): NonNullable<ByteCropInputs['decode']> {
    if (!this.decode) throw new RangeError('ByteCropInputs: prepare() has not run');
    return this.decode;
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
