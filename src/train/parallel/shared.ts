/**
 * The shared memory of a data-parallel step and the barrier its workers meet at. Every worker writes only
 * its own rows or its own slot, and reads what others wrote only after a barrier, so no lock is needed.
 * A region is next overwritten in a later phase that every worker reaches only after reading it.
 */
import { WildstreamError } from '../../errors.js';

/** Control words (Int32): barrier arrivals, barrier generation, abort flag. */
const COUNT = 0,
  GENERATION = 1,
  ABORTED = 2;

/** A worker's wait gives way this often to look at the abort flag (a notify may race with the wait). */
const ABORT_POLL_MS = 500;

export class ParallelAbortedError extends WildstreamError {
  override readonly code = 'WS_ERR_PARALLEL_ABORTED';
}

export interface SharedBuffers {
  control: SharedArrayBuffer;
  /** Scores of every assignment crop: [assign crops][batch rows][prototypes]. */
  scores: SharedArrayBuffer;
  /** Embeddings of every assignment crop (for the queue): [assign crops][batch rows][dim]. */
  embeddings: SharedArrayBuffer;
  /** One slot per worker for its weighted gradients and running statistics: [workers][params]. */
  slots: SharedArrayBuffer;
  /** Their sum: [params]. */
  sum: SharedArrayBuffer;
}

export interface SharedShape {
  workers: number;
  assignCrops: number;
  maxRows: number;
  prototypes: number;
  dim: number;
  /** Floats of every model variable (trainable and BatchNorm running statistics). */
  params: number;
}

export function allocateShared(s: SharedShape): SharedBuffers {
  const floats = (n: number) => new SharedArrayBuffer(4 * n);
  return {
    control: new SharedArrayBuffer(4 * 4),
    scores: floats(s.assignCrops * s.maxRows * s.prototypes),
    embeddings: floats(s.assignCrops * s.maxRows * s.dim),
    slots: floats(s.workers * s.params),
    sum: floats(s.params),
  };
}

/** Reusable barrier for `parties` threads (generation counting); throws once the run is aborted. */
export class Barrier {
  private readonly ctl: Int32Array;

  constructor(
    control: SharedArrayBuffer,
    private readonly parties: number,
  ) {
    this.ctl = new Int32Array(control);
  }

  wait(): void {
    const { ctl } = this;
    this.check();
    const generation = Atomics.load(ctl, GENERATION); // cannot move on before this thread arrives
    if (Atomics.add(ctl, COUNT, 1) === this.parties - 1) {
      Atomics.store(ctl, COUNT, 0); // before the generation moves: no thread re-arrives until it has
      Atomics.add(ctl, GENERATION, 1);
      Atomics.notify(ctl, GENERATION);
      return;
    }
    while (Atomics.load(ctl, GENERATION) === generation) {
      this.check();
      Atomics.wait(ctl, GENERATION, generation, ABORT_POLL_MS);
    }
  }

  private check(): void {
    if (Atomics.load(this.ctl, ABORTED) !== 0)
      throw new ParallelAbortedError('another training thread failed; this one stopped with it');
  }
}

/** Wakes every waiting worker with the abort flag set: their barriers throw ParallelAbortedError. */
export function abortShared(control: SharedArrayBuffer): void {
  const ctl = new Int32Array(control);
  Atomics.store(ctl, ABORTED, 1);
  Atomics.notify(ctl, GENERATION);
}

/**
 * Element-wise sum of the workers' slots into `sum`, for this worker's share of the elements (consecutive
 * ranges, in slot order): each element is summed by one worker, so every worker later reads the same bits.
 */
export function sumShare(buffers: SharedBuffers, rank: number, workers: number): void {
  const sum = new Float32Array(buffers.sum);
  const slots = new Float32Array(buffers.slots);
  const n = sum.length,
    per = Math.ceil(n / workers);
  const lo = Math.min(n, rank * per),
    hi = Math.min(n, lo + per);
  for (let j = lo; j < hi; j++) {
    let s = 0;
    for (let w = 0; w < workers; w++) s += slots[w * n + j]!;
    sum[j] = s;
  }
}
