/**
 * Runs generated WGSL kernels: pipelines compiled once per kernel key, tensors drawn from a pool of buffers
 * by size, and recordings (pipelines + bind groups made once) that encode all their dispatches into one
 * command buffer per `submit()`. Nothing here reads back unless asked (`read`).
 */
/// <reference types="@webgpu/types" />
import { availableParallelism } from 'node:os';
import { WildstreamError } from '../../errors.js';
import type { GpuContext } from './device-info.js';
import { WebGpuKernelError } from './errors.js';
import { fromHalf, toHalf } from './half.js';
import { DTYPE_BYTES, type Dtype, type Kernel } from './kernel.js';

export { DTYPE_BYTES, type Dtype, type Kernel } from './kernel.js';

export interface GpuTensor {
  readonly buffer: GPUBuffer;
  readonly shape: readonly number[];
  readonly dtype: Dtype;
  /** Element count. */
  readonly size: number;
  /** Byte offset of a view into a larger tensor's buffer (`GpuRunner.view`); absent for a tensor of its own. */
  readonly offset?: number;
}

/** One dispatch: the kernel and its storage buffers, bound in order to `@group(0) @binding(0..)`. */
export interface Dispatch {
  kernel: Kernel;
  buffers: readonly GpuTensor[];
}

// Flag values fixed by the WebGPU specification (the GPUBufferUsage / GPUMapMode globals exist only after
// Dawn's globals are installed on globalThis, which this engine does not need).
const USAGE = { storage: 0x0080 | 0x0004 | 0x0008, read: 0x0001 | 0x0008 }; // STORAGE|COPY_SRC|COPY_DST, MAP_READ|COPY_DST
const MAP_READ = 0x0001;
/**
 * Pipelines compiled at once by `record`: enough to keep the driver's compiler threads busy, few enough that a
 * stop waits for at most this many (a large model has hundreds, 0.3 s each on lavapipe).
 */
export const COMPILE_LANES = Math.max(4, availableParallelism());

/** A buffer the device cannot make: larger than its maxBufferSize. */
export class GpuAllocationError extends WildstreamError {
  override readonly code = 'WS_ERR_WEBGPU_ALLOCATION';
  constructor(
    message: string,
    /** Bytes of the buffer asked for. */
    readonly bytes: number,
  ) {
    super(message);
  }
}

/** What trackAllocations saw: bytes of new buffers, the largest, and the first error the device reported. */
export interface AllocationReport {
  bytes: number;
  largest: number;
  error: { kind: 'out-of-memory' | 'validation'; message: string } | null;
}

export class GpuRunner {
  readonly device: GPUDevice;
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();
  private readonly free = new Map<number, GPUBuffer[]>();
  /** Pipelines compiled so far (cache misses), for tests and logs. */
  compiled = 0;
  private tracking: (AllocationReport & { checks: Array<Promise<void>> }) | null = null;

  constructor(readonly ctx: GpuContext) {
    this.device = ctx.device;
  }

  /** The compiled pipeline for a kernel, compiled on first use; a refused shader is a WebGpuKernelError. */
  pipeline(kernel: Kernel): Promise<GPUComputePipeline> {
    let p = this.pipelines.get(kernel.key);
    if (!p) {
      p = this.compile(kernel);
      this.pipelines.set(kernel.key, p);
      p.catch(() => this.pipelines.delete(kernel.key));
    }
    return p;
  }

