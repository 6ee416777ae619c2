/**
 * A pool of augment worker threads (piscina), sized to the cores by default. A task carries a few samples,
 * each only its encoded image (a view when its Arrow batch lives in a SharedArrayBuffer, else a copy of
 * its bytes: posting a view of an ordinary buffer would clone the whole batch), its draw seed and the
 * shared buffers its crops are written into. `close()` stops the threads.
 */
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import 'sharp'; // load libvips in the main thread before any worker does (sharp's worker-thread rule)
import { ConfigError, WildstreamError } from '../errors.js';
import type { AugmentConfig } from './config.js';
import { checkCropDtype, type CropDtype } from '../crop-tensor.js';
import type { DrawSeed } from './multicrop.js';
import type { AugmentResult, AugmentTask, AugmentWorkerData, SampleSlot } from './worker.js';

export interface PoolOptions {
  /** Worker threads. @default the number of cores */
  threads?: number;
  /**
   * What the workers write into a sample's shared buffers: normalised floats, or the bytes before
   * normalisation (the buffers then hold 1 byte a value, not 4). @default 'float32'
   */
  cropDtype?: CropDtype;
}

/** A task reached a pool after `close()`. */
export class PoolClosedError extends WildstreamError {
  override readonly code = 'WS_ERR_POOL_CLOSED';
}

export class AugmentPool {
  private readonly piscina: Piscina;
  private readonly inflight = new Set<Promise<unknown>>();
  private closed = false;

  constructor(config: AugmentConfig, options: PoolOptions = {}) {
    const threads = options.threads ?? availableParallelism();
    if (!Number.isSafeInteger(threads) || threads < 1 || threads > 256) {
      throw new ConfigError(`augment threads must be 1-256, got ${threads}`);
    }
    const workerData: AugmentWorkerData = { config, cropDtype: checkCropDtype(options.cropDtype) };
    this.piscina = new Piscina({
      filename: new URL('./worker-entry.mjs', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      workerData,
      // Each worker awaits sharp (on the libuv pool) while another task's crops run on its thread.
      concurrentTasksPerWorker: 2,
    });
  }

  get threads(): number {
    return this.piscina.threads.length;
  }

  /**
   * Multi-crops encoded images, one task for all of them: a task costs about 0.1 ms of messaging on each side,
   * so samples share tasks.
   * Resolves when all are written, to one result (done or a failure reason) per sample.
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
    const run = this.piscina.run(tasks, { transferList }) as Promise<AugmentResult[]>;
    const settled = run
      .then(
        () => {},
        () => {},
      )
      .finally(() => this.inflight.delete(settled));
    this.inflight.add(settled);
    return run;
  }

  /**
   * Stops the threads once the tasks in flight have settled: destroying piscina under a running task makes
   * the worker's late reply an "Unexpected message from Worker" error event, which crashes the process.
   */
  async close(): Promise<void> {
    this.closed = true;
    while (this.inflight.size > 0) await Promise.all(this.inflight);
    await this.piscina.destroy();
  }
}
