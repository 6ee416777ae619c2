/**
 * Data-parallel training in one process: `threads` worker threads, each with its own tfjs backend (wasm
 * runs one thread in Node) and its own copy of the model, step on consecutive slices of every batch.
 * SwAV's Sinkhorn sees the whole batch (each worker publishes its scores, all run Sinkhorn on all rows, as
 * SwAV's distributed code all-reduces its sums), gradients are summed and BatchNorm running statistics
 * averaged through shared memory, and every worker applies the same LARS update, so their weights stay
 * bit-identical. BatchNorm normalises each worker's slice on its own (SwAV without SyncBN): a step equals
 * `SwavModel.step(crops, step, { microBatches: splitSizes(rows, threads) })` on one thread, within float
 * rounding (test/train/parallel.test.ts). The queue works as on one thread (every worker holds the whole
 * batch's queue).
 *
 * Plugs in where the trainer calls `model.step(crops, step)`: `await stepper.step(crops, step)`, with
 * `await stepper.sync()` before the model is checkpointed or evaluated and `await stepper.close()` at the end.
 */
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { cropFloats, type CropTensor } from '../../crop-tensor.js';
import { ConfigError, WildstreamError } from '../../errors.js';
import type { SwavModel, StepResult } from '../model.js';
import { splitSizes } from './sharing.js';
import { abortShared, allocateShared, ParallelAbortedError, type SharedBuffers } from './shared.js';
import { exportState, importState, type ModelState } from './state.js';
import type { WorkerInit, WorkerReply, WorkerRequest } from './worker.js';

export interface ParallelOptions {
  /** Training threads, each with its own backend and a slice of every batch (at most the batch size). */
  threads: number;
  /** Backend every thread starts (the others use every core by themselves). @default 'wasm' */
  backend?: 'wasm' | 'cpu';
}

export class ParallelTrainingError extends WildstreamError {
  override readonly code = 'WS_ERR_PARALLEL_TRAINING';
}

type Ok<T extends string> = Extract<WorkerReply, { type: T }>;

/** One worker thread and its one request in flight. */
class Channel {
  private pending: { resolve(r: WorkerReply): void; reject(e: Error): void } | null = null;
  /** Resolves with the worker's first message, once its backend and model are up. */
  readonly ready: Promise<Ok<'ready'>>;

  constructor(
    readonly worker: Worker,
    readonly rank: number,
    private readonly onFailure: (err: Error) => void,
  ) {
    this.ready = this.next() as Promise<Ok<'ready'>>;
    worker.on('message', (reply: WorkerReply) => {
      const pending = this.pending;
      this.pending = null;
      if (reply.ok) return pending?.resolve(reply);
      const err = Object.assign(new Error(reply.error.message), { name: reply.error.name });
      if (reply.error.name !== ParallelAbortedError.name) this.onFailure(err);
      pending?.reject(err);
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => this.fail(new ParallelTrainingError(`training thread ${rank} exited (code ${code})`)));
  }

  request<T extends WorkerReply>(req: WorkerRequest, transfer: ArrayBuffer[] = []): Promise<T> {
    const reply = this.next() as Promise<T>;
    this.worker.postMessage(req, transfer);
    return reply;
  }

  private next(): Promise<WorkerReply> {
    if (this.pending) throw new Error(`training thread ${this.rank} already has a request in flight`);
    return new Promise((resolve, reject) => (this.pending = { resolve, reject }));
  }

  fail(err: Error): void {
    this.onFailure(err);
    this.pending?.reject(err);
    this.pending = null;
  }
}

export class ParallelStepper {
  private failure: Error | null = null;
  private closing = false;

  private constructor(
    readonly model: SwavModel,
    private readonly channels: Channel[],
    private readonly buffers: SharedBuffers,
  ) {}

  get threads(): number {
    return this.channels.length;
  }