  private async compile(kernel: Kernel): Promise<GPUComputePipeline> {
    this.compiled++;
    const module = this.device.createShaderModule({ code: kernel.code, label: kernel.key });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length)
      throw new WebGpuKernelError(
        `kernel ${kernel.key} does not compile: ${errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ')}`,
      );
    try {
      return await this.device.createComputePipelineAsync({
        layout: 'auto',
        compute: { module, entryPoint: 'main' },
        label: kernel.key,
      });
    } catch (err) {
      throw new WebGpuKernelError(
        `kernel ${kernel.key} was refused as a pipeline: ${(err as Error).message.split('\n')[0]}`,
        { cause: err },
      );
    }
  }

  /**
   * A tensor backed by a pooled buffer (contents undefined until written); `release` returns it to the pool.
   * A buffer above the device's maxBufferSize is a GpuAllocationError; while trackAllocations is on, each new
   * buffer is made inside out-of-memory and validation error scopes.
   */
  tensor(shape: readonly number[], dtype: Dtype = 'f32'): GpuTensor {
    const size = shape.reduce((a, b) => a * b, 1);
    const bytes = Math.max(4, Math.ceil((size * DTYPE_BYTES[dtype]) / 4) * 4);
    const buffer = this.free.get(bytes)?.pop() ?? this.createStorage(bytes);
    return { buffer, shape: [...shape], dtype, size };
  }

  private createStorage(bytes: number): GPUBuffer {
    const t = this.tracking;
    if (t) [t.bytes, t.largest] = [t.bytes + bytes, Math.max(t.largest, bytes)];
    const limit = this.device.limits.maxBufferSize;
    if (bytes > limit)
      throw new GpuAllocationError(`a buffer of ${bytes} bytes is above the device's maxBufferSize (${limit})`, bytes);
    if (!t) return this.device.createBuffer({ size: bytes, usage: USAGE.storage });
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    const buffer = this.device.createBuffer({ size: bytes, usage: USAGE.storage });
    const [validation, oom] = [this.device.popErrorScope(), this.device.popErrorScope()];
    t.checks.push(
      Promise.all([validation, oom]).then(([v, o]) => {
        const e = o ?? v;
        if (e && !t.error) t.error = { kind: o ? 'out-of-memory' : 'validation', message: e.message.split('\n')[0]! };
      }),
    );
    return buffer;
  }

  /** Starts counting and checking the buffers tensor() makes (until allocationReport). */
  trackAllocations(): void {
    this.tracking = { bytes: 0, largest: 0, error: null, checks: [] };
  }

  /** What was made since trackAllocations, once the device has answered for each buffer; null when not tracking. */
  async allocationReport(): Promise<AllocationReport | null> {
    const t = this.tracking;
    if (!t) return null;
    this.tracking = null;
    await Promise.all(t.checks);
    return { bytes: t.bytes, largest: t.largest, error: t.error };
  }

  /**
   * Elements [offset, offset + size) of `parent` as a tensor of `shape` (a weight inside a flat parameter buffer).
   * WebGPU binds a buffer range only at a multiple of minStorageBufferOffsetAlignment bytes.
   */
  view(parent: GpuTensor, offset: number, shape: readonly number[]): GpuTensor {
    const size = shape.reduce((a, b) => a * b, 1);
    const byteOffset = (parent.offset ?? 0) + offset * DTYPE_BYTES[parent.dtype];
    const align = this.device.limits.minStorageBufferOffsetAlignment;
    if (offset < 0 || offset + size > parent.size)
      throw new RangeError(`view: elements ${offset}..${offset + size} outside a tensor of ${parent.size}`);
    if (byteOffset % align) throw new RangeError(`view: byte offset ${byteOffset} is not a multiple of ${align}`);
    return { buffer: parent.buffer, shape: [...shape], dtype: parent.dtype, size, offset: byteOffset };
  }

  /** Returns tensors' buffers to the pool; views are skipped (their buffer belongs to the parent). */
  release(...tensors: GpuTensor[]): void {
    for (const t of tensors) {
      if (t.offset !== undefined) continue;
      const list = this.free.get(t.buffer.size) ?? [];
      list.push(t.buffer);
      this.free.set(t.buffer.size, list);
    }
  }

  /** Copies values in, converting to binary16 for an f16 tensor. */
  write(t: GpuTensor, values: ArrayLike<number>): void {
    if (values.length !== t.size) throw new RangeError(`write: ${values.length} values for a tensor of ${t.size}`);
    const data = t.dtype === 'f16' ? toHalf(values) : Float32Array.from(values);
    // writeBuffer needs a multiple of 4 bytes: an odd-length f16 tensor gets one padding element.
    const padded = data.byteLength % 4 ? copyPadded(data) : data;
    this.device.queue.writeBuffer(t.buffer, t.offset ?? 0, padded.buffer, padded.byteOffset, padded.byteLength);
  }

  /** Copies bytes in unconverted (a u32 table bound as `array<u32>`); their length must fit the tensor. */
  writeBytes(t: GpuTensor, data: ArrayBufferView): void {
    if (data.byteLength > byteLength(t) || data.byteLength % 4)
      throw new RangeError(`writeBytes: ${data.byteLength} bytes for a tensor of ${byteLength(t)}`);
    this.device.queue.writeBuffer(t.buffer, t.offset ?? 0, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Reads a tensor back as f32 (waits for the queue: never inside a training step). */
  async read(t: GpuTensor): Promise<Float32Array> {
    const bytes = t.offset === undefined ? t.buffer.size : byteLength(t);
    const staging = this.device.createBuffer({ size: bytes, usage: USAGE.read });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(t.buffer, t.offset ?? 0, staging, 0, bytes);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(MAP_READ);
    const raw = staging.getMappedRange().slice(0);
    staging.destroy();
    return t.dtype === 'f16' ? fromHalf(new Uint16Array(raw, 0, t.size)) : new Float32Array(raw, 0, t.size);
  }

  /** Compiles every kernel and makes every bind group once; the recording then submits without allocating. */
  async record(dispatches: readonly Dispatch[], signal?: AbortSignal): Promise<Recording> {
    await this.compileAll(
      dispatches.map((d) => d.kernel),
      signal,
    );
    const pipelines = await Promise.all(dispatches.map((d) => this.pipeline(d.kernel)));
    // Checked before the error scope opens: a throw inside it would leave the scope on the device's stack.
    for (const d of dispatches)
      for (const n of d.kernel.workgroups)
        if (n < 1 || n > 65535)
          throw new WebGpuKernelError(
            `kernel ${d.kernel.key} dispatches ${d.kernel.workgroups.join('x')} workgroups (each must be 1..65535)`,
          );
    this.device.pushErrorScope('validation');
    const steps = dispatches.map((d, i) => {
      const pipeline = pipelines[i]!;
      const bindGroup = this.device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: d.buffers.map((t, binding) => ({
          binding,
          resource:
            t.offset === undefined ? { buffer: t.buffer } : { buffer: t.buffer, offset: t.offset, size: byteLength(t) },
        })),
      });
      return { pipeline, bindGroup, workgroups: d.kernel.workgroups };
    });
    const error = await this.device.popErrorScope();
    if (error)
      throw new WebGpuKernelError(
        `binding buffers for ${dispatches.map((d) => d.kernel.key).join(', ')}: ${error.message.split('\n')[0]}`,
      );
    return new Recording(this.device, steps);
  }

  /**
   * Compiles the kernels not compiled yet, COMPILE_LANES at a time. The first refused kernel ends it with its
   * error; `signal` ends it with its reason once the compiles under way have settled (none is left running on
   * the driver's threads, where a process exiting under them crashed).
   */
  private async compileAll(kernels: readonly Kernel[], signal?: AbortSignal): Promise<void> {
    const todo = [...new Map(kernels.map((k) => [k.key, k])).values()].filter((k) => !this.pipelines.has(k.key));
    let next = 0;
    let failed: { error: unknown } | null = null;
    const lane = async () => {
      while (next < todo.length && !failed && !signal?.aborted)
        await this.pipeline(todo[next++]!).catch((error: unknown) => void (failed ??= { error }));
    };
    await Promise.all(Array.from({ length: Math.min(COMPILE_LANES, todo.length) }, lane));
    if (failed) throw (failed as { error: unknown }).error;
    signal?.throwIfAborted();
  }

  /** Waits until every submitted command buffer has finished. */
  async sync(): Promise<void> {
    await this.device.queue.onSubmittedWorkDone();
  }

  /** Drops the pooled buffers (live tensors stay valid). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
  }
}

interface Step {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: readonly [number, number, number];
}

/** Dispatches recorded once; each `submit()` encodes them into one compute pass and submits one command buffer. */
export class Recording {
  constructor(
    private readonly device: GPUDevice,
    private readonly steps: readonly Step[],
  ) {}

  get length(): number {
    return this.steps.length;
  }

  /** This recording's dispatches, then `next`'s, in one submission (same device; nothing compiled again). */
  followedBy(next: Recording): Recording {
    if (next.device !== this.device) throw new RangeError('followedBy: the recordings belong to different devices');
    return new Recording(this.device, [...this.steps, ...next.steps]);
  }

  submit(): void {
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const s of this.steps) {
      pass.setPipeline(s.pipeline);
      pass.setBindGroup(0, s.bindGroup);
      pass.dispatchWorkgroups(s.workgroups[0], s.workgroups[1], s.workgroups[2]);
    }
    pass.end();
    this.device.queue.submit([enc.finish()]);
  }
}

/** A tensor's bytes rounded up to whole 4-byte words (what a binding or copy of it spans). */
function byteLength(t: GpuTensor): number {
  return Math.max(4, Math.ceil((t.size * DTYPE_BYTES[t.dtype]) / 4) * 4);
}

function copyPadded(data: Uint16Array | Float32Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return out;
}
