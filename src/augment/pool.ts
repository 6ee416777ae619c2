/**
 * A pool of augment worker threads (piscina), sized to the cores by default. A task carries a few samples,
 * each only its encoded image (a view when its Arrow batch lives in a SharedArrayBuffer, else a copy of
 * its bytes: posting a view of an ordinary buffer would clone the whole batch), its draw seed and the
 * shared buffers its crops are written into.
 *
 * At most two tasks per thread are with the workers (what each runs at once); later ones wait here, so that
 * `close()` can drop them unsent. `close()` also raises a flag in shared memory that the workers read before
 * each sample (and between its decode and its crops): a running task stops at the sample it is on. So closing
 * waits for at most one decode per task running, never for the queue (see close).
 */
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import 'sharp'; // load libvips in the main thread before any worker does (sharp's worker-thread rule)
import { ConfigError, WildstreamError } from '../errors.js';
import type { AugmentConfig } from './config.js';
import { checkCropDtype, type CropDtype } from '../crop-tensor.js';
import type { DrawSeed } from './multicrop.js';
import type { AugmentResult, AugmentTask, AugmentWorkerData, SampleSlot, WorkerResult } from './worker.js';

export interface PoolOptions {
  /** Worker threads. @default the number of cores */
  threads?: number;
  /**
   * What the workers write into a sample's shared buffers: normalised floats, or the bytes before
   * normalisation (the buffers then hold 1 byte a value, not 4). @default 'float32'
   */
  cropDtype?: CropDtype;
}

/** A task reached a pool after `close()`, or `close()` cancelled it before all its samples were written. */
export class PoolClosedError extends WildstreamError {
  override readonly code = 'WS_ERR_POOL_CLOSED';
}

/** Tasks a worker runs at once: one may wait on sharp (the libuv pool) while another's crops run on its thread. */
const TASKS_PER_THREAD = 2;

/** A task waiting for a free worker, with what settles its promise. */
interface Waiting {
  tasks: AugmentTask[];
  transferList: ArrayBuffer[];
  resolve: (results: AugmentResult[]) => void;
  reject: (err: unknown) => void;
}

export class AugmentPool {
  private readonly piscina: Piscina;
  /** Tasks sent to the workers and not yet settled (each as a promise that never rejects). */
  private readonly inflight = new Set<Promise<void>>();
  /** Tasks not yet sent, in order. */
  private readonly waiting: Waiting[] = [];
  /** Tasks the workers may hold at once. */
  private readonly slots: number;
  /** Index 0 becomes 1 on close(): the workers stop at their next sample (see worker.ts). */
  private readonly cancelled = new Int32Array(new SharedArrayBuffer(4));
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(config: AugmentConfig, options: PoolOptions = {}) {
    const threads = options.threads ?? availableParallelism();
    if (!Number.isSafeInteger(threads) || threads < 1 || threads > 256) {
      throw new ConfigError(
        `augment threads must be 1-256, got ${typeof threads === 'string' ? JSON.stringify(threads) : String(threads)}`,
      );
    }
    const workerData: AugmentWorkerData = {
      config,
      cropDtype: checkCropDtype(options.cropDtype),
      cancel: this.cancelled.buffer as SharedArrayBuffer,
    };
    this.slots = threads * TASKS_PER_THREAD;
    this.piscina = new Piscina({
      filename: new URL('./worker-entry.mjs', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      workerData,
      concurrentTasksPerWorker: TASKS_PER_THREAD,
    });
  }

  get threads(): number {
    return this.piscina.threads.length;
  }

  /**
   * Multi-crops encoded images, one task for all of them: a task costs about 0.1 ms of messaging on each side,
   * so samples share tasks.
   * Resolves when all are written, to one result (done or a failure reason) per sample; rejects with a
   * PoolClosedError when the pool is closed, or closes before every sample was written.
   */
  async augment(
    samples: ReadonlyArray<{ image: Uint8Array; at: DrawSeed; into: SampleSlot }>,
  ): Promise<AugmentResult[]> {
    // piscina stays usable after destroy() and would start a thread that nothing stops.
    if (this.closed) throw new PoolClosedError('the augment pool is closed; open a new one');
    // Images in shared memory go as views; others as copies that own exactly their bytes, transferred.
    const images = samples.map(({ image }) => (image.buffer instanceof SharedArrayBuffer ? image : image.slice()));
    const tasks: AugmentTask[] = samples.map(({ at, into }, i) => ({ image: images[i]!, at, into }));
    const transferList = images.flatMap(({ buffer }) =>
      buffer instanceof SharedArrayBuffer ? [] : [buffer as ArrayBuffer],
    );
    return new Promise<AugmentResult[]>((resolve, reject) => {
      this.waiting.push({ tasks, transferList, resolve, reject });
      this.send();
    });
  }

  /** Sends waiting tasks to the workers while they have room. */
  private send(): void {
    while (!this.closed && this.inflight.size < this.slots && this.waiting.length > 0) {
      const { tasks, transferList, resolve, reject } = this.waiting.shift()!;
      const run = this.piscina.run(tasks, { transferList }) as Promise<WorkerResult[]>;
      const settled: Promise<void> = run.then(
        (results) => {
          this.inflight.delete(settled);
          this.send();
          if (results.some((r) => 'cancelled' in r)) reject(cancelledError());
          else resolve(results as AugmentResult[]);
        },
        (err: unknown) => {
          this.inflight.delete(settled);
          this.send();
          reject(err);
        },
      );
      this.inflight.add(settled);
    }
  }

  /**
   * Stops the threads. Tasks not yet sent to a worker are dropped (their promises reject with a
   * PoolClosedError); running ones stop at the sample they are on, and close waits for that: at most one
   * decode and one sample's crops per task running (two a thread), because destroying piscina under a
   * running task makes the worker's late reply an "Unexpected message from Worker" error event, which
   * crashes the process, and a worker cannot be stopped inside libvips. Safe to call twice.
   */
  close(): Promise<void> {
    // One close for every caller: a second piscina.destroy() beside the first ends its own (empty) wait and
    // clears piscina's destroying flag while the first still waits on the workers' exits, and piscina then
    // takes those exits for crashes and starts replacement threads that nothing stops.
    this.closing ??= this.stop();
    return this.closing;
  }

  private async stop(): Promise<void> {
    this.closed = true;
    Atomics.store(this.cancelled, 0, 1);
    for (const { reject } of this.waiting.splice(0)) reject(cancelledError());
    while (this.inflight.size > 0) await Promise.all(this.inflight);
    await this.piscina.destroy();
  }
}

const cancelledError = () =>
  new PoolClosedError('the augment pool was closed before this task was done; its remaining samples were dropped');