  /** Starts the threads with `model`'s state (fresh or resumed); `model` itself is updated only by sync(). */
  static async start(model: SwavModel, options: ParallelOptions): Promise<ParallelStepper> {
    const { threads, backend = 'wasm' } = options;
    const { config } = model;
    if (!Number.isSafeInteger(threads) || threads < 1 || threads > 256)
      throw new ConfigError(`train threads must be an integer from 1 to 256, got ${threads}`);
    if (threads > config.batchSize)
      throw new ConfigError(
        `train threads (${threads}) cannot exceed the batch size (${config.batchSize}): each thread needs rows of its own`,
      );
    if (backend !== 'wasm' && backend !== 'cpu')
      throw new ConfigError(
        `parallel training runs on the wasm or cpu backend, got "${backend}" (other backends use every core by themselves)`,
      );
    const params = [...model.ps.vars.values()].reduce((n, v) => n + v.size, 0);
    const buffers = allocateShared({
      workers: threads,
      assignCrops: config.swav.cropsForAssign.length,
      maxRows: config.batchSize,
      prototypes: config.swav.prototypes,
      dim: config.swav.dim,
      params,
    });
    const channels: Channel[] = [];
    const stepper = new ParallelStepper(model, channels, buffers);
    for (let rank = 0; rank < threads; rank++) {
      const workerData: WorkerInit = { config, backend, rank, workers: threads, buffers };
      const worker = new Worker(new URL('./worker-entry.mjs', import.meta.url), { workerData });
      channels.push(new Channel(worker, rank, (err) => stepper.failed(err)));
    }
    try {
      for (const ready of await stepper.all(channels.map((c) => c.ready))) {
        if (ready.params !== params)
          throw new ParallelTrainingError(
            `a training thread built a model of ${ready.params} floats, this one has ${params}`,
          );
      }
      const state = exportState(model);
      await stepper.all(channels.map((c) => c.request({ type: 'load', state })));
    } catch (err) {
      await stepper.close();
      throw err;
    }
    return stepper;
  }

  /**
   * One step on a batch (NHWC, one per crop: tensors or the loader's crop arrays), split over the threads.
   * The loss is the whole batch's, as SwavModel.step reports it.
   */
  async step(crops: ReadonlyArray<tf.Tensor4D | CropTensor>, step: number): Promise<StepResult> {
    if (this.failure) throw this.failure;
    const arrays = crops.map((c, i) =>
      'dataSync' in c
        ? { size: c.shape[1], data: c.dataSync() as Float32Array }
        : { size: c.size, data: cropFloats(c, i) },
    );
    const per = arrays.map(({ size }) => size * size * 3);
    const rows = arrays[0]!.data.length / per[0]!;
    if (!Number.isInteger(rows) || arrays.some((a, i) => a.data.length !== rows * per[i]!))
      throw new ParallelTrainingError('the crops of a batch hold different numbers of images');
    if (rows < this.threads || rows > this.model.config.batchSize) {
      throw new ParallelTrainingError(
        `a batch of ${rows} images cannot be split over ${this.threads} training threads (batch size ${this.model.config.batchSize})`,
      );
    }
    const sizes = splitSizes(rows, this.threads);
    let start = 0;
    const replies = this.channels.map((channel, rank) => {
      const n = sizes[rank]!;
      // Shared buffers go as views; a view of an ordinary buffer would clone all of it, so it goes as a copy.
      const parts = arrays.map(({ data }, i) => {
        const view = data.subarray(start * per[i]!, (start + n) * per[i]!);
        return view.buffer instanceof SharedArrayBuffer ? view : view.slice();
      });
      const req: WorkerRequest = {
        type: 'step',
        step,
        start,
        rows: n,
        total: rows,
        crops: parts,
        sizes: arrays.map((a) => a.size),
      };
      start += n;
      return channel.request<Ok<'stepped'>>(
        req,
        parts.flatMap((p) => (p.buffer instanceof SharedArrayBuffer ? [] : [p.buffer as ArrayBuffer])),
      );
    });
    const results = await this.all(replies);
    return { loss: results.reduce((sum, r) => sum + r.loss, 0), lr: results[0]!.lr };
  }

  /** Copies the threads' state (weights, statistics, momentum, queue) into `model`: before a checkpoint or evaluation. */
  async sync(): Promise<void> {
    if (this.failure) throw this.failure;
    const [reply] = await this.all([this.channels[0]!.request<Ok<'state'>>({ type: 'state' })]);
    importState(this.model, reply!.state);
  }

  /** Every thread's state, in thread order: they are equal bit for bit (a check for tests). */
  async states(): Promise<ModelState[]> {
    if (this.failure) throw this.failure;
    return (await this.all(this.channels.map((c) => c.request<Ok<'state'>>({ type: 'state' })))).map((r) => r.state);
  }

  /** Stops the threads. Safe to call twice, and after a failure. */
  async close(): Promise<void> {
    this.closing = true;
    abortShared(this.buffers.control); // a thread stuck at a barrier lets go
    await Promise.all(this.channels.map((c) => c.worker.terminate()));
  }

  private failed(err: Error): void {
    if (this.closing || this.failure) return;
    this.failure =
      err instanceof WildstreamError || err.name === 'RuntimeError'
        ? err
        : new ParallelTrainingError(`a training thread failed: ${err.message}`, { cause: err });
    abortShared(this.buffers.control);
  }

  /** All replies, or the first real failure (not a thread that stopped because another failed). */
  private async all<T>(replies: Array<Promise<T>>): Promise<T[]> {
    const settled = await Promise.allSettled(replies);
    const rejected = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (rejected.length === 0) return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
    throw this.failure ?? rejected[0]!.reason;
  }
}
